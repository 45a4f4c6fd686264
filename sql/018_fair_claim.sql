-- Which due messages a claim takes (docs/architecture.md, "Pacing"): pacing and fair share.
--
-- Pass 1, one message per eligible inbox, least recently served inbox first; within an inbox,
-- the run served least recently (campaign_run_turns), so a 10-lead run is not held behind a
-- 10,000-lead one on the same number. An inbox is eligible when it is not held (under its
-- daily cap, the warm-up's during a warm-up, under its hourly cap, not braked: cq_inbox_hold's
-- rule in 040_inbox_hold.sql, written out here) and, if it has a gap, its next slot opens
-- within p_lookahead_s and nobody holds its turn. A gapped inbox's turn is reserved for the
-- message picked (turn_message_id): two instances never generate for one slot. Pass 2 fills what is left of the batch from inboxes without a gap,
-- round-robin over inboxes, and within one over its runs, never past what the cap leaves.
-- Runs whose send window is closed are left alone (022_send_window.sql). A run's late
-- messages (due before its horizon: closed-window time not counted, and none while its
-- inbox's gap or cap holds the backlog) are never picked: the skip ends them.
--
-- The turn is held while its message is claimed (queued, generating, sending) under a live
-- lease, and at most until turn_until: released, failed, skipped, sent, or its worker dead
-- (lease expired), the inbox is free again. take_inbox_slot, not the turn, guarantees the
-- gap: a message reclaimed from a dead worker may take the slot before the turn's holder.
--
-- Cost, flat in the number of messages: one pass over the running runs (a few thousand rows at
-- most) drops those of inboxes inside their gap through hashes of campaign_inbox_pacing and
-- its state; then,
-- for the inboxes left, least recently served first and no more than the batch can use, each
-- run's oldest due message is one probe of idx_campaign_messages_atomic_selection. Paused
-- runs' backlog and the messages of waiting inboxes are never read. No lock is waited for,
-- except a state row another claim or take_inbox_slot is inserting: rows are locked with skip
-- locked, so two claims never block each other for long or deadlock.

create or replace function cq_pick_due_messages(
  p_left int,
  p_horizon timestamptz,
  p_run_id uuid,
  p_min_gap_s real,
  p_max_gap_s real,
  p_daily_cap int,
  p_lookahead_s real,
  p_lock_timeout_s int,
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null,
  p_lead_local_window boolean default false
) returns uuid[]
language plpgsql security definer set search_path = public
as $$
declare
  v_now constant timestamptz := now();
  -- A slot opening this soon counts as open (null or NaN: 0; at most an hour).
  v_soon constant timestamptz := v_now + make_interval(
    secs => least(greatest(coalesce(nullif(p_lookahead_s, 'NaN'), 0), 0), 3600));
  -- A lease older than this has expired: its message holds no turn.
  v_cutoff constant timestamptz :=
    v_now - make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1));
  -- A config without an inbox (production may allow it) groups under this key: never paced.
  v_none constant uuid := '00000000-0000-0000-0000-000000000000';
  v_left int := least(p_left, 10000);  -- no arithmetic below overflows (the service asks <= 100)
  v_picked uuid[] := '{}';
  -- One candidate per eligible inbox, least recently served first (parallel arrays).
  v_inboxes uuid[];
  v_messages uuid[];
  v_gaps boolean[];
  v_caps int[];  -- today's cap: the warm-up's (0: none)
  v_hourly int[];  -- hourly caps (0: none)
  v_rooms int[];  -- messages the cap still allows today (null: no cap; gapless inboxes only)
  v_missing uuid[];  -- gapped inboxes without a row yet
  -- The runs of the gapless candidates for pass 2: candidate's position, run, late bound.
  v_gapless_ords int[];
  v_gapless_runs uuid[];
  v_gapless_bounds timestamptz[];
  v_id uuid;
  i int;
