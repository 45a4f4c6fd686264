-- The queue's functions (DESIGN.md section 4). Message life:
--   pending -> queued (claimed) -> generating -> sending -> sent
-- A claim is a lease (lock_token, locked_at); every write of a claimed message is fenced on
-- (id, lock_token) and renews locked_at. Retry policy: 3 retries at +5/+15/+30 minutes.

-- Replaced functions: drop every overload of our names whose arguments or result differ from
-- ours, so PostgREST never sees two functions of one name. Product-owned names are not listed.
do $$
declare
  v_wanted constant text[][] := array[
    ['get_and_lock_campaign_messages(integer,timestamp with time zone,integer,text,uuid)', 'jsonb'],
    ['mark_old_campaign_messages_as_skipped(timestamp with time zone)', 'integer'],
    ['get_lead_contexts(uuid[])', 'jsonb'],
    ['start_campaign_message(uuid,uuid)', 'jsonb'],
    ['save_generated_message(uuid,uuid,text,jsonb,integer,integer,integer)', 'jsonb'],
    ['mark_message_part_sent(uuid,uuid,integer,text)', 'jsonb'],
    ['fail_campaign_message(uuid,uuid,text,boolean)', 'jsonb'],
    ['skip_campaign_message(uuid,uuid,text)', 'jsonb'],
    ['release_campaign_messages(jsonb,timestamp with time zone)', 'integer'],
    ['pause_campaign_run(uuid,text)', 'boolean'],
    ['resume_campaign_run(uuid)', 'jsonb'],
    ['finalize_campaign_runs(uuid[])', 'jsonb'],
    ['requeue_failed_campaign_messages(uuid)', 'integer'],
    ['log_campaign_steps(jsonb)', 'integer']
  ];
  v_fn record;
  v_keep boolean;
  i int;
begin
  for v_fn in
    select p.oid::regprocedure::text as signature, p.proname::text as name,
           pg_get_function_result(p.oid) as result
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public'
      and p.proname in (select split_part(v_wanted[k][1], '(', 1)
                        from generate_subscripts(v_wanted, 1) k)
  loop
    v_keep := false;
    for i in 1 .. array_length(v_wanted, 1) loop
      if v_wanted[i][1] = v_fn.signature and v_wanted[i][2] = v_fn.result then
        v_keep := true;
      end if;
    end loop;
    if not v_keep then
      execute format('drop function %s', v_fn.signature);
    end if;
  end loop;
end
$$;


