-- The operator console's reads (README, "Console"; docs/architecture.md, "Status"): the
-- status's runs paged by offset and filtered by status, the sends per minute of the last hour
-- (the chart), and each shown run's failed messages by reason group (the requeue's choices).


-- Ended runs, newest first, for the console's filter by status.
create index if not exists idx_campaign_runs_ended
  on campaign_runs (status, (coalesce(completed_at, started_at)) desc, id)
  where status in ('completed', 'failed', 'cancelled');


-- A page of runs for campaign_queue_status (020_status.sql): p_status null, the running and
-- paused runs as cq_status_page orders them (050_status_pages.sql); 'running' or 'paused',
-- those of them; 'completed', 'failed' or 'cancelled', those, the latest ended first; 'all',
-- the running and paused runs, then the ended ones. p_offset runs are passed over. active is
-- every running and paused run whatever the filter (the queue's and retrying's sections
-- count them); total counts the runs the filter keeps.
create or replace function cq_status_page_of(
  p_limit int, p_offset int, p_status text, p_now timestamptz,
  out shown uuid[], out active uuid[], out total int
)
language plpgsql stable security definer set search_path = public
as $$
declare
  v_ordered uuid[];
  v_active_total int;
begin
  if p_offset is null or p_offset < 0 or p_offset > 1000000 then
    raise exception 'p_offset must be between 0 and 1000000, not %',
      coalesce(p_offset::text, 'null') using errcode = '22023';
  end if;
  if p_status is not null
     and p_status not in ('all', 'running', 'paused', 'completed', 'failed', 'cancelled') then
    raise exception 'p_status must be one of all, running, paused, completed, failed, '
                    'cancelled (or null: running and paused)' using errcode = '22023';
  end if;
  if p_status is null and p_offset = 0 then
    select p.shown, p.active, p.total into shown, active, total
      from cq_status_page(p_limit, p_now) p;
    return;
  end if;
  select p.shown, p.active, p.total into v_ordered, active, v_active_total
    from cq_status_page(p_limit + p_offset, p_now) p;
  if p_status is null then
    shown := v_ordered[p_offset + 1 : p_offset + p_limit];
    total := v_active_total;
  elsif p_status in ('running', 'paused') then
    -- cq_status_page's order puts every running run before every paused one
    select coalesce(array_agg(r.id order by array_position(active, r.id)), '{}'), count(*)
      into v_ordered, total
      from campaign_runs r where r.id = any(active) and r.status = p_status;
    shown := v_ordered[p_offset + 1 : p_offset + p_limit];
  elsif p_status = 'all' then
    select v_ordered || coalesce(array_agg(e.id order by e.ended_at desc, e.id), '{}')
      into v_ordered
      from (select r.id, coalesce(r.completed_at, r.started_at) as ended_at
              from campaign_runs r
             where r.status in ('completed', 'failed', 'cancelled')
             order by coalesce(r.completed_at, r.started_at) desc, r.id
             limit greatest(p_offset + p_limit - v_active_total, 0)) e;
    shown := v_ordered[p_offset + 1 : p_offset + p_limit];
    total := v_active_total + (select count(*) from campaign_runs r
                                where r.status in ('completed', 'failed', 'cancelled'));
  else
    select coalesce(array_agg(e.id order by e.ended_at desc, e.id), '{}') into shown
      from (select r.id, coalesce(r.completed_at, r.started_at) as ended_at
              from campaign_runs r
             where r.status = p_status
             order by coalesce(r.completed_at, r.started_at) desc, r.id
             limit p_limit offset p_offset) e;
    total := (select count(*) from campaign_runs r where r.status = p_status);
  end if;
end;
$$;


-- Messages sent in full per minute over the last hour: jsonb {at, minutes: [{at, sent}]},
-- 60 minutes oldest first, the last one the minute in progress. One range of
-- idx_campaign_messages_sent_at (020_status.sql): bounded by the sends of the hour.
create or replace function campaign_console_sent_per_minute()
returns jsonb
language sql stable security definer set search_path = public
as $$
  with clock as (
    select clock_timestamp() as now, date_trunc('minute', clock_timestamp()) as minute
  ), sent as (
    select date_trunc('minute', m.sent_at) as minute, count(*) as n
      from campaign_messages m, clock c
     where m.sent_at >= c.minute - interval '59 minutes' and m.sent_at <= c.now
     group by 1
  )
  select jsonb_build_object(
    'at', c.now,
    'minutes', (select jsonb_agg(jsonb_build_object('at', g.minute, 'sent', coalesce(s.n, 0))
                                 order by g.minute)
                  from generate_series(c.minute - interval '59 minutes', c.minute,
                                       interval '1 minute') g(minute)
                  left join sent s on s.minute = g.minute))
    from clock c;
$$;


-- Each run's failed messages (status failed, all of them) by reason group, as
-- requeue_campaign_run_failures (052_operator_runs.sql) matches them: jsonb
-- {run_id: [{reason, count}]}, the most frequent first; runs without one left out. At most
-- 500 runs (a page).
create or replace function campaign_console_run_failures(p_run_ids uuid[])
returns jsonb
language plpgsql stable security definer set search_path = public
as $$
begin
  if cardinality(p_run_ids) > 500 then
    raise exception 'p_run_ids: at most 500 runs' using errcode = '22023';
  end if;
  return coalesce((
    select jsonb_object_agg(g.run_id, g.reasons)
      from (select r.run_id, jsonb_agg(jsonb_build_object('reason', r.reason, 'count', r.n)
                                       order by r.n desc, r.reason) as reasons
              from (select t.run_id, cq_failure_reason(t.error_message) as reason,
                           sum(t.n) as n
                      from (select m.run_id, m.error_message, count(*) as n
                              from campaign_messages m
                             where m.run_id = any(p_run_ids) and m.status = 'failed'
                             group by m.run_id, m.error_message) t
                     group by 1, 2) r
             group by r.run_id) g), '{}'::jsonb);
end;
$$;
