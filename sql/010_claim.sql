-- Claiming due work: the lease (docs/architecture.md, "SQL functions") and the skip of late
-- messages.
-- Message life: pending -> queued (claimed) -> generating -> sending -> sent.
-- A claim is a lease (lock_token, locked_at); a stale lease is claimable again and spends
-- a retry.

create or replace function get_and_lock_campaign_messages(
  p_batch_size int default 5,
  p_one_hour_ago timestamptz default null,
  p_lock_timeout_s int default 600,
  p_worker text default null,
  p_run_id uuid default null,
  -- Pacing (016_pacing.sql, 018_fair_claim.sql): the service's INBOX_* settings. Without
  -- them only the inboxes with a row in campaign_inbox_pacing are paced.
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  -- A paced inbox whose next slot opens within this many seconds is claimable now: the
  -- worker waits for the slot (its lease renewed), so a call keeps each inbox at its pace.
  p_lookahead_s real default 0,
  -- INBOX_WARMUP_DAYS, INBOX_WARMUP_START_CAP, INBOX_HOURLY_CAP (040_inbox_hold.sql)
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null,
  -- LEAD_LOCAL_WINDOW: the window is the lead's (the service holds back per message), so a
  -- run's campaign-zone window no longer keeps its messages from the claim (049).
  p_lead_local_window boolean default false
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_cutoff constant timestamptz :=
    now() - make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1));
  -- Lateness discounts provider outages (014_provider_outages.sql); null: no horizon.
  v_horizon constant timestamptz := campaign_queue_effective_horizon(p_one_hour_ago);
  v_stale uuid[];
  v_found int;
  v_runs uuid[];
  v_passed uuid[] := '{}';  -- stale rows left to the next claim: their run is busy elsewhere
  v_claimed uuid[] := '{}';
  v_picked uuid[];
  v_ended_runs uuid[] := '{}';
  v_left int;
  v_round int := 0;
  v_result jsonb;
