-- Pacing per WhatsApp inbox, across every instance (docs/architecture.md, "Pacing").
-- A number that sends a burst gets banned: the first parts of two different messages of one
-- inbox go out at least min_gap_s apart (each gap drawn from [min_gap_s, max_gap_s]), and at
-- most daily_cap messages a calendar day of the inbox (its row's timezone, else the service's
-- INBOX_TIMEZONE, whatever the zones of the campaigns sharing it). The slot is taken at the
-- moment of sending (take_inbox_slot), not at the claim: generation time varies. The claim
-- only reserves the inbox's next turn for one message (turn_message_id), so two instances
-- never generate for the same slot, and looks ahead so a call can wait for a slot that opens
-- within its budget.

-- Operators' overrides, one row an inbox; a null column means the service's setting
-- (INBOX_MIN_GAP_S, ...); 0 means off (a min gap of 0 is no gap, whatever the max). Only
-- operators write it: deleting or editing a row never touches the inbox's pacing state below.
create table if not exists campaign_inbox_pacing (
  inbox_id uuid primary key,
  min_gap_s real,  -- what is refused when written: 025_pacing_overrides.sql
  max_gap_s real,
  daily_cap int,
  timezone text,  -- the zone of the cap's calendar day (else INBOX_TIMEZONE)
  updated_at timestamptz not null default now()
);
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_inbox_pacing'::regclass) then
    alter table campaign_inbox_pacing enable row level security;
  end if;
end $$;
revoke all on campaign_inbox_pacing from public, anon, authenticated;

-- Each inbox's pacing state, kept by the functions below (and by the claim's pick), apart from
-- the overrides: no foreign key to them, so an override deleted or edited keeps the state.
create table if not exists campaign_inbox_pacing_state (
  inbox_id uuid primary key,
  next_slot_at timestamptz,          -- no other first part before this
  last_slot_at timestamptz,
  last_slot_message_id uuid,         -- its message: the next slot waits for its delivery
  sent_day date,                     -- the calendar day sent_today counts, in day_timezone
  sent_today int not null default 0,
  day_timezone text,                 -- the zone of sent_day
  capped_day date,                   -- the last day the cap was reached: its backlog is not late
  paced boolean not null default false,  -- a gap or a cap was in force at the last slot
  turn_message_id uuid,              -- the message claimed for the next slot
  turn_until timestamptz,            -- that reservation ends here even if its worker died
  updated_at timestamptz not null default now()
);
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_inbox_pacing_state'::regclass) then
    alter table campaign_inbox_pacing_state enable row level security;
  end if;
end $$;
revoke all on campaign_inbox_pacing_state from public, anon, authenticated;

-- Upgrade, once: the state lived in further columns of campaign_inbox_pacing (its timezone
-- column too, written by take_inbox_slot: the zone of sent_day). Copied here, then dropped;
-- timezone stays there, emptied, as the operator's override. Under a lock, so no slot taken
-- in between is lost.
do $$
begin
  if exists (select 1 from information_schema.columns
              where table_schema = 'public' and table_name = 'campaign_inbox_pacing'
                and column_name = 'next_slot_at') then
    lock table campaign_inbox_pacing in access exclusive mode;
    insert into campaign_inbox_pacing_state
      (inbox_id, next_slot_at, last_slot_at, last_slot_message_id, sent_day, sent_today,
       day_timezone, capped_day, paced, turn_message_id, turn_until, updated_at)
    select inbox_id, next_slot_at, last_slot_at, last_slot_message_id, sent_day, sent_today,
           timezone, capped_day, paced, turn_message_id, turn_until, updated_at
      from campaign_inbox_pacing
    on conflict (inbox_id) do nothing;
    update campaign_inbox_pacing set timezone = null where timezone is not null;
    alter table campaign_inbox_pacing
      drop column next_slot_at, drop column last_slot_at, drop column last_slot_message_id,
      drop column sent_day, drop column sent_today, drop column capped_day,
      drop column paced, drop column turn_message_id, drop column turn_until;
  end if;
end
$$;

-- Fair share between the runs of one inbox: the claim serves the run served least recently.
create table if not exists campaign_run_turns (
  run_id uuid primary key,
  last_claimed_at timestamptz not null default now()
);
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_run_turns'::regclass) then
    alter table campaign_run_turns enable row level security;
  end if;
end $$;
revoke all on campaign_run_turns from public, anon, authenticated;


