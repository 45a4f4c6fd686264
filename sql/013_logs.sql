-- campaign_logs in bulk, through the product's log_campaign_step.

create or replace function log_campaign_steps(p_entries jsonb)
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_entry jsonb;
  v_count int := 0;
begin
  if jsonb_typeof(p_entries) is distinct from 'array' then
    return 0;
  end if;
  for v_entry in select e from jsonb_array_elements(p_entries) e loop
    perform log_campaign_step(
      p_run_id => (v_entry ->> 'run_id')::uuid,
      p_step_name => coalesce(v_entry ->> 'step_name', v_entry ->> 'step', 'log'),
      p_level => coalesce(v_entry ->> 'level', 'info'),
      p_message => v_entry ->> 'message',
      p_details => v_entry -> 'details',
      p_lead_id => (v_entry ->> 'lead_id')::uuid,
      p_message_id => (v_entry ->> 'message_id')::uuid);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
