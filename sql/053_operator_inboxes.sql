-- Operators' actions on an inbox (README, "Operator actions"): set or clear its pacing
-- overrides (campaign_inbox_pacing, 016_pacing.sql, 040_inbox_hold.sql), set its warm-up's
-- day 0, lift its failure brake. Each answers jsonb {ok, reason, inbox_id, ...what changed}:
-- ok false with a reason (inbox_not_found; invalid_value with `field` and `error`;
-- no_overrides, not_braked) changes nothing.
--
-- Lock order: the inbox's campaign_inbox_pacing row (only these functions lock it), then its
-- send record (campaign_inbox_send_outcomes), then its pacing state row
-- (campaign_inbox_pacing_state): the order a send that trips the brake takes the last two in
-- (cq_record_inbox_send, 043_failure_brake.sql); take_inbox_slot takes the state row alone.
-- None of these waits on a run or a message.

create or replace function cq_inbox_overrides(p_row campaign_inbox_pacing)
returns jsonb
language sql immutable
as $$
  select case when p_row.inbox_id is null then null
              else jsonb_build_object('min_gap_s', p_row.min_gap_s,
                                      'max_gap_s', p_row.max_gap_s,
                                      'daily_cap', p_row.daily_cap,
                                      'timezone', p_row.timezone,
                                      'warmup_days', p_row.warmup_days,
                                      'warmup_start_cap', p_row.warmup_start_cap,
                                      'hourly_cap', p_row.hourly_cap) end;
$$;