create or replace function get_and_lock_campaign_messages(
  p_batch_size int default 5,
  p_one_hour_ago timestamptz default null,
  p_lock_timeout_s int default 600,
  p_worker text default null,
  p_run_id uuid default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_cutoff constant timestamptz :=
    now() - make_interval(secs => greatest(coalesce(p_lock_timeout_s, 600), 1));
  v_stale uuid[];
  v_claimed uuid[] := '{}';
  v_left int;
  v_result jsonb;
begin
  if coalesce(p_batch_size, 0) < 1 then
    return '[]'::jsonb;
  end if;

  -- 1. Stale leases: their worker stopped renewing them (crash, kill, lost connection).
  --    Each reclaim spends a retry, so a message that kills its worker ends failed.
  select coalesce(array_agg(s.id), '{}') into v_stale
  from (
    select m.id from campaign_messages m
    where m.status in ('queued', 'generating', 'sending')
      and m.locked_at < v_cutoff
      and (p_run_id is null or m.run_id = p_run_id)
    order by m.locked_at
    limit p_batch_size
    for update of m skip locked
  ) s;

  if cardinality(v_stale) > 0 then
    with exhausted as (
      update campaign_messages m
         set status = 'failed',
             error_message = 'lease expired after ' || m.retry_count || ' retries: '
                             || 'the worker processing it stopped each time',
             lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
       where m.id = any(v_stale) and m.retry_count >= 3
      returning m.run_id
    )
    update campaign_runs r
       set leads_failed = r.leads_failed + e.n
      from (select run_id, count(*)::int as n from exhausted group by run_id) e
     where r.id = e.run_id;

    update campaign_messages m
       set status = 'pending', retry_count = m.retry_count + 1,
           error_message = 'lease expired while the run was not running: back in the queue',
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
      from campaign_runs r
     where r.id = m.run_id and m.id = any(v_stale) and m.retry_count < 3
       and r.status <> 'running';

    with reclaimed as (
      update campaign_messages m
         set status = 'queued', retry_count = m.retry_count + 1,
             error_message = 'lease expired: reclaimed',
             lock_token = gen_random_uuid(), locked_at = now(), claimed_by = p_worker,
             updated_at = now()
        from campaign_runs r
       where r.id = m.run_id and m.id = any(v_stale) and m.retry_count < 3
         and r.status = 'running'
      returning m.id
    )
    select coalesce(array_agg(id), '{}') into v_claimed from reclaimed;
  end if;

  -- 2. Due pending messages of running runs, oldest first.
  v_left := p_batch_size - cardinality(v_claimed);
  if v_left > 0 then
    with picked as (
      select m.id from campaign_messages m
      join campaign_runs r on r.id = m.run_id
      where m.status = 'pending'
        and m.scheduled_at <= now()
        and (p_one_hour_ago is null or m.scheduled_at >= p_one_hour_ago)
        and (p_run_id is null or m.run_id = p_run_id)
        and r.status = 'running'
      order by m.scheduled_at
      limit v_left
      for update of m skip locked
    ), claimed as (
      update campaign_messages m
         set status = 'queued', lock_token = gen_random_uuid(), locked_at = now(),
             claimed_by = p_worker, updated_at = now()
        from picked
       where m.id = picked.id
      returning m.id
    )
    select v_claimed || coalesce(array_agg(id), '{}') into v_claimed from claimed;
  end if;

  if cardinality(v_claimed) = 0 then
    return '[]'::jsonb;
  end if;

  select coalesce(jsonb_agg(x.item order by x.scheduled_at, x.id), '[]'::jsonb) into v_result
  from (
    select m.id, m.scheduled_at,
           to_jsonb(m)
           || jsonb_build_object(
                'run', jsonb_build_object('id', r.id, 'status', r.status,
                                          'config_id', r.config_id),
                'config', jsonb_build_object(
                  'id', c.id,
                  'workspace_id', c.workspace_id,
                  'inbox_id', c.inbox_id,
                  'ai_instructions', c.ai_instructions,
                  'split_messages', c.split_messages,
                  'max_split_parts', c.max_split_parts,
                  'target_column_id', c.target_column_id,
                  'start_time', c.start_time,
                  'end_time', c.end_time,
                  'timezone', c.timezone,
                  'model', (select a.model from ai_agents a
                             where a.workspace_id = c.workspace_id and a.model is not null
                             limit 1),
                  'inbox_status', check_campaign_instance_status(c.inbox_id),
                  'splitter', (select jsonb_build_object(
                                        'min_chars_to_split', s.min_chars_to_split,
                                        'delay_between_messages', s.delay_between_messages,
                                        'temperature', s.temperature,
                                        'max_tokens', s.max_tokens)
                                 from ai_message_splitter_config s
                                where s.workspace_id = c.workspace_id
                                limit 1)
                )
              ) as item
    from campaign_messages m
    join campaign_runs r on r.id = m.run_id
    join campaign_configs c on c.id = r.config_id
    where m.id = any(v_claimed)
  ) x;
  return v_result;
end;
$$;


create or replace function mark_old_campaign_messages_as_skipped(p_one_hour_ago timestamptz)
returns integer
language sql security definer set search_path = public
as $$
  -- Only running runs: a paused run keeps its pending messages for resume_campaign_run.
  with old as (
    select m.id from campaign_messages m
    join campaign_runs r on r.id = m.run_id
    where m.status = 'pending' and m.scheduled_at < p_one_hour_ago and r.status = 'running'
    for update of m skip locked
  ), skipped as (
    update campaign_messages m
       set status = 'skipped',
           error_message = 'skipped: scheduled before the horizon ' || p_one_hour_ago::text,
           updated_at = now()
      from old
     where m.id = old.id
    returning 1
  )
  select count(*)::int from skipped;
$$;


create or replace function get_lead_contexts(p_lead_ids uuid[])
returns jsonb
language sql stable security definer set search_path = public
as $$
  select coalesce(jsonb_object_agg(l.id::text, jsonb_build_object(
           'id', l.id,
           'workspace_id', l.workspace_id,
           'column_id', l.column_id,
           'client_name', l.client_name,
           'company', l.company,
           'deal_value', l.deal_value,
           'priority', l.priority,
           'tags', to_jsonb(l.tags),
           'custom_fields', l.custom_fields)), '{}'::jsonb)
  from leads l
  where l.id = any(p_lead_ids);
$$;


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
  p_split_time_ms int
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
  if coalesce((check_campaign_instance_status(v_cfg.inbox_id) ->> 'connected')::boolean, false)
     is not true then
    return jsonb_build_object('ok', false, 'reason', 'inbox_disconnected',
                              'conversation_id', null);
  end if;
  select * into v_lead from leads where id = v_msg.lead_id;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lead_not_found', 'conversation_id', null);
  end if;

  -- Parts already partly delivered are never rewritten: a retry resumes them.
  v_resuming := v_msg.parts_sent > 0 and v_msg.message_parts is not null;
  if not v_resuming then
    if p_generated_message is null or btrim(p_generated_message) = '' then
      return jsonb_build_object('ok', false, 'reason', 'invalid_message', 'conversation_id', null);
    end if;
    if p_parts is null or jsonb_typeof(p_parts) <> 'array' or jsonb_array_length(p_parts) = 0
       or exists (select 1 from jsonb_array_elements(p_parts) e
                   where jsonb_typeof(e) <> 'string' or btrim(e #>> '{}') = '') then
      return jsonb_build_object('ok', false, 'reason', 'invalid_parts', 'conversation_id', null);
    end if;
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
         conversation_id = v_conversation,
         ai_tokens_used = coalesce(p_ai_tokens_used, ai_tokens_used),
         ai_generation_time_ms = coalesce(p_ai_generation_time_ms, ai_generation_time_ms),
         split_time_ms = coalesce(p_split_time_ms, split_time_ms),
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
  v_total := coalesce(jsonb_array_length(v_msg.message_parts), 0);
  if v_msg.status <> 'sending' or p_part_index is null or p_part_index < 0
     or p_part_index >= v_total or p_part_index > v_msg.parts_sent then
    return jsonb_build_object('ok', false, 'reason', 'out_of_order', 'completed', false);
  end if;
  if p_part_index < v_msg.parts_sent then
    return jsonb_build_object('ok', true, 'reason', null, 'completed', false);
  end if;

  if p_part_index + 1 < v_total then
    update campaign_messages
       set parts_sent = p_part_index + 1,
           provider_message_id = coalesce(p_provider_message_id, provider_message_id),
           locked_at = now(), updated_at = now()
     where id = p_message_id;
    return jsonb_build_object('ok', true, 'reason', null, 'completed', false);
  end if;

  update campaign_messages
     set parts_sent = v_total, status = 'sent', sent_at = now(), error_message = null,
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

  update campaign_runs r
     set leads_processed = r.leads_processed + 1,
         metrics = coalesce(r.metrics, '{}'::jsonb) || jsonb_build_object(
           'messages_sent', coalesce((r.metrics ->> 'messages_sent')::bigint, 0) + 1,
           'parts_sent', coalesce((r.metrics ->> 'parts_sent')::bigint, 0) + v_total,
           'ai_tokens_used', coalesce((r.metrics ->> 'ai_tokens_used')::bigint, 0)
                             + coalesce(v_msg.ai_tokens_used, 0),
           'ai_generation_time_ms', coalesce((r.metrics ->> 'ai_generation_time_ms')::bigint, 0)
                                    + coalesce(v_msg.ai_generation_time_ms, 0),
           'split_time_ms', coalesce((r.metrics ->> 'split_time_ms')::bigint, 0)
                            + coalesce(v_msg.split_time_ms, 0))
   where r.id = v_msg.run_id;
  return jsonb_build_object('ok', true, 'reason', null, 'completed', true);
end;
$$;


create or replace function fail_campaign_message(
  p_message_id uuid,
  p_lock_token uuid,
  p_error text,
  p_retryable boolean default true
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
  v_next timestamptz;
  v_delays constant int[] := array[5, 15, 30];  -- minutes before retry 1, 2 and 3
begin
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'status', null,
                              'retry_count', null, 'next_attempt_at', null);
  end if;

  if coalesce(p_retryable, true) and v_msg.retry_count < cardinality(v_delays) then
    v_next := now() + make_interval(mins => v_delays[v_msg.retry_count + 1]);
    update campaign_messages
       set status = 'pending', retry_count = retry_count + 1, scheduled_at = v_next,
           error_message = left(coalesce(p_error, 'unknown error'), 2000),
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
     where id = p_message_id;
    return jsonb_build_object('ok', true, 'reason', null, 'status', 'pending',
                              'retry_count', v_msg.retry_count + 1, 'next_attempt_at', v_next);
  end if;

  update campaign_messages
     set status = 'failed', error_message = left(coalesce(p_error, 'unknown error'), 2000),
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
   where id = p_message_id;
  update campaign_runs set leads_failed = leads_failed + 1 where id = v_msg.run_id;
  return jsonb_build_object('ok', true, 'reason', null, 'status', 'failed',
                            'retry_count', v_msg.retry_count, 'next_attempt_at', null);
end;
$$;


create or replace function skip_campaign_message(
  p_message_id uuid,
  p_lock_token uuid,
  p_reason text
) returns jsonb
language plpgsql security definer set search_path = public
as $$
begin
  update campaign_messages
     set status = 'skipped', error_message = left(coalesce(p_reason, 'skipped'), 2000),
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending');
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost');
  end if;
  return jsonb_build_object('ok', true, 'reason', null);
end;
$$;


create or replace function release_campaign_messages(
  p_messages jsonb,
  p_not_before timestamptz default null
) returns integer
language sql security definer set search_path = public
as $$
  with requested as (
    select (e ->> 'id')::uuid as id, (e ->> 'lock_token')::uuid as lock_token
    from jsonb_array_elements(
      case when jsonb_typeof(p_messages) = 'array' then p_messages else '[]'::jsonb end) e
  ), released as (
    update campaign_messages m
       set status = 'pending', scheduled_at = coalesce(p_not_before, m.scheduled_at),
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
      from requested q
     where m.id = q.id and m.lock_token = q.lock_token
       and m.status in ('queued', 'generating', 'sending')
    returning 1
  )
  select count(*)::int from released;
$$;


create or replace function pause_campaign_run(p_run_id uuid, p_reason text)
returns boolean
language plpgsql security definer set search_path = public
as $$
begin
  update campaign_runs set status = 'paused', error_message = p_reason
   where id = p_run_id and status = 'running';
  return found;
end;
$$;


create or replace function resume_campaign_run(p_run_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
  v_inbox uuid;
  v_shift interval;
  v_count int := 0;
begin
  select r.status, c.inbox_id into v_status, v_inbox
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = p_run_id
   for update of r;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'run_not_found', 'rescheduled', 0);
  end if;
  if v_status <> 'paused' then
    return jsonb_build_object('ok', false, 'reason', 'not_paused', 'rescheduled', 0);
  end if;
  if coalesce((check_campaign_instance_status(v_inbox) ->> 'connected')::boolean, false)
     is not true then
    return jsonb_build_object('ok', false, 'reason', 'inbox_disconnected', 'rescheduled', 0);
  end if;

  -- Shift every pending message by how late the earliest one is: order and gaps are kept,
  -- and none is late when the run starts again. Messages not yet due are never moved earlier.
  select greatest(now() - min(scheduled_at), interval '0') into v_shift
    from campaign_messages where run_id = p_run_id and status = 'pending';
  if v_shift > interval '0' then
    update campaign_messages
       set scheduled_at = scheduled_at + v_shift, updated_at = now()
     where run_id = p_run_id and status = 'pending';
    get diagnostics v_count = row_count;
  end if;

  update campaign_runs set status = 'running', error_message = null where id = p_run_id;
  return jsonb_build_object('ok', true, 'reason', null, 'rescheduled', v_count);
end;
$$;


create or replace function finalize_campaign_runs(p_run_ids uuid[])
returns jsonb
language sql security definer set search_path = public
as $$
  with finished as (
    update campaign_runs r
       set status = 'completed', completed_at = now()
     where r.id = any(p_run_ids) and r.status = 'running'
       and not exists (select 1 from campaign_messages m
                        where m.run_id = r.id
                          and m.status in ('pending', 'queued', 'generating', 'sending'))
    returning r.id
  )
  select coalesce(jsonb_agg(id), '[]'::jsonb) from finished;
$$;


create or replace function requeue_failed_campaign_messages(p_run_id uuid)
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_count int;
begin
  -- Text and parts already delivered are kept: the new attempt resumes, never re-sends.
  update campaign_messages m
     set status = 'pending', scheduled_at = now(), retry_count = 0, error_message = null,
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
    from campaign_runs r
   where r.id = m.run_id and m.run_id = p_run_id and m.status = 'failed'
     and r.status <> 'cancelled';
  get diagnostics v_count = row_count;
  if v_count > 0 then
    update campaign_runs
       set leads_failed = greatest(leads_failed - v_count, 0),
           completed_at = case when status in ('completed', 'failed') then null
                               else completed_at end,
           status = case when status in ('completed', 'failed') then 'running' else status end
     where id = p_run_id;
  end if;
  return v_count;
end;
$$;


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
