-- Lead-local hours (LEAD_LOCAL_WINDOW; README "Number health"): a message's send window is
-- read in its lead's own zone, which only the service knows (from the phone number). How the
-- parts fit, with the setting on:
--
-- - The service checks each message's window in its lead's zone and holds one that is
--   outside it back to its lead's opening: released untouched, scheduled_at moved there
--   (release_campaign_messages, 015) and the lead's zone kept on the message
--   (campaign_messages.lead_timezone). So it is neither claimed again nor late before then,
--   and a closed-window backlog is claimed once per closure, not every poll.
-- - The claim (p_lead_local_window of get_and_lock_campaign_messages and
--   cq_pick_due_messages, 018) and campaign_queue_next_start (023) no longer let a run's
--   campaign-zone window close it or bound its late messages: that window says nothing
--   about whether a lead's hours are open.
-- - The skip (mark_old_campaign_messages_as_skipped's p_lead_local_window, 010) judges each
--   message of a windowed run in its lead's zone (the campaign's while the service has not
--   seen it): only time inside its lead's window counts, and none while its inbox's pace
--   holds the backlog, as for a campaign window (cq_open_horizon, cq_inbox_holds_backlog).
--
-- With the setting off, nothing here is called and every function behaves as before.


-- One windowed run's late messages in their leads' zones -> skipped: at most p_limit, oldest
-- first; returns how many. The caller holds the run's row. p_horizon is the plain horizon
-- (every zone's is at most it), so only messages due before it are read, and each distinct
-- zone's horizon and hold are computed once.
create or replace function cq_skip_late_in_lead_zones(
  p_run_id uuid, p_start time, p_end time, p_timezone text, p_inbox_id uuid,
  p_horizon timestamptz, p_limit int
) returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_n int;
begin
  with candidates as materialized (
    select m.id, m.scheduled_at, coalesce(m.lead_timezone, p_timezone, '') as tz
      from campaign_messages m
     where m.run_id = p_run_id and m.status = 'pending' and m.scheduled_at < p_horizon
  ), zones as materialized (
    select h.tz, h.horizon, cq_inbox_holds_backlog(p_inbox_id, h.horizon) as held
      from (select z.tz, cq_open_horizon(p_start, p_end, z.tz, now(), p_horizon) as horizon
              from (select distinct tz from candidates) z) h
  ), late as (
    select c.id, z.horizon
      from candidates c
      join zones z on z.tz = c.tz
     where c.scheduled_at < z.horizon and not z.held
     order by c.scheduled_at
     limit greatest(coalesce(p_limit, 0), 0)
  ), locked as (
    select m.id, l.horizon
      from campaign_messages m
      join late l on l.id = m.id
     where m.status = 'pending'
     order by m.scheduled_at
       for update of m skip locked
  ), skipped as (
    update campaign_messages m
       set status = 'skipped',
           error_message = 'skipped: scheduled before the horizon ' || k.horizon::text,
           updated_at = now()
      from locked k
     where m.id = k.id
    returning 1
  )
  select count(*)::int into v_n from skipped;
  return v_n;
end;
$$;