-- The limits in force for one inbox (internal: take_inbox_slot and the claim's answer call it;
-- the claim's pick in 018_fair_claim.sql writes the same rule out): its row's overrides, else
-- the caller's settings, else (an older caller that passes none) the defaults, but only for an
-- inbox that has a row. A max below the min means the min; an override that is no finite
-- number (NaN, Infinity: a row written before 025_pacing_overrides.sql refused them) and a
-- NaN setting count as unset; gaps are bounded to a day, so no value can overflow an interval.
create or replace function cq_inbox_limits(
  p_row campaign_inbox_pacing,
  p_min_gap_s real,
  p_max_gap_s real,
  p_daily_cap int,
  out min_gap_s real,
  out max_gap_s real,
  out daily_cap int
)
language sql immutable
as $$
  select l.min_gap_s, greatest(l.max_gap_s, l.min_gap_s), l.daily_cap
  from (
    select least(greatest(coalesce(case when p_row.min_gap_s < 'Infinity'
                                        then p_row.min_gap_s end,
                                   nullif(p_min_gap_s, 'NaN'),
                                   case when p_row.inbox_id is null then 0 else 20 end),
                          0), 86400)::real as min_gap_s,
           least(greatest(coalesce(case when p_row.max_gap_s < 'Infinity'
                                        then p_row.max_gap_s end,
                                   nullif(p_max_gap_s, 'NaN'),
                                   case when p_row.inbox_id is null then 0 else 60 end),
                          0), 86400)::real as max_gap_s,
           greatest(coalesce(p_row.daily_cap, p_daily_cap,
                             case when p_row.inbox_id is null then 0 else 300 end), 0) as daily_cap
  ) l;
$$;


-- Called just before a message's first part is sent. Lock order: the message, then the
-- inbox's state row (plain locks: concurrent callers for one inbox queue up here, and the
-- first to get the row takes the slot). The claim takes state rows and messages with skip
-- locked only, so it never waits on a caller of this function, which never waits on a claim
-- after its own row insert: no cycle. The override row is only read, never locked.
-- Answers {ok, reason, wait_s}: ok; or refused with 'gap' (the slot opens in wait_s),
-- 'in_flight' (the inbox's last first part is still being sent: ask again in wait_s),
-- 'daily_cap' (wait_s until the next day; during a warm-up, the warm-up's cap), 'hourly_cap'
-- (wait_s until a slot leaves the rolling hour), 'brake' (wait_s until brake_until): the
-- inbox's hold (cq_inbox_hold, 040_inbox_hold.sql), 'opted out' / 'replied' (the contact may
-- not be written to: 045_suppressions.sql; the caller skips the message), 'lock_lost'
-- (another worker's lease now, or this one expired: not renewed for p_lock_timeout_s, so
-- another worker may claim the message again at any moment). Every other answer renews the
-- lease, as renew_campaign_leases does:
-- the caller counts it as a renewal, so its truth is here.
create or replace function take_inbox_slot(
  p_message_id uuid,
  p_lock_token uuid,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  -- The caller's lease (LOCK_TIMEOUT_S). Older callers: 60 s for the last slot's sender, 600
  -- (the claim's default) for their own.
  p_lock_timeout_s real default null,
  -- INBOX_TIMEZONE: the zone of the cap's day for an inbox whose row names none (older
  -- callers, and a zone Postgres does not know: America/Sao_Paulo)
  p_inbox_timezone text default null,
  p_reply_stop_days int default null,  -- REPLY_STOP_DAYS (null: 30), 045_suppressions.sql
  -- INBOX_WARMUP_DAYS, INBOX_WARMUP_START_CAP, INBOX_HOURLY_CAP (older callers: off)
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_run uuid;
  v_parts int;
  v_inbox uuid;
  v_tz text;
  v_row campaign_inbox_pacing;  -- the operator's overrides (all null: none)
  v_state campaign_inbox_pacing_state;
  v_limits record;
  v_hold record;
  v_hourly_cap int;
  v_hour_slots timestamptz[];  -- the last hourly_cap slots, this one included
  v_now timestamptz;
  v_gap double precision := 0;
  v_after_last timestamptz;  -- the soonest the next first part may go, from the last one's:
  v_delivered_at timestamptz;  -- its delivery, recorded
  v_in_flight boolean;         -- or its send still going on
  v_ended_at timestamptz;      -- or when it ended unrecorded
  v_lease constant interval := make_interval(
    secs => least(greatest(coalesce(nullif(p_lock_timeout_s, 'NaN'), 60), 1), 86400));
  -- The caller's own lease (older callers: the claim's default, LOCK_TIMEOUT_S's).
  v_own_lease constant interval := make_interval(
    secs => least(greatest(coalesce(nullif(p_lock_timeout_s, 'NaN'), 600), 1), 86400));
  v_locked_at timestamptz;
begin
  select m.run_id, m.parts_sent, m.locked_at into v_run, v_parts, v_locked_at
    from campaign_messages m
   where m.id = p_message_id and m.lock_token = p_lock_token
     and m.status in ('queued', 'generating', 'sending')
   for update;
  if not found or v_locked_at < clock_timestamp() - v_own_lease then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'wait_s', null);
  end if;
  update campaign_messages set locked_at = now(), updated_at = now() where id = p_message_id;
  if v_parts > 0 then  -- only first parts are paced; a resumed message goes on
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  if cq_contact_stop_reason(p_message_id, p_reply_stop_days) is not null then return jsonb_build_object('ok', false, 'reason', cq_contact_stop_reason(p_message_id, p_reply_stop_days), 'wait_s', null); end if;  -- opted out or replied meanwhile (045)
  select c.inbox_id into v_inbox
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = v_run;
  if v_inbox is null then
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  if cq_claim_text_at_slot(p_message_id, v_inbox) then return jsonb_build_object('ok', false, 'reason', 'repeated', 'wait_s', null); end if;  -- 047_repetition_guard.sql

  select * into v_row from campaign_inbox_pacing where inbox_id = v_inbox;
  v_limits := cq_inbox_limits(v_row, p_min_gap_s, p_max_gap_s, p_daily_cap);
  v_hourly_cap := greatest(coalesce(v_row.hourly_cap, p_hourly_cap, 0), 0);
  select * into v_state from campaign_inbox_pacing_state where inbox_id = v_inbox for update;
  if not found then
    if v_limits.min_gap_s = 0 and v_limits.daily_cap = 0 and v_hourly_cap = 0 then
      -- Nobody paces this inbox (an older caller, or pacing off): no state is kept.
      return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
    end if;
    insert into campaign_inbox_pacing_state (inbox_id) values (v_inbox) on conflict do nothing;
    select * into v_state from campaign_inbox_pacing_state where inbox_id = v_inbox for update;
  end if;
  -- Every lock is held: the slot is stamped with the moment it is taken. now() is when the
  -- transaction began, and a wait on a lock would shorten the gap by as much.
  v_now := clock_timestamp();

  -- The cap's calendar day is the inbox's, whatever the campaigns' zones: the state's day
  -- lasts until it ends in the zone that counts it (day_timezone: so the claim and the status
  -- read it without the setting); the next one opens in the inbox's zone (a zone changed
  -- mid-day counts from the next day).
  if v_state.sent_day is null
     or cq_local_date(v_state.day_timezone, v_now) > v_state.sent_day then
    v_tz := cq_inbox_timezone(v_row.timezone, p_inbox_timezone);
    v_state.sent_day := (v_now at time zone v_tz)::date;
    v_state.day_timezone := v_tz;
    v_state.sent_today := 0;
  end if;

  -- Held: over today's cap (the warm-up's), over the hourly cap, or braked.
  v_hold := cq_inbox_hold(v_state, v_row, v_limits.daily_cap, p_warmup_days,
                          p_warmup_start_cap, p_hourly_cap, v_now);
  if v_hold.until is not null then
    update campaign_inbox_pacing_state
       set sent_day = v_state.sent_day, sent_today = v_state.sent_today,
           day_timezone = v_state.day_timezone,
           capped_day = case when v_hold.reason = 'daily_cap' then v_state.sent_day
                             else capped_day end,
           capped_until = case when v_hold.reason = 'daily_cap' then v_hold.until
                               else capped_until end,
           turn_message_id = case when turn_message_id = p_message_id then null
                                  else turn_message_id end,
           turn_until = case when turn_message_id = p_message_id then null else turn_until end,
           updated_at = v_now
     where inbox_id = v_inbox;
    return jsonb_build_object('ok', false, 'reason', v_hold.reason, 'wait_s',
                              greatest(extract(epoch from v_hold.until - v_now), 0));
  end if;

  -- A min gap of 0 is no gap (whatever the max): the claim does not reserve turns for such an
  -- inbox, so neither does a slot wait here.
  if v_limits.min_gap_s > 0 then
    -- The gap is kept between deliveries, not only between slots: a send that retried a 5xx
    -- or a timeout delivers its first part after its slot. So the next first part goes
    -- min_gap after the last slot's first part at the soonest (or at next_slot_at if later):
    -- - delivered: after its delivery (first_part_at);
    -- - still being sent (its lease alive: the worker renews it): it waits, and asks again;
    -- - ended without a recorded delivery (a timeout may have delivered it), or its lease
    --   expired (which stopped that worker's sends): after it ended, or after the lease.
    select m.first_part_at,
           m.first_part_at is null and m.status = 'sending' and m.parts_sent = 0
             and m.lock_token is not null and m.locked_at > v_now - v_lease,
           case when m.status = 'sending' then m.locked_at + v_lease else m.updated_at end
      into v_delivered_at, v_in_flight, v_ended_at
      from campaign_messages m
     where m.id = v_state.last_slot_message_id and m.id <> p_message_id;
    if v_in_flight then
      v_after_last := v_now + interval '0.5 seconds';
    else
      v_after_last := coalesce(v_delivered_at, v_ended_at)
                      + make_interval(secs => v_limits.min_gap_s);
    end if;
    if v_after_last > greatest(v_state.next_slot_at, v_now) then
      v_state.next_slot_at := v_after_last;
    end if;
    if v_state.next_slot_at > v_now then  -- 'in_flight': the last first part is being sent
      return jsonb_build_object(
        'ok', false,
        'reason', case when v_in_flight and v_state.next_slot_at = v_after_last
                       then 'in_flight' else 'gap' end,
        'wait_s', extract(epoch from v_state.next_slot_at - v_now));
    end if;
    -- Drawn uniformly from [min, max], plus 50 ms for the jitter of the send's own latency:
    -- the guarantee is on when the first parts reach the send endpoint.
    v_gap := v_limits.min_gap_s + random() * (v_limits.max_gap_s - v_limits.min_gap_s) + 0.05;
  end if;
  v_hour_slots := case when v_hourly_cap > 0
                       then v_state.hour_slots[greatest(cardinality(v_state.hour_slots)
                                                        - v_hourly_cap + 2, 1)
                                               : cardinality(v_state.hour_slots)] || v_now
                       else '{}' end;
  update campaign_inbox_pacing_state
     set next_slot_at = v_now + make_interval(secs => v_gap),
         paced = v_limits.min_gap_s > 0 or v_limits.daily_cap > 0 or v_hourly_cap > 0,
         last_slot_at = v_now,
         last_slot_message_id = p_message_id,
         sent_day = v_state.sent_day,
         sent_today = v_state.sent_today + 1,
         capped_day = case when v_hold.day_cap > 0 and v_state.sent_today + 1 >= v_hold.day_cap
                           then v_state.sent_day else capped_day end,
         -- the end of the hold this slot starts, if any: the day's end at the daily cap
         -- (the warm-up's), the rolling hour's at the hourly cap (the late rule reads it)
         capped_until = greatest(case when v_hold.day_cap > 0
                                       and v_state.sent_today + 1 >= v_hold.day_cap
                                      then (v_state.sent_day + 1)::timestamp
                                           at time zone cq_valid_timezone(v_state.day_timezone)
                                      else capped_until end,
                                 case when cq_hourly_hold_until(v_hour_slots, v_hourly_cap)
                                           > v_now
                                      then cq_hourly_hold_until(v_hour_slots, v_hourly_cap)
                                 end),
         first_sent_day = coalesce(first_sent_day, v_state.sent_day),
         hour_slots = v_hour_slots,
         day_timezone = v_state.day_timezone,
         turn_message_id = case when turn_message_id = p_message_id then null
                                else turn_message_id end,
         turn_until = case when turn_message_id = p_message_id then null else turn_until end,
         updated_at = v_now
   where inbox_id = v_inbox;
  return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
end;
$$;


-- The late rule, cq_inbox_holds_backlog, is in 040_inbox_hold.sql (it reads that file's columns).


-- A time zone Postgres knows, else the product's default (null, blank or unknown zones).
create or replace function cq_valid_timezone(p_timezone text)
returns text
language plpgsql stable set search_path = public
as $$
begin
  if p_timezone is null or btrim(p_timezone) = '' then
    return 'America/Sao_Paulo';
  end if;
  perform now() at time zone p_timezone;
  return p_timezone;
exception when others then
  return 'America/Sao_Paulo';
end;
$$;


-- The calendar date at an instant in a zone; null, blank or a zone Postgres does not know
-- counts as the product's default zone (campaign_configs.timezone's default).
create or replace function cq_local_date(p_timezone text, p_at timestamptz)
returns date
language sql stable security definer set search_path = public
as $$
  select (p_at at time zone cq_valid_timezone(p_timezone))::date;
$$;