begin
  if coalesce(p_batch_size, 0) < 1 then
    return '[]'::jsonb;
  end if;

  -- 1. Stale leases: their worker stopped renewing them (crash, kill, lost connection).
  --    Each reclaim spends a retry, so a message that kills its worker ends failed.
  --    Rows this step ends (failed) or puts back (pending: run not running) take no slot of
  --    the batch: the step repeats while it has slots and found as many rows as it asked for,
  --    4 rounds at most so one call stays bounded.
  --    Locks (the order of 012_runs.sql): the rows with skip locked, then their runs by id
  --    before any counter is written or status read. Only the first round waits for its runs:
  --    a later one holds runs already, so it takes its runs with skip locked and leaves the
  --    rows of a run busy elsewhere (still stale) to the next claim.
  loop
    v_round := v_round + 1;
    v_left := p_batch_size - cardinality(v_claimed);
    exit when v_left < 1 or v_round > 4;

    select coalesce(array_agg(s.id), '{}') into v_stale
    from (
      select m.id from campaign_messages m
      where m.status in ('queued', 'generating', 'sending')
        and m.locked_at < v_cutoff
        and (p_run_id is null or m.run_id = p_run_id)
        and m.id <> all(v_passed)
      order by m.locked_at
      limit v_left
      for update of m skip locked
    ) s;
    v_found := cardinality(v_stale);
    exit when v_found = 0;

    if v_round = 1 then
      perform 1 from campaign_runs r
       where r.id in (select m.run_id from campaign_messages m where m.id = any(v_stale))
       order by r.id
       for update of r;
    else
      select coalesce(array_agg(g.id), '{}') into v_runs
      from (
        select r.id from campaign_runs r
         where r.id in (select m.run_id from campaign_messages m where m.id = any(v_stale))
         order by r.id
         for update of r skip locked  -- a run we already hold is returned, not skipped
      ) g;
      -- A row whose run no longer exists stays: it fails below.
      select coalesce(array_agg(m.id) filter (where k.ours), '{}'),
             v_passed || coalesce(array_agg(m.id) filter (where not k.ours), '{}')
        into v_stale, v_passed
        from campaign_messages m
        cross join lateral (
          select m.run_id = any(v_runs)
                 or not exists (select 1 from campaign_runs r where r.id = m.run_id) as ours
        ) k
       where m.id = any(v_stale);
    end if;

    -- A row whose run no longer exists (production may lack the foreign key) can never be
    -- worked: it ends failed, so it is not picked again ahead of the leases behind it.
    update campaign_messages m
       set status = 'failed', error_message = 'run no longer exists',
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
     where m.id = any(v_stale)
       and not exists (select 1 from campaign_runs r where r.id = m.run_id);

    with exhausted as (
      update campaign_messages m
         set status = 'failed',
             error_message = 'lease expired after ' || m.retry_count || ' retries: '
                             || 'the worker processing it stopped each time',
             lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
       where m.id = any(v_stale) and m.status in ('queued', 'generating', 'sending')
         and m.retry_count >= 3
      returning m.run_id
    ), counted as (
      update campaign_runs r  -- rows locked above
         set leads_failed = r.leads_failed + e.n
        from (select run_id, count(*)::int as n from exhausted group by run_id) e
       where r.id = e.run_id
      returning r.id
    )
    select v_ended_runs || coalesce(array_agg(id), '{}') into v_ended_runs from counted;

    update campaign_messages m
       set status = 'pending', retry_count = m.retry_count + 1,
           error_message = 'lease expired while the run was not running: back in the queue',
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
      from campaign_runs r
     where r.id = m.run_id and m.id = any(v_stale)
       and m.status in ('queued', 'generating', 'sending') and m.retry_count < 3
       and r.status <> 'running';

    with reclaimed as (
      update campaign_messages m
         set status = 'queued', retry_count = m.retry_count + 1,
             error_message = 'lease expired: reclaimed',
             lock_token = gen_random_uuid(), locked_at = now(), claimed_by = p_worker,
             updated_at = now()
        from campaign_runs r
       where r.id = m.run_id and m.id = any(v_stale)
         and m.status in ('queued', 'generating', 'sending') and m.retry_count < 3
         and r.status = 'running'
      returning m.id
    )
    select v_claimed || coalesce(array_agg(id), '{}') into v_claimed from reclaimed;

    exit when v_found < v_left;  -- no more stale rows
  end loop;

  -- A run whose last messages just failed here completes, as finalize_campaign_runs says.
  if cardinality(v_ended_runs) > 0 then
    perform finalize_campaign_runs(v_ended_runs);
  end if;

  -- 2. Due pending messages of running runs: paced, spread over inboxes and runs.
  v_left := p_batch_size - cardinality(v_claimed);
  if v_left > 0 then
    -- Into a variable first: in a where clause the function could run once per row.
    v_picked := cq_pick_due_messages(v_left, v_horizon, p_run_id, p_min_gap_s, p_max_gap_s,
                                     p_daily_cap, p_lookahead_s, p_lock_timeout_s,
                                     p_warmup_days, p_warmup_start_cap, p_hourly_cap,
                                     coalesce(p_lead_local_window, false));
    with claimed as (
      update campaign_messages m
         set status = 'queued', lock_token = gen_random_uuid(), locked_at = now(),
             claimed_by = p_worker, updated_at = now()
       where m.id = any(v_picked)
      returning m.id
    )
    select v_claimed || coalesce(array_agg(id), '{}') into v_claimed from claimed;
  end if;

  if cardinality(v_claimed) = 0 then
    return '[]'::jsonb;
  end if;

  select coalesce(jsonb_agg(x.item order by x.scheduled_at, x.id), '[]'::jsonb) into v_result
  from (
    select m.id, m.scheduled_at,
           to_jsonb(m)
           || jsonb_build_object(
                'run', jsonb_build_object('id', r.id, 'status', r.status,
                                          'config_id', r.config_id),
                'config', jsonb_build_object(
                  'id', c.id,
                  'workspace_id', c.workspace_id,
                  'inbox_id', c.inbox_id,
                  'ai_instructions', c.ai_instructions,
                  'split_messages', c.split_messages,
                  'max_split_parts', c.max_split_parts,
                  'target_column_id', c.target_column_id,
                  'start_time', c.start_time,
                  'end_time', c.end_time,
                  'timezone', c.timezone,
                  -- The workspace's agent with a model (null or blank counts as none: the
                  -- service falls back to DEFAULT_MODEL), lowest id first. ai_agents may
                  -- have more columns in production (is_active, created_at) this cannot
                  -- rely on; the id makes the choice deterministic at least.
                  'model', (select a.model from ai_agents a
                             where a.workspace_id = c.workspace_id
                               and nullif(btrim(a.model), '') is not null
                             order by a.id
                             limit 1),
                  'inbox_status', check_campaign_instance_status(c.inbox_id),
                  -- Seconds until the inbox's next slot (0: now or no gap; null: neither
                  -- an override nor a state row).
                  'slot_in_s', (select case when l.min_gap_s > 0
                                            then coalesce(greatest(extract(epoch from
                                                   s.next_slot_at - clock_timestamp()), 0), 0)
                                            else 0 end
                                  from (select c.inbox_id) i
                                  left join campaign_inbox_pacing p on p.inbox_id = i.inbox_id
                                  left join campaign_inbox_pacing_state s
                                    on s.inbox_id = i.inbox_id
                                  cross join lateral cq_inbox_limits(
                                    p, p_min_gap_s, p_max_gap_s, p_daily_cap) l
                                 where p.inbox_id is not null or s.inbox_id is not null),
                  'splitter', (select jsonb_build_object(
                                        'min_chars_to_split', s.min_chars_to_split,
                                        'delay_between_messages', s.delay_between_messages,
                                        'temperature', s.temperature,
                                        'max_tokens', s.max_tokens)
                                 from ai_message_splitter_config s
                                where s.workspace_id = c.workspace_id
                                order by s.id  -- lowest id: deterministic
                                limit 1)
                )
              ) as item
    from campaign_messages m
    join campaign_runs r on r.id = m.run_id
    join campaign_configs c on c.id = r.config_id
    where m.id = any(v_claimed)
  ) x;
  return v_result;
