-- When a claim could next find work (docs/architecture.md, "Pacing": cadence). A call whose
-- claim came back short asks once: it sleeps until then if that is within its time budget, or
-- ends. So a call that starts while every inbox is inside its gap waits for the first slot
-- instead of ending with nothing, and a call ends early only when nothing due can start
-- within its budget. Judged from each inbox's own limits (its campaign_inbox_pacing row, else
-- the caller's settings, as cq_inbox_limits says), its turn, its hold (its daily cap, the
-- warm-up's, its hourly cap, its brake: cq_inbox_hold), and each run's window.
--
-- Seconds from now until the soonest instant the claim would take some due message (0: now),
-- or null when no running run has a due message the claim could take (late ones are for the
-- skip). A slot counts p_lookahead_s early (the claim takes it that soon). Optimistic, never
-- late: a slot whose turn another message holds counts as open one min gap after it; a
-- window counts as open from its next opening on (when it closes again is not looked at). A
-- caller that finds nothing at that instant asks again.
--
-- Cost: one pass over the running runs (and their inboxes' rows), then, soonest first, one
-- probe of idx_campaign_messages_atomic_selection per run until a run has a due message.
create or replace function campaign_queue_next_start(
  p_one_hour_ago timestamptz default null,
  p_run_id uuid default null,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  p_lookahead_s real default 0,  -- the claim takes a slot opening this soon (its lookahead)
  p_lock_timeout_s int default 600,
  -- INBOX_WARMUP_DAYS, INBOX_WARMUP_START_CAP, INBOX_HOURLY_CAP (040_inbox_hold.sql)
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null,
  -- LEAD_LOCAL_WINDOW: a run's campaign-zone window neither delays nor bounds it (049).
  p_lead_local_window boolean default false
) returns double precision
language plpgsql stable security definer set search_path = public
as $$
declare
  v_now constant timestamptz := now();
  v_horizon constant timestamptz := campaign_queue_effective_horizon(p_one_hour_ago);
  v_look constant interval := make_interval(
    secs => least(greatest(coalesce(nullif(p_lookahead_s, 'NaN'), 0), 0), 3600));
  v_cutoff constant timestamptz :=
    v_now - make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1));
  v_run record;
begin
  for v_run in
    with windows as materialized (
      select w.start_time, w.end_time, w.tz,
             case when p_lead_local_window then null
                  else cq_window_opening(w.start_time, w.end_time, w.tz, v_now) end as opens_at,
             case when p_lead_local_window then '-infinity'
                  else cq_open_horizon(w.start_time, w.end_time, w.tz, v_now, v_horizon)
             end as horizon
        from (select distinct c.start_time, c.end_time, coalesce(c.timezone, '') as tz
                from campaign_runs r join campaign_configs c on c.id = r.config_id
               where r.status = 'running' and (p_run_id is null or r.id = p_run_id)
                 and c.start_time <> c.end_time) w
    ), runs as (
      select r.id, c.inbox_id, st as state, cq_horizon_since(coalesce(wn.horizon, v_horizon), c.window_changed_at) as horizon,
             coalesce(wn.opens_at, v_now) as opens_at, l.min_gap_s, h.until as held_until
        from campaign_runs r
        join campaign_configs c on c.id = r.config_id
        left join windows wn on wn.start_time = c.start_time and wn.end_time = c.end_time
                            and wn.tz = coalesce(c.timezone, '')
        left join campaign_inbox_pacing p on p.inbox_id = c.inbox_id
        left join campaign_inbox_pacing_state st on st.inbox_id = c.inbox_id
        cross join lateral cq_inbox_limits(p, p_min_gap_s, p_max_gap_s, p_daily_cap) l
        cross join lateral cq_inbox_hold(st, p, l.daily_cap, p_warmup_days, p_warmup_start_cap,
                                         p_hourly_cap, v_now) h
       where r.status = 'running' and (p_run_id is null or r.id = p_run_id)
    ), free as (
      select u.id, u.opens_at,
             case when cq_inbox_holds_backlog(u.inbox_id, u.horizon) then '-infinity'
                  else coalesce(u.horizon, '-infinity') end as bound,
             case
               -- Held (over its daily or hourly cap, braked): free when the hold ends.
               when u.held_until is not null then u.held_until
               -- Gapped (a gapped inbox without state yet is free: the claim adds it).
               when u.min_gap_s > 0 and (u.state).inbox_id is not null
                 then greatest(coalesce((u.state).next_slot_at, v_now), v_now)
                      + case when (u.state).turn_until >= v_now
                                  and coalesce((select t.status in ('queued', 'generating',
                                                                    'sending')
                                                       and t.locked_at >= v_cutoff
                                                  from campaign_messages t
                                                 where t.id = (u.state).turn_message_id), false)
                             then make_interval(secs => u.min_gap_s)
                             else interval '0' end
                      - v_look
               else v_now
             end as free_at
        from runs u
    )
    select f.id, f.bound, greatest(f.free_at, f.opens_at, v_now) as at
      from free f
     order by 3, f.id
  loop
    if exists (select 1 from campaign_messages m
                where m.run_id = v_run.id and m.status = 'pending'
                  and m.scheduled_at <= v_now and m.scheduled_at >= v_run.bound) then
      return extract(epoch from v_run.at - v_now);
    end if;
  end loop;
  return null;
end;
$$;
