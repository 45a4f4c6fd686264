-- Operators' actions on a contact (README, "Operator actions"): suppress one, or take it off
-- the suppression list (campaign_suppressions, 045_suppressions.sql). The phone is normalized
-- and checked as the product's suppress_campaign_contact does it (cq_contact_phone). Each
-- answers jsonb {ok, reason, workspace_id, phone, suppressed_before, suppressed_after,
-- suppression_reason, suppressed_at}: `phone` masked (its last 4 digits), never the number;
-- the reason and time are the list entry's (added, found or removed). ok false with a reason
-- (invalid_value with `field` and `error`; workspace_not_found: no inbox of the workspace;
-- already_suppressed; not_suppressed) changes nothing.
--
-- Lock order: the one campaign_suppressions row, nothing else.

create or replace function cq_masked_phone(p_digits text)
returns text
language sql immutable
as $$
  select case when p_digits is null then null else '***' || right(p_digits, 4) end;
$$;


create or replace function cq_contact_answer(
  p_ok boolean, p_reason text, p_workspace_id uuid, p_digits text, p_before boolean,
  p_after boolean, p_entry campaign_suppressions
) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('ok', p_ok, 'reason', p_reason, 'workspace_id', p_workspace_id,
                            'phone', cq_masked_phone(p_digits),
                            'suppressed_before', p_before, 'suppressed_after', p_after,
                            'suppression_reason', p_entry.reason,
                            'suppressed_at', p_entry.created_at);
$$;


-- A bad workspace id or phone as the operator's refusal (null: both fine). The phone's error
-- is cq_contact_phone's, naming `phone`; it never echoes the number.
create or replace function cq_contact_refusal(p_workspace_id uuid, p_phone text)
returns jsonb
language plpgsql immutable set search_path = public
as $$
declare
  v_field text := 'workspace_id';
  v_error text := 'workspace_id: required';
begin
  if p_workspace_id is not null then
    begin
      perform cq_contact_phone(p_phone);
      return null;
    exception when invalid_parameter_value then
      get stacked diagnostics v_error = message_text;
      v_field := 'phone';
      v_error := regexp_replace(v_error, '^p_phone is ', 'phone: ');
    end;
  end if;
  return jsonb_build_object('ok', false, 'reason', 'invalid_value', 'field', v_field,
                            'error', v_error, 'workspace_id', p_workspace_id, 'phone', null,
                            'suppressed_before', null, 'suppressed_after', null,
                            'suppression_reason', null, 'suppressed_at', null);
end;
$$;


-- Adds the contact to the list with the reason (blank: 'suppressed by an operator').
create or replace function operator_suppress_campaign_contact(
  p_workspace_id uuid, p_phone text, p_reason text default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_refusal constant jsonb := cq_contact_refusal(p_workspace_id, p_phone);
  v_phone text;
  v_entry campaign_suppressions;
begin
  if v_refusal is not null then
    return v_refusal;
  end if;
  v_phone := cq_contact_phone(p_phone);
  select * into v_entry from campaign_suppressions
   where workspace_id = p_workspace_id and phone_normalized = v_phone;
  if found then
    return cq_contact_answer(false, 'already_suppressed', p_workspace_id, v_phone, true, true,
                             v_entry);
  end if;
  if not exists (select 1 from inboxes where workspace_id = p_workspace_id) then
    return cq_contact_answer(false, 'workspace_not_found', p_workspace_id, v_phone, false,
                             false, null);
  end if;
  insert into campaign_suppressions (workspace_id, phone_normalized, reason)
  values (p_workspace_id, v_phone,
          left(coalesce(nullif(btrim(p_reason), ''), 'suppressed by an operator'), 500))
  on conflict (workspace_id, phone_normalized) do nothing
  returning * into v_entry;
  if not found then  -- suppressed by another call since the read above
    select * into v_entry from campaign_suppressions
     where workspace_id = p_workspace_id and phone_normalized = v_phone;
    return cq_contact_answer(false, 'already_suppressed', p_workspace_id, v_phone, true, true,
                             v_entry);
  end if;
  return cq_contact_answer(true, null, p_workspace_id, v_phone, false, true, v_entry);
end;
$$;


-- Takes the contact off the list. A reply within REPLY_STOP_DAYS still stops it.
create or replace function operator_unsuppress_campaign_contact(
  p_workspace_id uuid, p_phone text
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_refusal constant jsonb := cq_contact_refusal(p_workspace_id, p_phone);
  v_phone text;
  v_entry campaign_suppressions;
begin
  if v_refusal is not null then
    return v_refusal;
  end if;
  v_phone := cq_contact_phone(p_phone);
  delete from campaign_suppressions
   where workspace_id = p_workspace_id and phone_normalized = v_phone
  returning * into v_entry;
  if found then
    return cq_contact_answer(true, null, p_workspace_id, v_phone, true, false, v_entry);
  end if;
  return cq_contact_answer(
    false,
    case when exists (select 1 from inboxes where workspace_id = p_workspace_id)
         then 'not_suppressed' else 'workspace_not_found' end,
    p_workspace_id, v_phone, false, false, null);
end;
$$;
