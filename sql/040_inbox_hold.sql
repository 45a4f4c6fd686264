-- Number health, per inbox (docs/architecture.md, "Pacing"; README, "Number health"): the
-- warm-up, the hourly cap, and the one hold rule every reader uses. An inbox may not start a
-- first part while it is over its daily cap (during its warm-up, the warm-up's cap), over its
-- hourly cap, or braked (brake_until in the future: the failure brake writes it). Readers:
-- take_inbox_slot (016), the claim's pick (018, written out there for its cost), the late rule
-- cq_inbox_holds_backlog (below, and its copy in 018), campaign_queue_next_start (023) and the
-- status (020).

-- Operators' overrides (null: the service's setting; what is refused when written: below).
alter table campaign_inbox_pacing
  add column if not exists warmup_days int,       -- INBOX_WARMUP_DAYS; 0: no warm-up
  add column if not exists warmup_start_cap int,  -- INBOX_WARMUP_START_CAP: day 0's cap
  add column if not exists hourly_cap int;        -- INBOX_HOURLY_CAP; 0: no hourly cap

-- The failure brake's state (its recording side adds the same two columns).
alter table campaign_inbox_pacing_state add column if not exists brake_until timestamptz, add column if not exists brake_reason text;

alter table campaign_inbox_pacing_state
  -- Day 0 of the warm-up: the inbox's local day (day_timezone) of its first slot taken by
  -- this service; an operator may set it back for a number already in use (README).
  add column if not exists first_sent_day date,
  -- The slot times of the inbox's last hourly_cap first parts, oldest first (bounded by the
  -- cap: empty while no hourly cap is in force).
  add column if not exists hour_slots timestamptz[] not null default '{}',
  -- The end of the last cap hold a slot started: the next local midnight when it reached the
  -- daily cap, an hour after the hour's first slot when it filled the hourly cap (016's
  -- take_inbox_slot). Until then and a horizon after, its backlog is not late.
  add column if not exists capped_until timestamptz;

do $$
declare
  v_check record;
begin
  for v_check in
    select * from (values
      ('warmup_days: null or a whole number of days from 0 to 3650',
       'warmup_days is null or (warmup_days >= 0 and warmup_days <= 3650)'),
      ('warmup_start_cap: null or a whole number >= 1',
       'warmup_start_cap is null or warmup_start_cap >= 1'),
      ('warmup_start_cap: not above daily_cap',
       'warmup_start_cap is null or daily_cap is null or daily_cap = 0 '
       || 'or warmup_start_cap <= daily_cap'),
      ('hourly_cap: null or a whole number from 0 to 3600',
       'hourly_cap is null or (hourly_cap >= 0 and hourly_cap <= 3600)')
    ) c(name, rule)
  loop
    perform cq_check_overrides(v_check.name, v_check.rule);
  end loop;
end
$$;


-- The daily cap on warm-up day p_day (0: day 0): linear from the start cap to the daily cap
-- over warmup_days days, rounded down; the daily cap itself from day warmup_days on, and when
-- there is no warm-up or no daily cap (0). Plain SQL, so the planner inlines it (the claim).
create or replace function cq_warmup_cap(
  p_daily_cap int, p_warmup_days int, p_start_cap int, p_day int
) returns int
language sql immutable
as $$
  select case when p_daily_cap > 0 and p_warmup_days > 0
                   and greatest(coalesce(p_day, 0), 0) < p_warmup_days
              then (least(greatest(p_start_cap, 1), p_daily_cap)
                    + (p_daily_cap - least(greatest(p_start_cap, 1), p_daily_cap))::bigint
                      * greatest(coalesce(p_day, 0), 0) / p_warmup_days)::int
              else p_daily_cap end;
$$;


-- Until when the hourly cap holds an inbox whose last first parts went at p_slots (oldest
-- first): an hour after the cap-th most recent one; null when fewer went (or no cap). The
-- caller compares with now. Plain SQL, inlined.
create or replace function cq_hourly_hold_until(p_slots timestamptz[], p_cap int)
returns timestamptz
language sql immutable
as $$
  select case when p_cap > 0 and cardinality(p_slots) >= p_cap
              then p_slots[cardinality(p_slots) - p_cap + 1] + interval '1 hour' end;
$$;


-- An inbox's hold at p_now, and what the status shows of it. Limits: the row's overrides,
-- else the caller's settings (p_daily_cap is already resolved, cq_inbox_limits), else warm-up
-- and hourly cap off. reason: 'brake', 'daily_cap' or 'hourly_cap', the hold that ends last
-- (null: not held); until: when it ends. warmup_day: today's day of the warm-up (null: no
-- warm-up in force, or past it); day_cap: today's cap (0: none); sent_last_hour: first parts
-- in the last 60 minutes as the state keeps them (null: no hourly cap).
create or replace function cq_inbox_hold(
  p_state campaign_inbox_pacing_state,
  p_row campaign_inbox_pacing,
  p_daily_cap int,
  p_warmup_days int,
  p_warmup_start_cap int,
  p_hourly_cap int,
  p_now timestamptz,
  out reason text,
  out until timestamptz,
  out warmup_day int,
  out day_cap int,
  out hourly_cap int,
  out sent_last_hour int
)
language plpgsql stable set search_path = public
as $$
declare
  v_cap int := greatest(coalesce(p_daily_cap, 0), 0);
  v_days int := greatest(coalesce(p_row.warmup_days, p_warmup_days, 0), 0);
  v_start int := greatest(coalesce(p_row.warmup_start_cap, p_warmup_start_cap, 20), 1);
  v_today date;
  v_day int := 0;
  v_end timestamptz;
