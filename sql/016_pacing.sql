-- Pacing per WhatsApp inbox, across every instance (DESIGN section 8).
-- A number that sends a burst gets banned: the first parts of two different messages of one
-- inbox go out at least min_gap_s apart (each gap drawn from [min_gap_s, max_gap_s]), and at
-- most daily_cap messages a calendar day (the campaign's timezone). The slot is taken at the
-- moment of sending (take_inbox_slot), not at the claim: generation time varies. The claim
-- only reserves the inbox's next turn for one message (turn_message_id), so two instances
-- never generate for the same slot, and looks ahead so a call can wait for a slot that opens
-- within its budget.

create table if not exists campaign_inbox_pacing (
  inbox_id uuid primary key,
  -- Operator overrides; null means the service's setting (INBOX_MIN_GAP_S, ...); 0 means off.
  min_gap_s real check (min_gap_s is null or min_gap_s >= 0),
  max_gap_s real check (max_gap_s is null or max_gap_s >= 0),
  daily_cap int check (daily_cap is null or daily_cap >= 0),
  -- State, kept by the functions below.
  next_slot_at timestamptz,          -- no other first part before this
  last_slot_at timestamptz,
  sent_day date,                     -- the calendar day sent_today counts (campaign timezone)
  sent_today int not null default 0,
  capped_day date,                   -- the last day the cap was reached: its backlog is not late
  paced boolean not null default false,  -- a gap or a cap was in force at the last slot
  turn_message_id uuid,              -- the message claimed for the next slot
  turn_until timestamptz,            -- that reservation ends here even if its worker died
  timezone text,                     -- the campaign's, checked by Postgres: the cap's calendar
  updated_at timestamptz not null default now()
);
alter table campaign_inbox_pacing enable row level security;
revoke all on campaign_inbox_pacing from public, anon, authenticated;

-- Fair share between the runs of one inbox: the claim serves the run served least recently.
create table if not exists campaign_run_turns (
  run_id uuid primary key,
  last_claimed_at timestamptz not null default now()
);
alter table campaign_run_turns enable row level security;
revoke all on campaign_run_turns from public, anon, authenticated;


-- The limits in force for one inbox (internal: the claim and take_inbox_slot call it): its row's overrides, else the caller's settings, else
-- (an older caller that passes none) the defaults, but only for an inbox that has a row.
create or replace function cq_inbox_limits(
  p_row campaign_inbox_pacing,
  p_min_gap_s real,
  p_max_gap_s real,
  p_daily_cap int,
  out min_gap_s real,
  out max_gap_s real,
  out daily_cap int
)
language sql immutable set search_path = public
as $$
  select greatest(coalesce(p_row.min_gap_s, p_min_gap_s,
                           case when p_row.inbox_id is null then 0 else 20 end), 0),
         greatest(coalesce(p_row.max_gap_s, p_max_gap_s,
                           case when p_row.inbox_id is null then 0 else 60 end),
                  coalesce(p_row.min_gap_s, p_min_gap_s,
                           case when p_row.inbox_id is null then 0 else 20 end), 0),
         greatest(coalesce(p_row.daily_cap, p_daily_cap,
                           case when p_row.inbox_id is null then 0 else 300 end), 0);
$$;


create or replace function take_inbox_slot(
  p_message_id uuid,
  p_lock_token uuid,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
  v_inbox uuid;
  v_tz text;
  v_today date;
  v_row campaign_inbox_pacing;
  v_limits record;
  v_gap double precision;
begin
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'wait_s', null);
  end if;
  if v_msg.parts_sent > 0 then  -- only first parts are paced; a resumed message goes on
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  select c.inbox_id, c.timezone into v_inbox, v_tz
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = v_msg.run_id;
  if v_inbox is null then
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  v_tz := coalesce(nullif(v_tz, ''), 'America/Sao_Paulo');
  begin
    v_today := (now() at time zone v_tz)::date;
  exception when others then  -- a zone Postgres does not know: the product's default
    v_tz := 'America/Sao_Paulo';
    v_today := (now() at time zone v_tz)::date;
  end;

  if p_min_gap_s is not null or p_max_gap_s is not null or p_daily_cap is not null then
    insert into campaign_inbox_pacing (inbox_id) values (v_inbox) on conflict do nothing;
  end if;
  select * into v_row from campaign_inbox_pacing where inbox_id = v_inbox;
  if not found then  -- an older caller, an inbox nobody paces
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  v_limits := cq_inbox_limits(v_row, p_min_gap_s, p_max_gap_s, p_daily_cap);
  if v_limits.min_gap_s = 0 and v_limits.daily_cap = 0 then  -- pacing off: no lock, no write
    return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
  end if;
  select * into v_row from campaign_inbox_pacing where inbox_id = v_inbox for update;

  if v_row.sent_day is distinct from v_today then
    v_row.sent_day := v_today;
    v_row.sent_today := 0;
  end if;
  if v_limits.daily_cap > 0 and v_row.sent_today >= v_limits.daily_cap then
    update campaign_inbox_pacing
       set sent_day = v_row.sent_day, sent_today = v_row.sent_today, capped_day = v_today,
           turn_message_id = case when turn_message_id = p_message_id then null
                                  else turn_message_id end,
           turn_until = case when turn_message_id = p_message_id then null else turn_until end,
           updated_at = now()
     where inbox_id = v_inbox;
    return jsonb_build_object('ok', false, 'reason', 'daily_cap', 'wait_s',
      extract(epoch from ((v_today + 1)::timestamp at time zone v_tz) - now()));
  end if;
  if v_limits.min_gap_s > 0 and v_row.next_slot_at > now() then
    return jsonb_build_object('ok', false, 'reason', 'gap', 'wait_s',
                              extract(epoch from v_row.next_slot_at - now()));
  end if;

  -- The gap, plus 50 ms for the jitter of the send's own latency: the guarantee is on when the
  -- first parts reach the send endpoint.
  v_gap := v_limits.min_gap_s + random() * (v_limits.max_gap_s - v_limits.min_gap_s);
  update campaign_inbox_pacing
     set next_slot_at = now() + make_interval(secs => v_gap
                                              + case when v_gap > 0 then 0.05 else 0 end),
         paced = v_limits.min_gap_s > 0 or v_limits.daily_cap > 0,
         last_slot_at = now(),
         sent_day = v_row.sent_day,
         sent_today = v_row.sent_today + 1,
         capped_day = case when v_limits.daily_cap > 0
                            and v_row.sent_today + 1 >= v_limits.daily_cap
                           then v_today else capped_day end,
         timezone = v_tz,
         turn_message_id = case when turn_message_id = p_message_id then null
                                else turn_message_id end,
         turn_until = case when turn_message_id = p_message_id then null else turn_until end,
         updated_at = now()
   where inbox_id = v_inbox;
  return jsonb_build_object('ok', true, 'reason', null, 'wait_s', null);
end;
$$;


-- A paced inbox that is being served (a slot taken since the horizon) or that reached its cap
-- lately holds its backlog back on purpose: those messages are not late (DESIGN section 8).
-- Lateness is for messages the scheduler never reached.
create or replace function cq_inbox_holds_backlog(p_inbox_id uuid, p_horizon timestamptz)
returns boolean
language sql stable security definer set search_path = public
as $$
  select coalesce((
    select p.paced and (p.last_slot_at >= p_horizon
                        or p.capped_day >= (now() - interval '2 days')::date)
      from campaign_inbox_pacing p where p.inbox_id = p_inbox_id), false);
$$;