end;
$$;


-- Late pending messages -> skipped, in bounded batches (docs/architecture.md, "SQL
-- functions"): at most p_limit a
-- call, only running runs (a paused run keeps its pending messages for resume_campaign_run),
-- only p_run_id's when given. Runs whose last messages it skips complete. Late means due
-- before the run's horizon: campaign_queue_effective_horizon(p_one_hour_ago) (provider
-- outages do not count) with its window's closed time not counted either (cq_open_horizon),
-- unless its inbox's pace holds the backlog (cq_inbox_holds_backlog). With
-- p_lead_local_window, a windowed run's messages are judged each in its lead's zone
-- (cq_skip_late_in_lead_zones, 049_lead_local_hours.sql).
--
-- Index-backed whatever the backlog: it walks the running runs in id order
-- (idx_campaign_runs_running) and reads each one's late messages through
-- idx_campaign_messages_atomic_selection (run_id, status, scheduled_at), oldest first, so
-- pending messages of paused runs are never read. A loop per run rather than one statement so
-- that it takes the locks in the order every run-level function does (the run row, then its
-- messages), locks only the runs it skips messages of, and stops as soon as the limit is met.
create or replace function mark_old_campaign_messages_as_skipped(
  p_one_hour_ago timestamptz,
  p_run_id uuid default null,
  p_limit int default 5000,
  p_lead_local_window boolean default false
) returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_horizon constant timestamptz := campaign_queue_effective_horizon(p_one_hour_ago);
  v_left int := coalesce(p_limit, 0);
  v_run uuid;
  v_run_horizon timestamptz;
  v_lead_zones boolean;  -- this run's messages are judged in their leads' zones
  v_start time;
  v_end time;
  v_tz text;
  v_inbox uuid;
  v_runs uuid[] := '{}';
  v_n int;
  v_total int := 0;
begin
  if v_horizon is null or v_left < 1 then
    return 0;
  end if;

  -- A run's horizon is never after v_horizon (open-window time is a part of all time), so
  -- the runs without a message due before v_horizon are dropped first, by one probe each.
  for v_run, v_run_horizon, v_lead_zones, v_start, v_end, v_tz, v_inbox in
    select r.id, h.horizon, l.lead_zones, c.start_time, c.end_time, c.timezone, c.inbox_id
      from (select r.id, r.config_id from campaign_runs r
             where r.status = 'running' and (p_run_id is null or r.id = p_run_id)
               and exists (select 1 from campaign_messages m
                            where m.run_id = r.id and m.status = 'pending'
                              and m.scheduled_at < v_horizon)
            offset 0) r
      left join campaign_configs c on c.id = r.config_id
     cross join lateral (select coalesce(p_lead_local_window, false)
                                and coalesce(c.start_time <> c.end_time, false)
                                as lead_zones) l
     -- In leads' zones every zone's horizon is at most the plain one, and a backlog the inbox
     -- holds at the plain horizon it holds at every earlier one: the run's bound stays sound.
     -- No open time before the window's last change counts (026_window_changes.sql).
     cross join lateral (select cq_horizon_since(
                                  case when l.lead_zones then v_horizon
                                       else cq_open_horizon(c.start_time, c.end_time,
                                                            c.timezone, now(), v_horizon) end,
                                  c.window_changed_at) as horizon) h
       -- A paced inbox held by its gap or cap holds its backlog on purpose (016_pacing.sql).
     where not cq_inbox_holds_backlog(c.inbox_id, h.horizon)
       and exists (select 1 from campaign_messages m
                    where m.run_id = r.id and m.status = 'pending'
                      and m.scheduled_at < h.horizon)
     order by r.id
  loop
    -- The run row first; it may have been paused since the loop read it.
    perform 1 from campaign_runs where id = v_run and status = 'running' for update;
    continue when not found;

    if v_lead_zones then
      v_n := cq_skip_late_in_lead_zones(v_run, v_start, v_end, v_tz, v_inbox, v_horizon,
                                        v_left);
    else
      with late as (
        select m.id from campaign_messages m
         where m.run_id = v_run and m.status = 'pending' and m.scheduled_at < v_run_horizon
         order by m.scheduled_at
         limit v_left
         for update of m skip locked
      ), skipped as (
        update campaign_messages m
           set status = 'skipped',
               error_message = 'skipped: scheduled before the horizon ' || v_run_horizon::text,
               updated_at = now()
          from late
         where m.id = late.id
        returning 1
      )
      select count(*)::int into v_n from skipped;
    end if;

    if v_n > 0 then
      v_runs := v_runs || v_run;
      v_total := v_total + v_n;
      v_left := v_left - v_n;
    end if;
    exit when v_left < 1;
  end loop;

  if cardinality(v_runs) > 0 then
    perform finalize_campaign_runs(v_runs);
  end if;
  return v_total;
end;
$$;
