-- Which due messages a claim takes (DESIGN section 8): pacing and fair share.
--
-- Pass 1, one message per eligible inbox, least recently served inbox first; within an inbox,
-- the run served least recently (campaign_run_turns), so a 10-lead run is not held behind a
-- 10,000-lead one on the same number. An inbox is eligible when it is not paced, or when its
-- next slot opens within p_lookahead_s, nobody holds its turn, and it is under its daily cap.
-- A paced inbox's turn is reserved for the message picked (turn_message_id): two instances
-- never generate for one slot. Pass 2 fills what is left of the batch from inboxes without a
-- gap, round-robin by each run's oldest messages.
--
-- Cost: candidates come from the running runs (idx_campaign_runs_running) and each run's
-- oldest due message through idx_campaign_messages_atomic_selection; paused runs' backlog and
-- inboxes inside their gap are never read. No lock is waited for: rows are locked with
-- skip locked, so two claims never block or deadlock each other.

create or replace function cq_pick_due_messages(
  p_left int,
  p_horizon timestamptz,
  p_run_id uuid,
  p_min_gap_s real,
  p_max_gap_s real,
  p_daily_cap int,
  p_lookahead_s real,
  p_lock_timeout_s int
) returns uuid[]
language plpgsql security definer set search_path = public
as $$
declare
  v_now constant timestamptz := now();
  v_left int := p_left;
  v_picked uuid[] := '{}';
  -- One candidate per eligible inbox, least recently served first (parallel arrays).
  v_inboxes uuid[];
  v_messages uuid[];
  v_gaps boolean[];
  v_holds boolean[];
  v_id uuid;
  i int;
begin
  with runs as (
    select r.id as run_id, c.inbox_id
      from campaign_runs r join campaign_configs c on c.id = r.config_id
     where r.status = 'running' and (p_run_id is null or r.id = p_run_id)
  ), inboxes as (
    select i.inbox_id, p.last_slot_at, l.min_gap_s, l.daily_cap,
           -- A config without an inbox cannot be paced: its rows are claimed, and fail.
           i.inbox_id is not null and (l.min_gap_s > 0 or l.daily_cap > 0) as is_paced,
           coalesce(p.paced and (p.last_slot_at >= p_horizon
                                 or p.capped_day >= (v_now - interval '2 days')::date),
                    false) as holds_backlog,
           p.next_slot_at, p.turn_message_id, p.turn_until, p.sent_day, p.sent_today, p.timezone
      from (select distinct inbox_id from runs) i
      left join campaign_inbox_pacing p on p.inbox_id = i.inbox_id
      cross join lateral cq_inbox_limits(p, p_min_gap_s, p_max_gap_s, p_daily_cap) l
  ), eligible as (
    select e.* from inboxes e
     where not e.is_paced
        or ((e.next_slot_at is null
             or e.next_slot_at <= v_now + make_interval(secs => greatest(p_lookahead_s, 0)))
            and (e.turn_message_id is null or e.turn_until < v_now
                 or not exists (select 1 from campaign_messages t
                                 where t.id = e.turn_message_id
                                   and t.status in ('queued', 'generating', 'sending')))
            and case when e.daily_cap = 0 or e.sent_today < e.daily_cap then true
                     else e.sent_day is distinct from cq_local_date(e.timezone, v_now) end)
  ), candidates as (
    select e.inbox_id, best.message_id, e.is_paced and e.min_gap_s > 0 as gap, e.holds_backlog,
           e.last_slot_at
      from eligible e
      cross join lateral (
        select d.id as message_id
          from runs x
          left join campaign_run_turns t on t.run_id = x.run_id
          cross join lateral (
            select m.id from campaign_messages m
             where m.run_id = x.run_id and m.status = 'pending' and m.scheduled_at <= v_now
               and (p_horizon is null or e.holds_backlog or m.scheduled_at >= p_horizon)
             order by m.scheduled_at
             limit 1) d
         where x.inbox_id is not distinct from e.inbox_id
         order by t.last_claimed_at nulls first, x.run_id
         limit 1) best
  )
  select coalesce(array_agg(inbox_id order by last_slot_at nulls first, inbox_id), '{}'),
         coalesce(array_agg(message_id order by last_slot_at nulls first, inbox_id), '{}'),
         coalesce(array_agg(gap order by last_slot_at nulls first, inbox_id), '{}'),
         coalesce(array_agg(holds_backlog order by last_slot_at nulls first, inbox_id), '{}')
    into v_inboxes, v_messages, v_gaps, v_holds
    from candidates;

  -- A paced inbox without a row yet gets one, in inbox order (two claims never deadlock).
  if p_min_gap_s is not null or p_max_gap_s is not null or p_daily_cap is not null then
    insert into campaign_inbox_pacing (inbox_id)
    select u.inbox_id from unnest(v_inboxes, v_gaps) u(inbox_id, gap)
     where u.gap order by u.inbox_id
    on conflict do nothing;
  end if;

  -- Pass 1: one message per inbox.
  for i in 1 .. coalesce(array_length(v_inboxes, 1), 0) loop
    exit when v_left < 1;
    if v_gaps[i] then
      perform 1 from campaign_inbox_pacing p where p.inbox_id = v_inboxes[i]
       and (p.turn_message_id is null or p.turn_until < v_now
            or not exists (select 1 from campaign_messages t
                            where t.id = p.turn_message_id
                              and t.status in ('queued', 'generating', 'sending')))
       for update skip locked;
      continue when not found;  -- another claim is taking this inbox's turn right now
    end if;
    perform 1 from campaign_messages m
     where m.id = v_messages[i] and m.status = 'pending'
       for update skip locked;
    continue when not found;
    if v_gaps[i] then
      update campaign_inbox_pacing
         set turn_message_id = v_messages[i],
             turn_until = v_now + make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1)),
             updated_at = v_now
       where inbox_id = v_inboxes[i];
    end if;
    v_picked := v_picked || v_messages[i];
    v_left := v_left - 1;
  end loop;

  -- Pass 2: inboxes without a gap fill the rest of the batch, each run's oldest first.
  if v_left > 0 then
    for v_id in
      select d.id
        from unnest(v_inboxes, v_gaps, v_holds) u(inbox_id, gap, holds)
        join campaign_configs cf on cf.inbox_id is not distinct from u.inbox_id
        join campaign_runs r on r.config_id = cf.id and r.status = 'running'
                            and (p_run_id is null or r.id = p_run_id)
        left join campaign_run_turns t on t.run_id = r.id
        cross join lateral (
          select m.id, row_number() over (order by m.scheduled_at) as k
            from (select m.id, m.scheduled_at from campaign_messages m
                   where m.run_id = r.id and m.status = 'pending' and m.scheduled_at <= v_now
                     and (p_horizon is null or u.holds or m.scheduled_at >= p_horizon)
                   order by m.scheduled_at
                   limit v_left + 1) m) d
       where not u.gap and d.id <> all(v_picked)
       order by d.k, t.last_claimed_at nulls first, r.id
       limit v_left * 2
    loop
      exit when v_left < 1;
      perform 1 from campaign_messages m where m.id = v_id and m.status = 'pending'
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


-- The calendar date at an instant in a zone; a zone Postgres does not know counts as UTC.
create or replace function cq_local_date(p_timezone text, p_at timestamptz)
returns date
language plpgsql stable security definer set search_path = public
as $$
begin
  return (p_at at time zone coalesce(nullif(p_timezone, ''), 'UTC'))::date;
exception when others then
  return (p_at at time zone 'UTC')::date;
end;
$$;