begin
  -- Dynamic SQL, so it is planned for each call with the values at hand: a cached generic
  -- plan of it (plpgsql's choice after five calls) costs several times as much.
  -- $1 now, $2 the lookahead's end, $3 the lease cutoff, $4 the no-inbox key, $5 the horizon,
  -- $6 the run filter, $7 and $8 the caller's min gap and cap, $9 the batch left, $10 to $12
  -- the caller's warm-up days, warm-up start cap and hourly cap, $13 lead-local hours (the
  -- campaign-zone window then neither closes a run nor moves its late bound: the service
  -- holds back per lead, the skip judges per lead, 049).
  execute $pick$
  with windows as materialized (
    -- Each distinct send window of the running runs, once: open now? and the horizon with
    -- its closed time not counted.
    select w.start_time, w.end_time, w.tz,
           $13 or cq_window_open(w.start_time, w.end_time, w.tz, $1) as open,
           case when $13 then '-infinity'
                else cq_open_horizon(w.start_time, w.end_time, w.tz, $1, $5) end as horizon
      from (select distinct c.start_time, c.end_time, coalesce(c.timezone, '') as tz
              from campaign_runs r join campaign_configs c on c.id = r.config_id
             where r.status = 'running' and ($6 is null or r.id = $6)
               and c.start_time <> c.end_time) w
  ), awake as (
    -- The running runs, less the bulk: those of inboxes inside their gap (a next slot beyond
    -- the lookahead, and a gap on: the override's min gap, else the caller's, else 20 s for
    -- an inbox with an override row, as cq_inbox_limits says), and those whose window is
    -- closed, and braked ones, dropped before anything else is computed. Each run's late
    -- bound: its horizon, or none while its inbox's pace holds the backlog
    -- (cq_inbox_holds_backlog's rule, written out).
    select coalesce(c.inbox_id, $4) as key, r.id as run_id, t.last_claimed_at,
           case when coalesce(s.brake_until >= cq_horizon_since(coalesce(wn.horizon, $5), c.window_changed_at), false)
                     or coalesce(s.paced
                                 and (greatest(s.next_slot_at, s.last_slot_at)
                                        >= cq_horizon_since(coalesce(wn.horizon, $5), c.window_changed_at)
                                      or coalesce(s.capped_until >= cq_horizon_since(coalesce(wn.horizon, $5), c.window_changed_at),
                                                  s.capped_day
                                                    >= ($1 - interval '2 days')::date)),
                                 false)
                then '-infinity'::timestamptz
                else coalesce(cq_horizon_since(cq_horizon_since(coalesce(wn.horizon, $5), c.window_changed_at), c.window_changed_at), '-infinity') end as bound
      from campaign_runs r
      join campaign_configs c on c.id = r.config_id
      left join windows wn on wn.start_time = c.start_time and wn.end_time = c.end_time
                          and wn.tz = coalesce(c.timezone, '')
      left join campaign_inbox_pacing p on p.inbox_id = c.inbox_id
      left join campaign_inbox_pacing_state s on s.inbox_id = c.inbox_id
      left join campaign_run_turns t on t.run_id = r.id
     where r.status = 'running' and ($6 is null or r.id = $6)
       and coalesce(wn.open, true)
       and not coalesce(s.brake_until > $1, false)
       and not coalesce(s.next_slot_at > $2
                        and coalesce(case when p.min_gap_s < 'Infinity' then p.min_gap_s end,
                                     nullif($7, 'NaN'),
                                     case when p.inbox_id is null then 0 else 20 end) > 0,
                        false)
  ), limited as (
    -- The limits as cq_inbox_limits has them (a row's override, else the caller's setting,
    -- else for a row the defaults), written out: a function call per inbox costs more than
    -- the rest of this line. Only whether a gap is on, the caps and the warm-up matter here.
    select w.key, nullif(w.key, $4) as inbox_id, w.run_ids, w.bounds,
           s.inbox_id is null as missing,
           w.key <> $4
             and coalesce(case when p.min_gap_s < 'Infinity' then p.min_gap_s end,
                          nullif($7, 'NaN'),
                          case when p.inbox_id is null then 0 else 20 end) > 0 as gap,
           case when w.key = $4 then 0
                else greatest(coalesce(p.daily_cap, $8,
                                       case when p.inbox_id is null then 0 else 300 end), 0)
           end as cap,
           case when w.key = $4 then 0
                else greatest(coalesce(p.hourly_cap, $12, 0), 0) end as hourly,
           greatest(coalesce(p.warmup_days, $10, 0), 0) as warmup_days,
           greatest(coalesce(p.warmup_start_cap, $11, 20), 1) as warmup_start_cap,
           greatest(s.last_slot_at, w.claimed_at) as served_at, s.next_slot_at,
           s.turn_message_id, s.turn_until, s.sent_day, s.sent_today, s.day_timezone,
           s.first_sent_day, s.hour_slots
      -- Each inbox's runs, least recently claimed first; the inbox was served last at its
      -- last slot or its runs' last claim (an inbox nobody paces has no slot), so inboxes
      -- take turns at the head of pass 1.
      from (select key, max(last_claimed_at) as claimed_at,
                   array_agg(run_id order by last_claimed_at nulls first, run_id) as run_ids,
                   array_agg(bound order by last_claimed_at nulls first, run_id) as bounds
              from awake group by key) w
      left join campaign_inbox_pacing p on p.inbox_id = w.key
      left join campaign_inbox_pacing_state s on s.inbox_id = w.key
  ), capped as (
    -- Today's cap (the warm-up's), counted from the state's day: a later day is checked
    -- below, where it resets the count.
    select e.*,
           cq_warmup_cap(e.cap, e.warmup_days, e.warmup_start_cap,
                         coalesce(e.sent_day - e.first_sent_day, 0)) as day_cap
      from limited e
  ), eligible as (
    select e.*,
           case when e.gap or (e.cap = 0 and e.hourly = 0) then null
                else least(
                  case when e.cap = 0 then null
                       when e.sent_day is null or cq_local_date(e.day_timezone, $1) > e.sent_day
                       then cq_warmup_cap(e.cap, e.warmup_days, e.warmup_start_cap,
                                          coalesce(cq_local_date(e.day_timezone, $1)
                                                   - e.first_sent_day, 0))
                       else e.day_cap - e.sent_today end,
                  case when e.hourly > 0
                       then e.hourly - (select count(*)::int from unnest(e.hour_slots) h(at)
                                         where h.at > $1 - interval '1 hour') end)
           end as room
      from capped e
     where (not e.gap
            or ((e.next_slot_at is null or e.next_slot_at <= $2)
                and (e.turn_message_id is null or e.turn_until < $1
                     or not coalesce((select t.status in ('queued', 'generating', 'sending')
                                             and t.locked_at >= $3
                                        from campaign_messages t
                                       where t.id = e.turn_message_id), false))))
       and (e.day_cap = 0 or e.sent_today is null or e.sent_today < e.day_cap
            or e.sent_day is null or cq_local_date(e.day_timezone, $1) > e.sent_day)
       and (e.hourly = 0 or cq_hourly_hold_until(e.hour_slots, e.hourly) is null
            or cq_hourly_hold_until(e.hour_slots, e.hourly) <= $1)
  ), candidates as (
    -- Least recently served inbox first, each one's least recently claimed run that has a
    -- due message, and that run's oldest one; no more inboxes than the batch can use (some
    -- may be skipped as locked by a concurrent claim).
    select e.*, best.message_id,
           row_number() over (order by e.served_at nulls first, e.key) as ord
      from eligible e
      cross join lateral (
        select d.id as message_id
          from unnest(e.run_ids, e.bounds) with ordinality x(run_id, bound, n)
          cross join lateral (
            select m.id from campaign_messages m
             where m.run_id = x.run_id and m.status = 'pending' and m.scheduled_at <= $1
               -- An index bound, not a filter: late rows are never walked through.
               and m.scheduled_at >= x.bound
             order by m.scheduled_at
             limit 1) d
         order by x.n
         limit 1) best
     order by e.served_at nulls first, e.key
     limit $9 * 2 + 8
  )
  select a.*, g.*
    from (select coalesce(array_agg(inbox_id order by ord), '{}'),
                 coalesce(array_agg(message_id order by ord), '{}'),
                 coalesce(array_agg(gap order by ord), '{}'),
                 coalesce(array_agg(day_cap order by ord), '{}'),
                 coalesce(array_agg(hourly order by ord), '{}'),
                 coalesce(array_agg(room order by ord), '{}'),
                 coalesce(array_agg(inbox_id order by inbox_id)
                            filter (where gap and missing), '{}')
            from candidates) a,
         (select coalesce(array_agg(c.ord::int order by c.ord, x.n), '{}'),
                 coalesce(array_agg(x.run_id order by c.ord, x.n), '{}'),
                 coalesce(array_agg(x.bound order by c.ord, x.n), '{}')
            from candidates c
            cross join unnest(c.run_ids, c.bounds) with ordinality x(run_id, bound, n)
           where not c.gap) g
  $pick$
    into v_inboxes, v_messages, v_gaps, v_caps, v_hourly, v_rooms, v_missing,
         v_gapless_ords, v_gapless_runs, v_gapless_bounds
    using v_now, v_soon, v_cutoff, v_none, p_horizon, p_run_id, p_min_gap_s, p_daily_cap,
          v_left, p_warmup_days, p_warmup_start_cap, p_hourly_cap,
          coalesce(p_lead_local_window, false);

  -- A gapped inbox without a state row yet gets one, in inbox order (two claims never
  -- deadlock).
  if cardinality(v_missing) > 0 then
    insert into campaign_inbox_pacing_state (inbox_id)
    select u.inbox_id from unnest(v_missing) u(inbox_id) order by u.inbox_id
    on conflict do nothing;
  end if;

  -- Pass 1: one message per inbox.
  for i in 1 .. coalesce(array_length(v_inboxes, 1), 0) loop
    exit when v_left < 1;
    if v_gaps[i] then
      perform 1 from campaign_inbox_pacing_state p where p.inbox_id = v_inboxes[i]
        for update skip locked;
      continue when not found;  -- another claim or a slot is being taken right now
      -- The row is ours now; a new statement sees what committed before we got it (a slot
      -- taken, a turn reserved since the candidates were read), which a recheck of the
      -- locking statement alone would not: its subquery keeps the older snapshot.
      perform 1 from campaign_inbox_pacing_state p
       where p.inbox_id = v_inboxes[i]
         and (p.next_slot_at is null or p.next_slot_at <= v_soon)
         and (p.turn_message_id is null or p.turn_until < v_now
              or not coalesce((select t.status in ('queued', 'generating', 'sending')
                                      and t.locked_at >= v_cutoff
                                 from campaign_messages t
                                where t.id = p.turn_message_id), false))
         and (v_caps[i] = 0 or p.sent_today < v_caps[i] or p.sent_day is null
              or cq_local_date(p.day_timezone, v_now) > p.sent_day)
         and not coalesce(p.brake_until > v_now, false)
         and coalesce(cq_hourly_hold_until(p.hour_slots, v_hourly[i]) <= v_now, true);
      continue when not found;
    end if;
    -- Still pending and due: it may have been claimed and failed (retry later) or released
    -- to a later time since the candidates were read.
    perform 1 from campaign_messages m
     where m.id = v_messages[i] and m.status = 'pending' and m.scheduled_at <= v_now
       for update skip locked;
    continue when not found;
    if v_gaps[i] then
      update campaign_inbox_pacing_state
         set turn_message_id = v_messages[i],
             turn_until = v_now
                          + make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1)),
             updated_at = v_now
       where inbox_id = v_inboxes[i];
    end if;
    v_picked := v_picked || v_messages[i];
    v_left := v_left - 1;
  end loop;

  -- Pass 2: inboxes without a gap fill the rest of the batch, round-robin: each inbox's n-th
  -- message before any inbox's (n+1)-th; within an inbox its runs alternate, oldest first.
  if v_left > 0 and cardinality(v_gapless_runs) > 0 then
    for v_id in
      select q.id from (
        select d.id, d.k, v_rooms[u.ord] as room, t.last_claimed_at, u.run_id,
               row_number() over (partition by u.ord
                                  order by d.k, t.last_claimed_at nulls first, u.run_id) as n
          from unnest(v_gapless_ords, v_gapless_runs, v_gapless_bounds) u(ord, run_id, bound)
          left join campaign_run_turns t on t.run_id = u.run_id
          cross join lateral (
            select m.id, row_number() over (order by m.scheduled_at) as k
              from (select m.id, m.scheduled_at from campaign_messages m
                     where m.run_id = u.run_id and m.status = 'pending'
                       and m.scheduled_at <= v_now and m.scheduled_at >= u.bound
                     order by m.scheduled_at
                     limit v_left + 1) m) d
         where d.id <> all(v_picked)
      ) q
       where q.room is null or q.n < q.room  -- pass 1 took one of the room
       order by q.n, q.last_claimed_at nulls first, q.run_id
       limit v_left * 2
    loop
      exit when v_left < 1;
      perform 1 from campaign_messages m
       where m.id = v_id and m.status = 'pending' and m.scheduled_at <= v_now
         for update skip locked;
      continue when not found;
      v_picked := v_picked || v_id;
      v_left := v_left - 1;
    end loop;
  end if;

  insert into campaign_run_turns (run_id, last_claimed_at)
  select distinct m.run_id, v_now from campaign_messages m where m.id = any(v_picked)
  order by 1
  on conflict (run_id) do update set last_claimed_at = excluded.last_claimed_at;
  return v_picked;
end;
$$;