begin
  hourly_cap := greatest(coalesce(p_row.hourly_cap, p_hourly_cap, 0), 0);
  if hourly_cap > 0 then
    sent_last_hour := (select count(*) from unnest(p_state.hour_slots) t(at)
                        where t.at > p_now - interval '1 hour');
  end if;
  -- The local day only when it matters (a warm-up, or a count at the cap): it costs a zone
  -- check, and next_start and the status call this once per run or inbox.
  if v_cap > 0 and p_state.inbox_id is not null
     and (v_days > 0 or p_state.sent_today >= v_cap) then
    v_today := cq_local_date(p_state.day_timezone, p_now);
    v_day := greatest(v_today - coalesce(p_state.first_sent_day, v_today), 0);
  end if;
  day_cap := cq_warmup_cap(v_cap, v_days, v_start, v_day);
  if v_days > 0 and v_cap > 0 and v_day < v_days then
    warmup_day := v_day;
  end if;
  if p_state.inbox_id is null then
    return;
  end if;
  if p_state.brake_until > p_now then
    reason := 'brake';
    until := p_state.brake_until;
  end if;
  if day_cap > 0 and p_state.sent_today >= day_cap and p_state.sent_day >= v_today then
    v_end := (p_state.sent_day + 1)::timestamp  -- the day's end, in its zone
             at time zone cq_valid_timezone(p_state.day_timezone);
    if until is null or v_end > until then
      reason := 'daily_cap';
      until := v_end;
    end if;
  end if;
  v_end := cq_hourly_hold_until(p_state.hour_slots, hourly_cap);
  if v_end > p_now and (until is null or v_end > until) then
    reason := 'hourly_cap';
    until := v_end;
  end if;
end;
$$;


-- A paced inbox holds its backlog back on purpose while a hold or its gap keeps it from
-- sending: those messages are not late (docs/architecture.md, "Pacing"). Not late while:
-- - its gap held it: its next slot is after the horizon, or its last slot since (a gap longer
--   than the horizon included; the caller's horizon already leaves out closed-window time);
-- - its daily cap or its hourly cap held it: that hold ended after the horizon (capped_until;
--   a row capped before that column was kept: within two days). The hourly cap's hold can
--   outlast a horizon shorter than the hour after the last slot (SKIP_AFTER_MINUTES < 60);
-- - the brake held it: brake_until is after the horizon (lifted: set to now, not null).
-- Lateness is for an inbox that could send and was not served. The claim's pick (018) writes
-- the same rule out.
create or replace function cq_inbox_holds_backlog(p_inbox_id uuid, p_horizon timestamptz)
returns boolean
language sql stable security definer set search_path = public
as $$
  select coalesce((
    select coalesce(p.brake_until >= p_horizon, false)
           or (p.paced and (greatest(p.next_slot_at, p.last_slot_at) >= p_horizon
                            or coalesce(p.capped_until >= p_horizon,
                                        p.capped_day >= (now() - interval '2 days')::date)))
      from campaign_inbox_pacing_state p where p.inbox_id = p_inbox_id), false);
$$;


-- An override written below what the inbox sent today (a daily cap cut, a warm-up turned on
-- for a number that sent more than its day's warm-up cap, an hourly cap cut) holds the inbox
-- with no slot asked for (the claim skips it), so no slot stamps the hold's end, and its
-- backlog would be late a horizon after its last slot. The write stamps it, as a slot does.
-- Only the row's own values are known here: a cap the row leaves to a setting (INBOX_*) is
-- not judged. Lock order: the override row, then the inbox's state row (nothing holding a
-- state row writes an override).
create or replace function cq_stamp_override_hold()
returns trigger
language plpgsql security definer set search_path = public
as $$
declare
  v_state campaign_inbox_pacing_state;
  v_hold record;
begin
  select * into v_state from campaign_inbox_pacing_state
   where inbox_id = new.inbox_id for update;
  if found then
    v_hold := cq_inbox_hold(v_state, new, new.daily_cap, null, null, null, now());
    if v_hold.reason in ('daily_cap', 'hourly_cap') then
      update campaign_inbox_pacing_state
         set capped_until = greatest(capped_until, v_hold.until),
             capped_day = case when v_hold.reason = 'daily_cap' then sent_day else capped_day end
       where inbox_id = new.inbox_id;
    end if;
  end if;
  return null;
end;
$$;

create or replace trigger campaign_inbox_pacing_hold_stamped
  after insert or update of daily_cap, warmup_days, warmup_start_cap, hourly_cap
  on campaign_inbox_pacing
  for each row execute function cq_stamp_override_hold();
