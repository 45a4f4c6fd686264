-- The failure brake's record (docs/architecture.md, "Number health"; README "Failure brake"):
-- a high share of sends to invalid or unknown numbers gets a WhatsApp number banned. Each
-- inbox keeps the outcomes of its last 20 sends; when at least INBOX_BRAKE_FAILURES of them
-- failed for good at the send endpoint (HTTP 400 or 404), the inbox is braked for
-- INBOX_BRAKE_HOURS: brake_until and brake_reason on its pacing state, which the claim, the
-- next start, the late rule and take_inbox_slot read (a braked inbox's messages wait
-- untouched). An operator lifts it with lift_inbox_brake.
--
-- A send is one message's attempt at the send endpoint, recorded once: delivered when its
-- first part is marked sent (mark_message_part_sent), or failed with the endpoint's HTTP
-- status when the service fails the message before any part went out (fail_campaign_message's
-- p_send_status; a failure of the model, the database or the network has none and is not a
-- send). Both are recorded in the call that ends the attempt: no extra round trip.
--
-- Lock order: the message row (the caller's), then the inbox's record row, then its pacing
-- state row (only when the brake trips), then the run row (the caller's finalize, last).
-- take_inbox_slot takes the message, then the state row; the claim takes state rows with skip
-- locked; lift_inbox_brake takes the record row, then the state row: no cycle.

alter table campaign_inbox_pacing_state
  add column if not exists brake_until timestamptz,
  add column if not exists brake_reason text;

-- One row an inbox: the send endpoint's answer to each of its last 20 sends, oldest first
-- (200 delivered, else the status it failed with). Bounded: never more than 20 entries.
create table if not exists campaign_inbox_send_outcomes (
  inbox_id uuid primary key,
  statuses smallint[] not null default '{}',
  last_error text,  -- the last failure for good at the send endpoint, ids and numbers left out
  updated_at timestamptz not null default now()
);
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_inbox_send_outcomes'::regclass) then
    alter table campaign_inbox_send_outcomes enable row level security;
  end if;
end $$;
revoke all on campaign_inbox_send_outcomes from public, anon, authenticated;


-- An error as the brake's reason may name it: uuids and digit runs (a phone, an id) left out.
create or replace function cq_brake_error(p_error text)
returns text
language sql immutable
as $$
  select left(regexp_replace(
           regexp_replace(coalesce(p_error, 'unknown error'),
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                          '<id>', 'gi'),
           '\+?[0-9][0-9 ().-]{4,}[0-9]', '<number>', 'g'), 200);
$$;


-- Records one send of the run's inbox (p_send_status: 200 delivered, else the failing HTTP
-- status; null records nothing) and trips the brake when the last 20 hold at least
-- p_brake_failures failures for good (400/404). Answers null, or {inbox_id, brake_until,
-- brake_reason} when this send tripped it. p_brake_failures: INBOX_BRAKE_FAILURES (null: 5;
-- 0: off); p_brake_hours: INBOX_BRAKE_HOURS (null or NaN: 6). An inbox already braked is not
-- braked again: its brake keeps its end. On a trip the record starts over, so the sends that
-- tripped it do not trip it again when it ends.
create or replace function cq_record_inbox_send(
  p_run_id uuid,
  p_send_status int,
  p_error text default null,
  p_brake_failures int default null,
  p_brake_hours real default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_inbox uuid;
  v_invalid constant boolean := p_send_status in (400, 404);
  v_statuses smallint[];
  v_failed int;
  v_needed constant int := coalesce(p_brake_failures, 5);
  v_hours constant real := least(coalesce(nullif(p_brake_hours, 'NaN'), 6), 720);
  v_until timestamptz;
  v_reason text;
begin
  if p_send_status is null or p_send_status not between 100 and 999 then
    return null;
  end if;
  select c.inbox_id into v_inbox
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = p_run_id;
  if v_inbox is null then
    return null;
  end if;

  -- One statement: concurrent sends of one inbox queue on the row, and each appends to the
  -- version the one before it committed (none is lost).
  insert into campaign_inbox_send_outcomes as o (inbox_id, statuses, last_error)
  values (v_inbox, array[p_send_status]::smallint[],
          case when v_invalid then cq_brake_error(p_error) end)
  on conflict (inbox_id) do update
     set statuses = (o.statuses || excluded.statuses)[greatest(cardinality(o.statuses) - 18, 1):],
         last_error = coalesce(excluded.last_error, o.last_error),
         updated_at = now()
  returning statuses into v_statuses;

  if not v_invalid or v_needed <= 0 or v_hours <= 0 then
    return null;
  end if;
  select count(*) into v_failed from unnest(v_statuses) s where s in (400, 404);
  if v_failed < v_needed then
    return null;
  end if;

  v_reason := format('%s of the last %s sends failed for good at the send endpoint '
                     '(invalid or unknown numbers); last error: %s',
                     v_failed, cardinality(v_statuses), cq_brake_error(p_error));
  insert into campaign_inbox_pacing_state as s (inbox_id, brake_until, brake_reason)
  values (v_inbox, now() + make_interval(secs => v_hours * 3600), v_reason)
  on conflict (inbox_id) do update
     set brake_until = excluded.brake_until, brake_reason = excluded.brake_reason,
         updated_at = now()
   where s.brake_until is null or s.brake_until <= now()
  returning brake_until into v_until;
  if v_until is null then
    return null;  -- already braked
  end if;
  update campaign_inbox_send_outcomes set statuses = '{}', updated_at = now()
   where inbox_id = v_inbox;
  return jsonb_build_object('inbox_id', v_inbox, 'brake_until', v_until,
                            'brake_reason', v_reason);
end;
$$;


-- The operator's lift (README "Failure brake"): the brake ends now and the record starts
-- over, so the sends that tripped it do not trip it again at the next failure. brake_until
-- becomes now, not null: the backlog the brake held stays not late for the skip horizon after
-- the hold's end (cq_inbox_hold, 040), as when a brake runs out by itself. An inbox with
-- neither a pacing state nor a record is refused with an error naming it (a mistyped id).
create or replace function lift_inbox_brake(p_inbox_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_had_record boolean;
  v_state campaign_inbox_pacing_state;
begin
  if p_inbox_id is null then
    raise exception 'lift_inbox_brake: p_inbox_id is required' using errcode = '22004';
  end if;
  delete from campaign_inbox_send_outcomes where inbox_id = p_inbox_id;
  v_had_record := found;
  select * into v_state from campaign_inbox_pacing_state where inbox_id = p_inbox_id for update;
  if not found and not v_had_record then
    raise exception 'lift_inbox_brake: inbox % has no pacing state (unknown inbox, or it has '
                    'not sent yet)', p_inbox_id
      using errcode = 'P0002', hint = 'p_inbox_id is the inbox_id of campaign_configs';
  end if;
  if v_state.inbox_id is not null and v_state.brake_until > now() then
    update campaign_inbox_pacing_state
       set brake_until = now(), brake_reason = null, updated_at = now()
     where inbox_id = p_inbox_id;
  end if;
  return jsonb_build_object('ok', true, 'inbox_id', p_inbox_id,
                            'was_braked', coalesce(v_state.brake_until > now(), false),
                            'brake_until', v_state.brake_until,
                            'brake_reason', v_state.brake_reason);
end;
$$;
