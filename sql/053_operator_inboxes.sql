-- Operators' overrides of an inbox's pacing (campaign_inbox_pacing, 016_pacing.sql): set or
-- clear them. Both answer jsonb {ok, reason, inbox_id, overrides_before, overrides_after}
-- (overrides: {min_gap_s, max_gap_s, daily_cap, timezone}, or null for no row). ok false
-- with a reason (inbox_not_found, invalid_value with `field` and `error`, no_overrides)
-- changes nothing. Neither touches the inbox's pacing state (campaign_inbox_pacing_state):
-- its next slot and the day's count stay as they are.

create or replace function cq_inbox_overrides(p_row campaign_inbox_pacing)
returns jsonb
language sql immutable
as $$
  select case when p_row.inbox_id is null then null
              else jsonb_build_object('min_gap_s', p_row.min_gap_s,
                                      'max_gap_s', p_row.max_gap_s,
                                      'daily_cap', p_row.daily_cap,
                                      'timezone', p_row.timezone) end;
$$;


-- Sets the given values; a null argument keeps the value the row has (clear_inbox_pacing
-- drops them all). A value the table refuses (its checks, 025_pacing_overrides.sql) answers
-- invalid_value naming the constraint, e.g. 'max_gap_s: not below min_gap_s'.
create or replace function set_inbox_pacing(
  p_inbox_id uuid,
  p_min_gap_s real default null,
  p_max_gap_s real default null,
  p_daily_cap int default null,
  p_timezone text default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_before campaign_inbox_pacing;
  v_after campaign_inbox_pacing;
  v_constraint text;
begin
  if not exists (select 1 from inboxes where id = p_inbox_id) then
    return jsonb_build_object('ok', false, 'reason', 'inbox_not_found', 'inbox_id', p_inbox_id,
                              'overrides_before', null, 'overrides_after', null);
  end if;
  select * into v_before from campaign_inbox_pacing where inbox_id = p_inbox_id for update;
  begin
    insert into campaign_inbox_pacing as p
      (inbox_id, min_gap_s, max_gap_s, daily_cap, timezone, updated_at)
    values (p_inbox_id, p_min_gap_s, p_max_gap_s, p_daily_cap, p_timezone, now())
    on conflict (inbox_id) do update
      set min_gap_s = coalesce(excluded.min_gap_s, p.min_gap_s),
          max_gap_s = coalesce(excluded.max_gap_s, p.max_gap_s),
          daily_cap = coalesce(excluded.daily_cap, p.daily_cap),
          timezone = coalesce(excluded.timezone, p.timezone),
          updated_at = now()
    returning * into v_after;
  exception when check_violation then
    get stacked diagnostics v_constraint = constraint_name;
    return jsonb_build_object('ok', false, 'reason', 'invalid_value', 'inbox_id', p_inbox_id,
                              'field', split_part(v_constraint, ':', 1),
                              'error', v_constraint,
                              'overrides_before', cq_inbox_overrides(v_before),
                              'overrides_after', cq_inbox_overrides(v_before));
  end;
  return jsonb_build_object('ok', true, 'reason', null, 'inbox_id', p_inbox_id,
                            'overrides_before', cq_inbox_overrides(v_before),
                            'overrides_after', cq_inbox_overrides(v_after));
end;
$$;


-- Drops the inbox's overrides: it paces by the service's INBOX_* settings again.
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
