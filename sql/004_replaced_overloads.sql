-- Replaced functions: drop every overload of our names whose arguments or result differ from
-- ours, so PostgREST never sees two functions of one name. Product-owned names are not listed.
-- The function files that follow (010_..., 011_..., 015_...) create the wanted ones;
-- 090_grants.sql exposes them to service_role only.
do $$
declare
  v_wanted constant text[][] := array[
    ['get_and_lock_campaign_messages(integer,timestamp with time zone,integer,text,uuid,real,real,integer,real,integer,integer,integer,boolean)', 'jsonb'],
    ['mark_old_campaign_messages_as_skipped(timestamp with time zone,uuid,integer,boolean)', 'integer'],
    ['cq_skip_late_in_lead_zones(uuid,time without time zone,time without time zone,text,uuid,timestamp with time zone,integer)', 'integer'],
    ['get_lead_contexts(uuid[],uuid[],integer)', 'jsonb'],
    ['start_campaign_message(uuid,uuid)', 'jsonb'],
    ['save_generated_message(uuid,uuid,text,jsonb,integer,integer,integer,numeric,text)', 'jsonb'],
    ['mark_message_part_sent(uuid,uuid,integer,text)', 'jsonb'],
    ['fail_campaign_message(uuid,uuid,text,boolean,integer,integer,real)', 'jsonb'],
    ['skip_campaign_message(uuid,uuid,text)', 'jsonb'],
    ['release_campaign_messages(jsonb,timestamp with time zone)', 'integer'],
    ['renew_campaign_leases(jsonb)', 'jsonb'],
    ['pause_campaign_run(uuid,text)', 'boolean'],
    ['resume_campaign_run(uuid)', 'jsonb'],
    ['finalize_campaign_runs(uuid[])', 'jsonb'],
    ['tidy_campaign_queue()', 'jsonb'],
    ['requeue_failed_campaign_messages(uuid)', 'integer'],
    ['log_campaign_steps(jsonb)', 'integer'],
    ['record_provider_outage(text)', 'boolean'],
    ['campaign_queue_effective_horizon(timestamp with time zone)', 'timestamp with time zone'],
    ['resume_reconnected_campaign_runs()', 'jsonb'],
    ['take_inbox_slot(uuid,uuid,real,real,integer,real,text,integer,integer,integer,integer)', 'jsonb'],
    ['cq_inbox_limits(campaign_inbox_pacing,real,real,integer)', 'record'],
    ['cq_inbox_holds_backlog(uuid,timestamp with time zone)', 'boolean'],
    ['cq_pick_due_messages(integer,timestamp with time zone,uuid,real,real,integer,real,integer,integer,integer,integer,boolean)', 'uuid[]'],
    ['cq_horizon_since(timestamp with time zone,timestamp with time zone)', 'timestamp with time zone'],
    ['cq_note_window_change()', 'trigger'],
    ['cq_local_date(text,timestamp with time zone)', 'date'],
    ['campaign_queue_status(uuid,real,real,integer,text,integer,integer,integer,integer,integer,text)', 'jsonb'],
    ['cq_status_page_of(integer,integer,text,timestamp with time zone)', 'record'],
    ['campaign_console_sent_per_minute()', 'jsonb'],
    ['campaign_console_run_failures(uuid[])', 'jsonb'],
    ['campaign_queue_next_start(timestamp with time zone,uuid,real,real,integer,real,integer,integer,integer,integer,boolean)', 'double precision'],
    ['cq_inbox_hold(campaign_inbox_pacing_state,campaign_inbox_pacing,integer,integer,integer,integer,timestamp with time zone)', 'record'],
    ['cq_warmup_cap(integer,integer,integer,integer)', 'integer'],
    ['cq_hourly_hold_until(timestamp with time zone[],integer)', 'timestamp with time zone'],
    ['cq_status_page(integer,timestamp with time zone)', 'record'],
    ['cq_status_counted(uuid[])', 'uuid[]'],
    ['cq_status_queue(uuid[],timestamp with time zone)', 'jsonb'],
    ['cq_metric_number(jsonb,text)', 'numeric'],
    ['cq_failure_reason(text)', 'text'],
    ['cq_valid_timezone(text)', 'text'],
    ['cq_inbox_timezone(text,text)', 'text'],
    ['cq_check_overrides(text,text)', 'void'],
    ['cq_due_minute(timestamp with time zone,timestamp with time zone)', 'timestamp with time zone'],
    ['cq_fold_message_counts()', 'integer'],
    ['cq_rebuild_message_counts()', 'bigint'],
    ['cq_count_kind(text)', 'text'],
    ['cq_count_message_changes()', 'trigger'],
    ['cq_count_message_update()', 'trigger'],
    ['cq_forget_message_counts()', 'trigger'],
    ['record_campaign_queue_call(text,integer,integer,integer,integer,text,boolean)', 'boolean'],
    ['cq_status_retrying(uuid[])', 'jsonb'],
    ['cq_status_circuit(timestamp with time zone)', 'jsonb'],
    ['cq_status_last_call()', 'jsonb'],
    ['cq_brake_error(text)', 'text'],
    ['cq_record_inbox_send(uuid,integer,text,integer,real)', 'jsonb'],
    ['lift_inbox_brake(uuid)', 'jsonb'],
    ['suppress_campaign_contact(uuid,text,text)', 'jsonb'],
    ['unsuppress_campaign_contact(uuid,text)', 'jsonb'],
    ['cq_contact_stop_reason(uuid,integer)', 'text'],
    ['cq_contact_phone(text)', 'text'],
    ['cq_status_skipped(timestamp with time zone,uuid)', 'jsonb'],
    ['cq_claim_text(uuid,text,uuid)', 'boolean'],
    ['cq_claim_text_at_slot(uuid,uuid)', 'boolean'],
    ['cq_forget_sent_texts(integer)', 'integer'],
    ['set_inbox_pacing(uuid,real,real,integer,text,integer,integer,integer,date)', 'jsonb']
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