-- Sets the given overrides; a null argument keeps the value the row has (clear_inbox_pacing
-- drops them all). A value the table refuses (its checks, 025_pacing_overrides.sql and
-- 040_inbox_hold.sql) answers invalid_value naming the constraint, e.g. 'max_gap_s: not
-- below min_gap_s'. p_first_sent_day sets the warm-up's day 0
-- (campaign_inbox_pacing_state.first_sent_day: a number in use before this service sent
-- from it), refused when after today anywhere on earth (UTC+14). Answers
-- {ok, reason, inbox_id, overrides_before, overrides_after, first_sent_day_before,
-- first_sent_day_after}.
create or replace function set_inbox_pacing(
  p_inbox_id uuid,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  p_timezone text default null,
  p_warmup_days int default null,
  p_warmup_start_cap int default null,
  p_hourly_cap int default null,
  p_first_sent_day date default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_before campaign_inbox_pacing;
  v_after campaign_inbox_pacing;
  v_day_before date;
  v_day_after date;
  v_constraint text;
  v_overrides constant boolean := num_nonnulls(p_min_gap_s, p_max_gap_s, p_daily_cap,
                                               p_timezone, p_warmup_days, p_warmup_start_cap,
                                               p_hourly_cap) > 0;
begin
  if not exists (select 1 from inboxes where id = p_inbox_id) then
    return jsonb_build_object('ok', false, 'reason', 'inbox_not_found', 'inbox_id', p_inbox_id,
                              'overrides_before', null, 'overrides_after', null,
                              'first_sent_day_before', null, 'first_sent_day_after', null);
  end if;
  select * into v_before from campaign_inbox_pacing where inbox_id = p_inbox_id for update;
  v_after := v_before;
  select first_sent_day into v_day_before
    from campaign_inbox_pacing_state where inbox_id = p_inbox_id;
  v_day_after := v_day_before;
  begin
    if not v_overrides and p_first_sent_day is null then
      raise exception using errcode = 'check_violation',
        constraint = 'overrides: give at least one value to set';
    end if;
    if v_overrides then
      insert into campaign_inbox_pacing as p
        (inbox_id, min_gap_s, max_gap_s, daily_cap, timezone, warmup_days, warmup_start_cap,
         hourly_cap, updated_at)
      values (p_inbox_id, p_min_gap_s, p_max_gap_s, p_daily_cap, p_timezone, p_warmup_days,
              p_warmup_start_cap, p_hourly_cap, now())
      on conflict (inbox_id) do update
        set min_gap_s = coalesce(excluded.min_gap_s, p.min_gap_s),
            max_gap_s = coalesce(excluded.max_gap_s, p.max_gap_s),
            daily_cap = coalesce(excluded.daily_cap, p.daily_cap),
            timezone = coalesce(excluded.timezone, p.timezone),
            warmup_days = coalesce(excluded.warmup_days, p.warmup_days),
            warmup_start_cap = coalesce(excluded.warmup_start_cap, p.warmup_start_cap),
            hourly_cap = coalesce(excluded.hourly_cap, p.hourly_cap),
            updated_at = now()
      returning * into v_after;
    end if;
    if p_first_sent_day is not null then
      if p_first_sent_day > (now() at time zone 'Etc/GMT-14')::date then
        raise exception using errcode = 'check_violation',
          constraint = 'first_sent_day: not after today';
      end if;
      insert into campaign_inbox_pacing_state as s (inbox_id, first_sent_day)
      values (p_inbox_id, p_first_sent_day)
      on conflict (inbox_id) do update
        set first_sent_day = excluded.first_sent_day, updated_at = now()
      returning first_sent_day into v_day_after;
    end if;
  exception when check_violation then  -- the block's writes are undone
    get stacked diagnostics v_constraint = constraint_name;
    return jsonb_build_object('ok', false, 'reason', 'invalid_value', 'inbox_id', p_inbox_id,
                              'field', split_part(v_constraint, ':', 1),
                              'error', v_constraint,
                              'overrides_before', cq_inbox_overrides(v_before),
                              'overrides_after', cq_inbox_overrides(v_before),
                              'first_sent_day_before', v_day_before,
                              'first_sent_day_after', v_day_before);
  end;
  return jsonb_build_object('ok', true, 'reason', null, 'inbox_id', p_inbox_id,
                            'overrides_before', cq_inbox_overrides(v_before),
                            'overrides_after', cq_inbox_overrides(v_after),
                            'first_sent_day_before', v_day_before,
                            'first_sent_day_after', v_day_after);
end;
$$;


-- Drops the inbox's overrides: it paces by the service's INBOX_* settings again. Its warm-up's
-- day 0 stays (it is the inbox's history, not an override).
create or replace function clear_inbox_pacing(p_inbox_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_before campaign_inbox_pacing;
begin
  delete from campaign_inbox_pacing where inbox_id = p_inbox_id returning * into v_before;
  if not found then
    return jsonb_build_object(
      'ok', false,
      'reason', case when exists (select 1 from inboxes where id = p_inbox_id)
                     then 'no_overrides' else 'inbox_not_found' end,
      'inbox_id', p_inbox_id, 'overrides_before', null, 'overrides_after', null);
  end if;
  return jsonb_build_object('ok', true, 'reason', null, 'inbox_id', p_inbox_id,
                            'overrides_before', cq_inbox_overrides(v_before),
                            'overrides_after', null);
end;
$$;


-- The operator's lift of the failure brake (lift_inbox_brake, 043_failure_brake.sql, does
-- it: brake_until becomes now, so the backlog it held stays not late for the skip horizon,
-- and the send record starts over). Answers {ok, reason, inbox_id, brake_until_before,
-- brake_reason_before, brake_until_after, brake_reason_after}; an inbox not braked now (never
-- braked, or its brake ran out) is refused with not_braked, its send record kept.
create or replace function operator_lift_inbox_brake(p_inbox_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_state campaign_inbox_pacing_state;
begin
  if not exists (select 1 from inboxes where id = p_inbox_id) then
    return jsonb_build_object('ok', false, 'reason', 'inbox_not_found', 'inbox_id', p_inbox_id,
                              'brake_until_before', null, 'brake_reason_before', null,
                              'brake_until_after', null, 'brake_reason_after', null);
  end if;
  -- lift_inbox_brake's order: the send record, then the state row (a trip in between waits)
  perform 1 from campaign_inbox_send_outcomes where inbox_id = p_inbox_id for update;
  select * into v_state from campaign_inbox_pacing_state where inbox_id = p_inbox_id for update;
  if not coalesce(v_state.brake_until > now(), false) then
    return jsonb_build_object('ok', false, 'reason', 'not_braked', 'inbox_id', p_inbox_id,
                              'brake_until_before', v_state.brake_until,
                              'brake_reason_before', v_state.brake_reason,
                              'brake_until_after', v_state.brake_until,
                              'brake_reason_after', v_state.brake_reason);
  end if;
  perform lift_inbox_brake(p_inbox_id);
  return (select jsonb_build_object('ok', true, 'reason', null, 'inbox_id', p_inbox_id,
                                    'brake_until_before', v_state.brake_until,
                                    'brake_reason_before', v_state.brake_reason,
                                    'brake_until_after', s.brake_until,
                                    'brake_reason_after', s.brake_reason)
            from campaign_inbox_pacing_state s where s.inbox_id = p_inbox_id);
end;
$$;
