-- The status's pages (docs/architecture.md, "Status"): campaign_queue_status (020_status.sql)
-- shows at most p_limit runs, so its cost follows the page, not the number of active runs.
-- What it still says about every active run (the queue's depth and lag, the messages waiting
-- for a retry, runs_total) is read here in one pass of a few index rows a run, without the
-- per-run probes, ETAs and JSON of the runs shown.


-- The page of runs, in the order shown: running before paused, then the most recently
-- active first (the latest of its start and its last send within the hour: the sends of the
-- last hour, idx_campaign_messages_sent_at), then by id. active: every running and paused
-- run; total: how many.
create or replace function cq_status_page(
  p_limit int, p_now timestamptz, out shown uuid[], out active uuid[], out total int
)
language sql stable security definer set search_path = public
as $$
  select coalesce((array_agg(a.id order by a.running desc, a.active_at desc, a.id))[1:p_limit],
                  '{}'),
         coalesce(array_agg(a.id), '{}'),
         count(*)::int
    from (select r.id, r.status = 'running' as running,
                 greatest(r.started_at, s.last_sent_at) as active_at
            from campaign_runs r
            left join (select m.run_id, max(m.sent_at) as last_sent_at
                         from campaign_messages m
                        where m.sent_at >= p_now - interval '60 minutes'
                        group by m.run_id) s on s.run_id = r.id
           where r.status in ('running', 'paused')) a;
$$;


-- The runs whose backlog the ETAs of p_shown need: those, then the running runs sharing
-- their inboxes (a paced inbox's runs take turns).
create or replace function cq_status_counted(p_shown uuid[])
returns uuid[]
language sql stable security definer set search_path = public
as $$
  select p_shown || coalesce(array_agg(r.id), '{}')
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.status = 'running' and r.id <> all(p_shown)
     and c.inbox_id in (select c2.inbox_id
                          from campaign_runs r2 join campaign_configs c2 on c2.id = r2.config_id
                         where r2.id = any(p_shown));
$$;


-- The status's queue reads the counts of every active run whose minutes are past: by time,
-- not run by run.
create index if not exists idx_campaign_message_counts_due
  on campaign_message_counts (due_at) include (run_id, kind, n, latest_at);


-- The status's queue over p_runs: {due, scheduled, in_flight, oldest_due_s}: pending
-- messages of the running runs due now / not yet due, claimed messages of all of them, and
-- how late the oldest due one is (null when none is due). Counted as each run's backlog is
-- (009_message_counts.sql's rows: a few a run; the minute in progress counted row by row only
-- when some of its messages are not yet due). The oldest due message: the first of
-- idx_campaign_messages_due's first 1,000 entries that belongs to a running run with
-- something due (one short walk, whatever the number of runs), else, when paused runs' older
-- messages fill those, the first of each such run (one probe a run).
-- (The planner cannot tell how few of the counts' rows are of minutes past, the bound being a
-- parameter: left to itself it reads the whole table, rows of minutes ahead included.)
create or replace function cq_status_queue(p_runs uuid[], p_now timestamptz)
returns jsonb
language sql stable security definer set search_path = public set enable_seqscan = off
as $$
  with minute as (
    select date_bin('1 minute', p_now, timestamptz '2000-01-01 00:00:00+00') as at
  ), counts as materialized (
    -- One range of idx_campaign_message_counts_due (the rows of minutes now past and of the
    -- minute in progress: a few a run), not a probe a run.
    select r.id, r.status = 'running' as running,
           coalesce(sum(c.n) filter (where c.kind = 'pending'), 0) as pending,
           coalesce(sum(c.n) filter (where c.kind = 'in_flight'), 0) as in_flight,
           coalesce(sum(c.n) filter (where c.kind = 'due' and c.due_at < t.at), 0)
             as due_before,
           coalesce(sum(c.n) filter (where c.kind = 'due' and c.due_at = t.at), 0)
             as due_this_minute,
           max(c.latest_at) filter (where c.kind = 'due' and c.due_at = t.at)
             as latest_this_minute
      from minute t
      join campaign_message_counts c on c.due_at <= t.at
      join campaign_runs r on r.id = c.run_id
     where r.id = any(p_runs)
     group by r.id, r.status
  ), per_run as materialized (
    select k.id, k.running, k.pending, k.in_flight,
           k.due_before + case
             when not k.running or k.due_this_minute = 0 then 0
             when k.latest_this_minute <= p_now then k.due_this_minute
             else (select count(*) from campaign_messages m, minute t
                    where m.run_id = k.id and m.status = 'pending'
                      and m.scheduled_at >= t.at and m.scheduled_at <= p_now)
           end as due
      from counts k
  ), due_runs as materialized (
    select coalesce(array_agg(d.id), '{}') as ids from per_run d where d.running and d.due > 0
  )
  select jsonb_build_object(
    'due', coalesce(sum(p.due) filter (where p.running), 0),
    'scheduled', coalesce(sum(p.pending - p.due) filter (where p.running), 0),
    'in_flight', coalesce(sum(p.in_flight), 0),
    -- (an infinite time, which a product may write, has no age: not counted here)
    'oldest_due_s', floor(extract(epoch from p_now - coalesce(
      (select w.scheduled_at
         from (select m.scheduled_at, m.run_id from campaign_messages m
                where m.status = 'pending'
                  and m.scheduled_at > '-infinity' and m.scheduled_at < 'infinity'
                order by m.scheduled_at limit 1000) w, due_runs u
        where cardinality(u.ids) > 0 and w.run_id = any(u.ids)
        order by w.scheduled_at limit 1),
      (select min(f.first_at)
         from due_runs u, unnest(u.ids) d(id)
         cross join lateral (
           select m.scheduled_at as first_at from campaign_messages m
            where m.run_id = d.id and m.status = 'pending'
              and m.scheduled_at > '-infinity' and m.scheduled_at < 'infinity'
            order by m.scheduled_at limit 1) f)))))
    from per_run p;
$$;
