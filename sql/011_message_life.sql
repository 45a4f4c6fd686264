-- One claimed message's life, every write fenced on (id, lock_token):
-- start -> save generated text -> each part sent; or fail (3 retries at +5/+15/+30 minutes),
-- or skip: 017_message_end.sql. Renewing and releasing the lease itself: 015_leases.sql.
-- A message that ends as the last unfinished one of its running run completes the run, in
-- the same transaction (lock order: 017_message_end.sql).

-- get_lead_contexts: 045_suppressions.sql (it answers the contacts' stop reasons too).


create or replace function start_campaign_message(p_message_id uuid, p_lock_token uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
begin
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost');
  end if;
  if not exists (select 1 from campaign_runs where id = v_msg.run_id and status = 'running') then
    return jsonb_build_object('ok', false, 'reason', 'run_not_running');
  end if;
  update campaign_messages
     set status = case when status = 'queued' then 'generating' else status end,
         locked_at = now(), updated_at = now()
   where id = p_message_id;
  return jsonb_build_object('ok', true, 'reason', null);
end;
$$;


create or replace function save_generated_message(
  p_message_id uuid,
  p_lock_token uuid,
  p_generated_message text,
  p_parts jsonb,
  p_ai_tokens_used int,
  p_ai_generation_time_ms int,
  p_split_time_ms int,
  p_ai_cost_usd numeric default null,
  -- the text's normalized hash (047_repetition_guard.sql); null: the guard is off
  p_text_hash text default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
  v_cfg campaign_configs;
  v_run_status text;
  v_lead leads;
  v_phone text;
  v_conversation uuid;
  v_resuming boolean;
  v_inbox jsonb;
  v_parts jsonb;
  v_parts_ok boolean;
  -- Bounds against a runaway writer (the service keeps within WhatsApp's 4096 characters
  -- and max_split_parts <= 5): far above anything sent, far below a flooded lead.
  c_max_chars constant int := 65536;
  c_max_parts constant int := 20;
begin
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'conversation_id', null);
  end if;

  select r.status into v_run_status from campaign_runs r where r.id = v_msg.run_id;
  select c.* into v_cfg
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = v_msg.run_id;
  if v_run_status is distinct from 'running' then
    return jsonb_build_object('ok', false, 'reason', 'run_not_running', 'conversation_id', null);
  end if;
  v_inbox := check_campaign_instance_status(v_cfg.inbox_id);
  -- A spelling of true counts as connected; anything else as not connected, never an error.
  if lower(btrim(coalesce(v_inbox ->> 'connected', '')))
     not in ('true', 't', 'yes', 'y', 'on', '1') then
    -- The status seen now (not the one of claim time): the run is paused naming it.
    return jsonb_build_object('ok', false, 'reason', 'inbox_disconnected',
                              'conversation_id', null, 'inbox_status', v_inbox ->> 'status');
  end if;
  select * into v_lead from leads where id = v_msg.lead_id;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lead_not_found', 'conversation_id', null);
  end if;

  -- Parts already partly delivered are never rewritten: a retry resumes them. Stored parts
  -- that are not a list of texts cannot be resumed: which text the lead got is unknown, so
  -- nothing more is sent rather than half of another message.
  v_resuming := v_msg.parts_sent > 0;
  if not v_resuming and (p_generated_message is null or btrim(p_generated_message) = ''
                         or length(p_generated_message) > c_max_chars) then
    return jsonb_build_object('ok', false, 'reason', 'invalid_message', 'conversation_id', null);
  end if;
  v_parts := case when v_resuming then v_msg.message_parts else p_parts end;
  if jsonb_typeof(v_parts) is distinct from 'array' then
    v_parts_ok := false;
  else
    v_parts_ok := jsonb_array_length(v_parts) between 1 and c_max_parts
      and not exists (select 1 from jsonb_array_elements(v_parts) e
                       where jsonb_typeof(e) <> 'string' or btrim(e #>> '{}') = ''
                          or length(e #>> '{}') > c_max_chars);
  end if;
  if not v_parts_ok then
    return jsonb_build_object('ok', false, 'reason', 'invalid_parts', 'conversation_id', null);
  end if;
  -- The repetition guard (047_repetition_guard.sql): not a text another message of the inbox
  -- sent or claimed in the last 24 hours.
  if not v_resuming and cq_claim_text(v_cfg.inbox_id, p_text_hash, p_message_id) then
    return jsonb_build_object('ok', false, 'reason', 'repeated', 'conversation_id', null);
  end if;

  v_conversation := v_msg.conversation_id;
  if v_conversation is null then
    v_phone := coalesce(nullif(v_msg.phone_normalized, ''), v_msg.phone_number);
    -- One conversation per (workspace, inbox, phone), even without a unique constraint.
    perform pg_advisory_xact_lock(
      hashtextextended(v_cfg.workspace_id::text || ':' || v_cfg.inbox_id::text || ':' || v_phone, 0));
    select id into v_conversation from conversations
     where workspace_id = v_cfg.workspace_id and inbox_id = v_cfg.inbox_id
       and contact_phone = v_phone
     order by created_at
     limit 1;
    if v_conversation is null then
      insert into conversations (workspace_id, inbox_id, lead_id, contact_phone, contact_name,
                                 channel, status)
      values (v_cfg.workspace_id, v_cfg.inbox_id, v_lead.id, v_phone, v_lead.client_name,
              'whatsapp', 'open')
      returning id into v_conversation;
    end if;
  end if;

  update campaign_messages
     set status = 'sending',
         generated_message = case when v_resuming then generated_message
                                  else btrim(p_generated_message) end,
         message_parts = case when v_resuming then message_parts else p_parts end,
         text_hash = case when v_resuming then text_hash else p_text_hash end,
         conversation_id = v_conversation,
         -- a negative count or duration is clamped to 0; null keeps what was saved before
         ai_tokens_used = coalesce(greatest(p_ai_tokens_used, 0), ai_tokens_used),
         ai_generation_time_ms = coalesce(greatest(p_ai_generation_time_ms, 0),
                                          ai_generation_time_ms),
         split_time_ms = coalesce(greatest(p_split_time_ms, 0), split_time_ms),
         -- USD (019_cost.sql), to 12 decimals (a float's binary noise dropped): only a finite
         -- amount from 0 to 1e6 is kept (NaN, infinity, a negative or absurd cost count as
         -- unknown); null keeps what was saved before
         ai_cost_usd = coalesce(case when p_ai_cost_usd between 0 and 1e6
                                     then trim_scale(round(p_ai_cost_usd, 12)) end,
                                ai_cost_usd),
         locked_at = now(), updated_at = now()
   where id = p_message_id;
  return jsonb_build_object('ok', true, 'reason', null, 'conversation_id', v_conversation);
end;
$$;


create or replace function mark_message_part_sent(
  p_message_id uuid,
  p_lock_token uuid,
  p_part_index int,
  p_provider_message_id text
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
  v_total int;
  v_target uuid;
begin
  -- A sent message keeps its last lock_token, so a repeated call after completion is
  -- answered truthfully instead of as a lost lease.
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending', 'sent')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'completed', false);
  end if;
  if v_msg.status = 'sent' then
    return jsonb_build_object('ok', true, 'reason', null, 'completed', true);
  end if;
  if v_msg.status <> 'sending' then
    return jsonb_build_object('ok', false, 'reason', 'out_of_order', 'completed', false);
  end if;
  if jsonb_typeof(v_msg.message_parts) is distinct from 'array' then
    return jsonb_build_object('ok', false, 'reason', 'invalid_parts', 'completed', false);
  end if;
  v_total := jsonb_array_length(v_msg.message_parts);
  if p_part_index is null or p_part_index < 0
     or p_part_index >= v_total or p_part_index > v_msg.parts_sent then
    return jsonb_build_object('ok', false, 'reason', 'out_of_order', 'completed', false);
  end if;
  if p_part_index < v_msg.parts_sent then
    return jsonb_build_object('ok', true, 'reason', null, 'completed', false);
  end if;

  if p_part_index = 0 then  -- delivered: the inbox's send record (043_failure_brake.sql)
    perform cq_record_inbox_send(v_msg.run_id, 200);
  end if;

  if p_part_index + 1 < v_total then
    update campaign_messages
       set parts_sent = p_part_index + 1,
           -- the inbox's next first part counts its gap from here (take_inbox_slot)
           first_part_at = case when p_part_index = 0 then clock_timestamp()
                                else first_part_at end,
           provider_message_id = coalesce(p_provider_message_id, provider_message_id),
           locked_at = now(), updated_at = now()
     where id = p_message_id;
    return jsonb_build_object('ok', true, 'reason', null, 'completed', false);
  end if;

  update campaign_messages
     set parts_sent = v_total, status = 'sent', sent_at = now(), error_message = null,
         first_part_at = case when p_part_index = 0 then clock_timestamp()
                              else first_part_at end,
         provider_message_id = coalesce(p_provider_message_id, provider_message_id),
         locked_at = null, claimed_by = null, updated_at = now()
   where id = p_message_id;

  select c.target_column_id into v_target
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = v_msg.run_id;
  if v_target is not null then
    update leads set column_id = v_target, updated_at = now() where id = v_msg.lead_id;
  end if;
  if v_msg.conversation_id is not null then
    update conversations set last_message_at = now() where id = v_msg.conversation_id;
  end if;

  -- The delivery above never depends on the run's metrics (product-owned jsonb): a counter
  -- that is not a number counts as 0 and is overwritten, a negative one as 0, a non-integer
  -- one is summed as is (numeric: never rounded, never an overflow); other keys are kept.
  -- If the bookkeeping fails all the same (a product trigger), only it is rolled back.
  begin
    update campaign_runs r
       set leads_processed = r.leads_processed + 1,
           metrics = case when jsonb_typeof(r.metrics) = 'object' then r.metrics
                          else '{}'::jsonb end
                     || (select jsonb_object_agg(a.key, a.added + case
                           when jsonb_typeof(r.metrics -> a.key) = 'number'
                             then greatest((r.metrics ->> a.key)::numeric, 0)
                           -- a count written as a plain decimal string still counts
                           when jsonb_typeof(r.metrics -> a.key) = 'string'
                                and r.metrics ->> a.key ~ '^\s*[0-9]{1,30}(\.[0-9]{1,30})?\s*$'
                             then (r.metrics ->> a.key)::numeric
                           else 0 end)
                         from (values
                           ('messages_sent', 1::numeric),
                           ('parts_sent', v_total),
                           ('ai_tokens_used', greatest(coalesce(v_msg.ai_tokens_used, 0), 0)),
                           ('ai_generation_time_ms',
                            greatest(coalesce(v_msg.ai_generation_time_ms, 0), 0)),
                           ('split_time_ms', greatest(coalesce(v_msg.split_time_ms, 0), 0)),
                           -- numeric USD; NaN or infinity set by hand adds nothing
                           ('ai_cost_usd', case when v_msg.ai_cost_usd between 0 and 1e6
                                                then v_msg.ai_cost_usd else 0 end)
                         ) a(key, added))
     where r.id = v_msg.run_id;
  exception when others then
    raise warning 'campaign run %: metrics not updated for message %: %',
      v_msg.run_id, p_message_id, sqlerrm;
    update campaign_runs set leads_processed = leads_processed + 1 where id = v_msg.run_id;
  end;
  -- The run completes if this was its last unfinished message (the run row is locked by now;
  -- finalize_campaign_runs re-reads the messages in a new statement). Guarded like the
  -- counters: the parts are out, so a failing completion (say, a product trigger on the
  -- status) must not undo the delivery and get them sent again; a later finalize retries.
  begin
    perform finalize_campaign_runs(array[v_msg.run_id]);
  exception when others then
    raise warning 'campaign run %: not completed after message %: %',
      v_msg.run_id, p_message_id, sqlerrm;
  end;
  return jsonb_build_object('ok', true, 'reason', null, 'completed', true);
end;
$$;

