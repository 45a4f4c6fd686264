-- Operator visibility (docs/architecture.md, "Status"): campaign_queue_status(p_run_id)
-- answers, in one
-- round trip, how deep and late the queue is, how far each campaign is and what it cost, each
-- inbox's pace today, why messages failed lately and how fast they go out.
--
-- Cost: index-backed, growing with neither the history nor the backlog. A run's sent and
-- failed figures are its counters (leads_processed, leads_failed: kept by the functions that
-- end a message, in the same transaction); its pending, due, in-flight and skipped messages
-- are read from campaign_message_counts (009_message_counts.sql: a few rows a run). What is
-- counted row by row is bounded by the pace of the queue: the sends of the last hour and the
-- failures of the last 24 hours (the partial indexes below), and a run's messages falling due
-- within the minute in progress. bench/status_cost.py shows the plans at 1M rows.

-- Sends of the last 5 and 60 minutes (throughput, and the pace of an unpaced run's ETA).
create index if not exists idx_campaign_messages_sent_at
  on campaign_messages (sent_at) include (run_id) where sent_at is not null;

-- Failures (for good) of the last 24 hours, grouped by reason: of every run, and of one.
create index if not exists idx_campaign_messages_failed_at
  on campaign_messages (updated_at) where status = 'failed';
create index if not exists idx_campaign_messages_failed_by_run
  on campaign_messages (run_id, updated_at) where status = 'failed';

-- The runs an operator watches: running and paused.
create index if not exists idx_campaign_runs_active
  on campaign_runs (started_at, id) where status in ('running', 'paused');


-- A counter of the run's metrics (product-owned jsonb) as a number, as
-- mark_message_part_sent reads it: a number (negative: 0), a plain decimal string, else 0.
-- (No search_path setting here or in cq_failure_reason: plain SQL naming only built-ins, they
-- are inlined into their callers; a setting would stop that and cost a settings swap a row.)
create or replace function cq_metric_number(p_metrics jsonb, p_key text)
returns numeric
language sql immutable
as $$
  select case
    when jsonb_typeof(p_metrics) is distinct from 'object' then 0
    when jsonb_typeof(p_metrics -> p_key) = 'number'
      then greatest((p_metrics ->> p_key)::numeric, 0)
    when jsonb_typeof(p_metrics -> p_key) = 'string'
         and p_metrics ->> p_key ~ '^\s*[0-9]{1,30}(\.[0-9]{1,30})?\s*$'
      then (p_metrics ->> p_key)::numeric
    else 0 end;
$$;


-- A failure's reason without what differs from one message to the next: ids (uuids, long hex)
-- become <id>, numbers (with their separators: dates, times, amounts, phone numbers) <n>, so
-- failures group by cause. An HTTP status (the number right after "HTTP " or "code ") is
-- kept: it is the cause. Two regular expressions a text (each costs microseconds: the status
-- normalises distinct texts, not rows, and at most 500 of them).
create or replace function cq_failure_reason(p_error text)
returns text
language sql immutable
as $$
  select left(btrim(replace(replace(
    regexp_replace(
      regexp_replace(
        replace(replace(coalesce(nullif(btrim(p_error), ''), 'unknown error'),
                        'HTTP ', 'HTTP_'), 'code ', 'code_'),
        '\m[0-9a-fA-F][0-9a-fA-F-]{15,}', '<id>', 'g'),
      '\m[0-9]+([-.,:/T][0-9]+)*', '<n>', 'g'),
    'HTTP_', 'HTTP '), 'code_', 'code ')), 200);
$$;


-- The status, as jsonb:
--   at            now (the database's clock), so a reader can turn timestamps into ages
--   queue         {due, scheduled, in_flight, oldest_due_s}: pending messages of running runs
--                 due now / not yet due, claimed ones (queued, generating, sending), and how
--                 late the oldest due one is (null when none is due)
--   runs          [{run_id, status, inbox_id, total, sent, failed, retrying, skipped,
--                 pending, in_flight, ai_tokens, ai_cost_usd, started_at, error_message,
--                 eta_s}], running and paused runs, or the one asked for: a page of at
--                 most p_limit (1 to 500): running first, the most recently active first
--                 (cq_status_page, 050_status_pages.sql); p_offset and p_status page
--                 and filter them (cq_status_page_of, 055_console.sql)
--   runs_total    how many runs the page is taken from (all running and paused, or 1)
--   inboxes       [{inbox_id, sent_today, daily_cap, timezone, next_slot_at, min_gap_s,
--                 max_gap_s, pending, warmup_day, today_cap, hourly_cap, sent_last_hour,
--                 held, held_until, brake_reason, brake_until}] for the inboxes of the runs
--                 shown (the hold's fields: cq_inbox_hold, 040_inbox_hold.sql; daily_cap 0: no cap;
--                 timezone: the zone of the calendar day the cap counts, the day in progress
--                 or else the next one; pending: of its running runs, the backlog its pace
--                 works through)
--   failures      [{reason, count}]: messages failed for good (status failed) in the last 24
--                 hours, by cq_failure_reason, the 20 most frequent (past 500 different
--                 texts, the rest are counted as one "(other failures: ...)" entry)
--   retrying      [{reason, count, next_attempt_at}]: messages waiting for a retry (pending
--                 after a failed attempt), by reason (cq_status_retrying, 030)
--   throughput    {sent_5m, sent_60m}: messages sent in full in the last 5 and 60 minutes
--   circuit       {outage_since, openings_24h, openings}: the calls' circuit openings
--                 (cq_status_circuit, 030_calls_and_circuit.sql)
--   last_call     the call that ended last and what it answered, or null
--                 (cq_status_last_call, 030)
--   skipped_by_reason [{reason, count}]: messages skipped in the last 24 hours, by reason
--                 ('opted out', 'replied', ...; cq_status_skipped, 046_status_skipped.sql)
-- With p_run_id every section is about that run (and its inbox), but circuit and last_call,
-- which are about the service.
--
-- A run's failed is its messages failed for good (leads_failed), retrying those waiting for
-- a retry; a call's failed (its answer, last_call) counts failed attempts, retries included.
--
-- sent and failed are the run's counters; total is leads_total, or more when the run holds
-- more messages; ai_tokens and ai_cost_usd are the sums in the run's metrics (sent messages).
--
-- eta_s (seconds until the run's last message goes out; null for a paused run, or when it
-- cannot be told). Pacing limits are the inbox's campaign_inbox_pacing overrides, else
-- p_min_gap_s / p_max_gap_s / p_daily_cap / p_warmup_* / p_hourly_cap (the service passes its
-- INBOX_* settings), else the service's defaults 20 / 60 / 300, warm-up and hourly cap off.
-- With n = the run's pending plus in-flight messages:
-- - paced inbox (a gap, a daily or an hourly cap): runs sharing the inbox interleave (fair
--   share), so the run's last message is the k-th of the inbox, k = sum over the inbox's
--   running runs of least(their n, this n); it goes when cq_status_eta_s
--   (057_status_eta.sql) says: from the inbox's next slot or the end of its hold (a brake,
--   the daily or hourly cap: cq_inbox_hold, 040_inbox_hold.sql), one a mean gap (min + max)
--   / 2, or at most hourly_cap an hour when that is tighter; past what today's cap (a
--   warm-up's) leaves, from each next midnight (its day's timezone) a day's cap at a time,
--   a warm-up's growing one on its days;
-- - unpaced inbox: its hold's end (a brake), then n at the run's pace of the last 60 minutes
--   (or since it started, if that is shorter, one minute at least): n * window / sends in the
--   window (null: none sent).
-- Never sooner than the run's last scheduled_at. The send window (start/end time) is not
-- accounted for. An inbox's next_slot_at is its state's, or its hold's end when later.
create or replace function campaign_queue_status(
  p_run_id uuid default null,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  p_inbox_timezone text default null,  -- INBOX_TIMEZONE (null: America/Sao_Paulo)
  -- INBOX_WARMUP_DAYS, INBOX_WARMUP_START_CAP, INBOX_HOURLY_CAP (040_inbox_hold.sql)
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null,
  p_limit int default 50,  -- the runs shown, at most
  -- the console's pages and filter (cq_status_page_of, 055_console.sql): runs passed over,
  -- and which runs (null: running and paused)
  p_offset int default 0,
  p_status text default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_setting_tz constant text := cq_valid_timezone(p_inbox_timezone);
  -- The clock, not the transaction's start: the counts' minutes are binned by writers that
  -- committed before this call's snapshots, and their margin (cq_due_minute) assumes a reader
  -- whose now is no earlier than theirs by a minute, whatever transaction it runs in.
  v_now constant timestamptz := clock_timestamp();
  v_shown uuid[];    -- the runs answered about (the page)
  v_active uuid[];   -- the runs the queue and retrying sections count (all, or the one)
  v_runs_total int;
  v_counted uuid[];  -- those, plus the running runs that share their inbox (the ETA's share)
  v_texts text[];    -- failures of the last 24 hours: each distinct text,
  v_counts bigint[]; -- and how many failed with it
  v_retrying jsonb;  -- {reasons, by_run}: the shown runs' messages waiting for a retry
  v_result jsonb;
begin
  if p_limit is null or p_limit < 1 or p_limit > 500 then
    raise exception 'p_limit must be between 1 and 500, not %', coalesce(p_limit::text, 'null')
      using errcode = '22023';
  end if;
  if p_run_id is null then
    select p.shown, p.active, p.total into v_shown, v_active, v_runs_total
      from cq_status_page_of(p_limit, p_offset, p_status, v_now) p;
  else
    v_shown := array[p_run_id];
    v_active := v_shown;
    select count(*) into v_runs_total from campaign_runs r where r.id = p_run_id;
  end if;
  v_counted := cq_status_counted(v_shown);

  v_retrying := cq_status_retrying(v_active);

  -- Failures of the last 24 hours, one row per distinct text (a statement of its own, so each
  -- case has its own plan: all runs by idx_campaign_messages_failed_at, one run by
  -- idx_campaign_messages_failed_by_run).
  if p_run_id is null then
    select array_agg(m.error_message), array_agg(m.n) into v_texts, v_counts
      from (select m.error_message, count(*) as n
              from campaign_messages m
             where m.status = 'failed' and m.updated_at >= v_now - interval '24 hours'
             group by m.error_message) m;
  else
    select array_agg(m.error_message), array_agg(m.n) into v_texts, v_counts
      from (select m.error_message, count(*) as n
              from campaign_messages m
             where m.run_id = p_run_id and m.status = 'failed'
               and m.updated_at >= v_now - interval '24 hours'
             group by m.error_message) m;
  end if;

  with recent as materialized (  -- sends of the last hour, by run
    select m.run_id, count(*) as sent_60m,
           count(*) filter (where m.sent_at >= v_now - interval '5 minutes') as sent_5m
      from campaign_messages m
     where m.sent_at >= v_now - interval '60 minutes'
     group by m.run_id
  ), per_run as materialized (
    -- Each run's backlog from its counts (009_message_counts.sql): a few rows a run. (What
    -- is due is counted over every active run by cq_status_queue, 050_status_pages.sql.)
    select r.id, r.status, r.leads_total, r.leads_processed, r.leads_failed, r.started_at,
           r.error_message, c.inbox_id, c.timezone, r.id = any(v_shown) as shown,
           k.pending, k.skipped,
           case when r.status = 'running' and k.pending > 0 then (
             select m.scheduled_at from campaign_messages m
              where m.run_id = r.id and m.status = 'pending'
                and m.scheduled_at > '-infinity' and m.scheduled_at < 'infinity'
              order by m.scheduled_at desc limit 1) end as last_at,
           k.in_flight,
           coalesce(x.sent_60m, 0) as sent_60m,
           -- the sends were counted over the last hour, or since the run started (1 min at
           -- least)
           least(greatest(extract(epoch from v_now - r.started_at), 60), 3600) as window_s,
           k.pending + k.in_flight as remaining,
           cq_metric_number(r.metrics, 'ai_tokens_used') as ai_tokens,
           cq_metric_number(r.metrics, 'ai_cost_usd') as ai_cost_usd
      from campaign_runs r
      left join campaign_configs c on c.id = r.config_id
      left join recent x on x.run_id = r.id
      cross join lateral (
        select coalesce(sum(k.n) filter (where k.kind = 'pending'), 0) as pending,
               coalesce(sum(k.n) filter (where k.kind = 'skipped'), 0) as skipped,
               coalesce(sum(k.n) filter (where k.kind = 'in_flight'), 0) as in_flight
          from campaign_message_counts k
         where k.run_id = r.id and k.due_at = '-infinity'
           and k.kind in ('pending', 'skipped', 'in_flight')) k
     where r.id = any(v_counted)
  ), inbox_rows as materialized (
    -- Overrides that are no finite number (written before 025_pacing_overrides.sql refused
    -- them) count as unset.
    select i.inbox_id, i.pending,
           case when o.min_gap_s < 'Infinity' then o.min_gap_s end as min_gap_s,
           case when o.max_gap_s < 'Infinity' then o.max_gap_s end as max_gap_s, o.daily_cap,
           o.timezone as own_tz, g.sent_day, g.sent_today, g.next_slot_at,
           coalesce(g.day_timezone, 'America/Sao_Paulo') as day_tz  -- as cq_local_date reads it
      from (select pr.inbox_id,
                   sum(pr.pending) filter (where pr.status = 'running') as pending
              from per_run pr where pr.inbox_id is not null group by pr.inbox_id) i
      left join campaign_inbox_pacing o on o.inbox_id = i.inbox_id
      left join campaign_inbox_pacing_state g on g.inbox_id = i.inbox_id
  ), zones as materialized (  -- each time zone checked once, not once per inbox
    select z.name, cq_valid_timezone(z.name) as tz, cq_valid_timezone(z.name) = z.name as known
      from (select distinct unnest(array[x.own_tz, x.day_tz]) as name from inbox_rows x) z
     where z.name is not null
  ), inboxes as materialized (
    select i.inbox_id, i.pending, i.next_slot_at, l.min_gap, l.max_gap, l.cap,
           (l.min_gap + l.max_gap) / 2.0 as mean_gap, d.tz,
           case when d.counting then i.sent_today else 0 end as sent_today,
           extract(epoch from (((v_now at time zone d.tz)::date + 1)::timestamp
                               at time zone d.tz) - v_now) as to_midnight_s
      from inbox_rows i
      left join zones dz on dz.name = i.day_tz
      left join zones oz on oz.name = i.own_tz
      -- The zone of the cap's day: the state's while its day lasts (the count is today's),
      -- else the one take_inbox_slot opens the next day in (the row's, else INBOX_TIMEZONE).
      cross join lateral (
        select c.counting,
               case when c.counting then dz.tz
                    when oz.known then oz.tz
                    else v_setting_tz end as tz
          from (select coalesce(i.sent_day >= (v_now at time zone dz.tz)::date, false)
                         as counting) c) d
      cross join lateral (
        -- A day at most, as cq_inbox_limits reads them for the claim and the slot.
        select least(greatest(coalesce(i.min_gap_s, p_min_gap_s, 20), 0), 86400)::numeric
                 as min_gap,
               least(greatest(coalesce(i.max_gap_s, p_max_gap_s, 60),
                              coalesce(i.min_gap_s, p_min_gap_s, 20), 0), 86400)::numeric
                 as max_gap,
               greatest(coalesce(i.daily_cap, p_daily_cap, 300), 0) as cap) l
  ), held as materialized (
    -- Number health's hold now (cq_inbox_hold, 040_inbox_hold.sql): the next slot is its end
    -- when later; the ETA counts it (cq_status_eta_s, 057_status_eta.sql).
    select ib.inbox_id, g as state, o as overrides, h.*,
           greatest(ib.next_slot_at, h.until) as slot_at
      from inboxes ib
      left join campaign_inbox_pacing o on o.inbox_id = ib.inbox_id
      left join campaign_inbox_pacing_state g on g.inbox_id = ib.inbox_id
      cross join lateral cq_inbox_hold(g, o, ib.cap, p_warmup_days, p_warmup_start_cap,
                                       p_hourly_cap, v_now) h
  ), shares as (
    -- k = sum over the inbox's running runs of least(their remaining, this remaining):
    -- the remaining of the runs with no more than this one, plus this one's for each run
    -- with more (window sums over the inbox's runs in order of remaining).
    select w.id,
           w.at_most + w.remaining * (w.runs - w.runs_at_most) as k
      from (select pr.id, pr.remaining,
                   sum(pr.remaining) over (partition by pr.inbox_id order by pr.remaining
                                           range between unbounded preceding and current row)
                     as at_most,
                   count(*) over (partition by pr.inbox_id order by pr.remaining
                                  range between unbounded preceding and current row)
                     as runs_at_most,
                   count(*) over (partition by pr.inbox_id) as runs
              from per_run pr
             where pr.status = 'running' and pr.inbox_id is not null) w
  ), eta as (
    select a.id,
           case
             when a.status <> 'running' then null
             when a.remaining = 0 then 0
             when ib.min_gap > 0 or ib.cap > 0 or h.hourly_cap > 0 then greatest(
               cq_status_eta_s(s.k::bigint, v_now, h.slot_at, ib.mean_gap, ib.cap,
                               ib.sent_today, ib.to_midnight_s, h.day_cap, h.warmup_day,
                               h.hourly_cap, ib.inbox_id, h.state, h.overrides,
                               p_warmup_days, p_warmup_start_cap, p_hourly_cap),
               extract(epoch from a.last_at - v_now))
             when a.sent_60m > 0 then greatest(
               greatest(coalesce(extract(epoch from h.until - v_now), 0), 0)
                 + a.remaining * a.window_s / a.sent_60m,
               extract(epoch from a.last_at - v_now))
           end as eta_s
      from per_run a
      left join inboxes ib on ib.inbox_id = a.inbox_id
      left join held h on h.inbox_id = a.inbox_id
      left join shares s on s.id = a.id
     where a.shown
  ), failed as (
    select f.error_message, f.n from unnest(v_texts, v_counts) as f(error_message, n)
  ), reasons as (
    -- Normalising costs microseconds a text: the 500 most frequent texts are grouped by
    -- reason, any further ones (rare: the queue's own texts name no ids) counted together.
    select case when t.rank <= 500 then cq_failure_reason(t.error_message)
                else '(other failures: too many different texts to group)' end as reason,
           sum(t.n) as n
      from (select f.*, row_number() over (order by f.n desc, f.error_message) as rank
              from failed f) t
     group by 1
  )
  select jsonb_build_object(
    'at', v_now,
    'queue', cq_status_queue(v_active, v_now),
    'runs', coalesce((
      select jsonb_agg(jsonb_build_object(
               'run_id', pr.id,
               'status', pr.status,
               'inbox_id', pr.inbox_id,
               'total', greatest(pr.leads_total, pr.leads_processed + pr.leads_failed
                                 + pr.skipped + pr.remaining),
               'sent', pr.leads_processed,
               'failed', pr.leads_failed,
               'retrying', coalesce((v_retrying -> 'by_run' ->> pr.id::text)::bigint, 0),
               'skipped', pr.skipped,
               'pending', pr.pending,
               'in_flight', pr.in_flight,
               'ai_tokens', pr.ai_tokens,
               'ai_cost_usd', pr.ai_cost_usd,
               'started_at', pr.started_at,
               'error_message', pr.error_message,
               'eta_s', ceil(e.eta_s)::bigint)
             order by array_position(v_shown, pr.id))
        from per_run pr join eta e on e.id = pr.id), '[]'::jsonb),
    'runs_total', v_runs_total,
    'inboxes', coalesce((
      select jsonb_agg(jsonb_build_object(
               'inbox_id', ib.inbox_id,
               'sent_today', ib.sent_today,
               'daily_cap', ib.cap,
               'timezone', ib.tz,
               'next_slot_at', h.slot_at,
               'min_gap_s', ib.min_gap,
               'max_gap_s', ib.max_gap,
               'pending', coalesce(ib.pending, 0),
               'warmup_day', h.warmup_day,
               'today_cap', h.day_cap,
               'hourly_cap', h.hourly_cap,
               'sent_last_hour', h.sent_last_hour,
               'held', h.reason,
               'held_until', h.until,
               'brake_reason',
                 case when (h.state).brake_until > v_now then (h.state).brake_reason end,
               'brake_until',
                 case when (h.state).brake_until > v_now then (h.state).brake_until end)
             order by ib.inbox_id)
        from inboxes ib
        join held h on h.inbox_id = ib.inbox_id
       where ib.inbox_id in (select pr.inbox_id from per_run pr where pr.shown)), '[]'::jsonb),
    'failures', coalesce((
      select jsonb_agg(jsonb_build_object('reason', f.reason, 'count', f.n)
                       order by f.n desc, f.reason)
        from (select * from reasons order by n desc, reason limit 20) f), '[]'::jsonb),
    'retrying', v_retrying -> 'reasons',
    'circuit', cq_status_circuit(v_now),
    'last_call', cq_status_last_call(),
    'skipped_by_reason', cq_status_skipped(v_now, p_run_id),
    'throughput', (
      select jsonb_build_object('sent_5m', coalesce(sum(x.sent_5m), 0),
                                'sent_60m', coalesce(sum(x.sent_60m), 0))
        from recent x where p_run_id is null or x.run_id = p_run_id)
  ) into v_result;

  -- Then fold the counts' changes, so the next call reads fewer rows: last, after the reads of
  -- campaign_messages, in the lock order of 009_message_counts.sql (so the function is not
  -- stable; a fold in progress elsewhere is not waited for; a read-only or repeatable-read
  -- caller does not fold).
  perform cq_fold_message_counts();
  return v_result;
end;
$$;
