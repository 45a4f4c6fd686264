-- Only the service role may call the queue's functions; PostgREST exposes nothing else.
do $$
declare
  v_fn text;
begin
  foreach v_fn in array array[
    'get_and_lock_campaign_messages(integer,timestamptz,integer,text,uuid,real,real,integer,real,integer,integer,integer,boolean)',
    'take_inbox_slot(uuid,uuid,real,real,integer,real,text,integer,integer,integer,integer)',
    'mark_old_campaign_messages_as_skipped(timestamptz,uuid,integer,boolean)',
    'get_lead_contexts(uuid[],uuid[],integer)',
    'start_campaign_message(uuid,uuid)',
    'save_generated_message(uuid,uuid,text,jsonb,integer,integer,integer,numeric,text)',
    'mark_message_part_sent(uuid,uuid,integer,text)',
    'fail_campaign_message(uuid,uuid,text,boolean,integer,integer,real)',
    'skip_campaign_message(uuid,uuid,text)',
    'release_campaign_messages(jsonb,timestamptz)',
    'renew_campaign_leases(jsonb)',
    'pause_campaign_run(uuid,text)',
    'resume_campaign_run(uuid)',
    'finalize_campaign_runs(uuid[])',
    'tidy_campaign_queue()',
    'requeue_failed_campaign_messages(uuid)',
    'log_campaign_steps(jsonb)',
    'record_provider_outage(text)',
    'campaign_queue_effective_horizon(timestamptz)',
    'resume_reconnected_campaign_runs()',
    'campaign_queue_status(uuid,real,real,integer,text,integer,integer,integer,integer,integer,text)',
    'campaign_console_sent_per_minute()',
    'campaign_console_run_failures(uuid[])',
    'record_campaign_queue_call(text,integer,integer,integer,integer,text,boolean)',
    'campaign_queue_next_start(timestamptz,uuid,real,real,integer,real,integer,integer,integer,integer,boolean)',
    'lift_inbox_brake(uuid)',
    'suppress_campaign_contact(uuid,text,text)',
    'unsuppress_campaign_contact(uuid,text)',
    'operator_pause_campaign_run(uuid,text)',
    'operator_resume_campaign_run(uuid)',
    'cancel_campaign_run(uuid,text)',
    'requeue_campaign_run_failures(uuid,text)',
    'set_inbox_pacing(uuid,real,real,integer,text,integer,integer,integer,date)',
    'clear_inbox_pacing(uuid)',
    'operator_lift_inbox_brake(uuid)',
    'operator_suppress_campaign_contact(uuid,text,text)',
    'operator_unsuppress_campaign_contact(uuid,text)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', v_fn);
    execute format('grant execute on function %s to service_role', v_fn);
  end loop;
  -- Internal helpers (cq_*): only the functions above call them.
  foreach v_fn in array array[
    'cq_inbox_limits(campaign_inbox_pacing,real,real,integer)',
    'cq_inbox_holds_backlog(uuid,timestamptz)',
    'cq_pick_due_messages(integer,timestamptz,uuid,real,real,integer,real,integer,integer,integer,integer,boolean)',
    'cq_inbox_hold(campaign_inbox_pacing_state,campaign_inbox_pacing,integer,integer,integer,integer,timestamptz)',
    'cq_warmup_cap(integer,integer,integer,integer)',
    'cq_hourly_hold_until(timestamptz[],integer)',
    'cq_local_date(text,timestamptz)',
    'cq_requested_leases(jsonb)',
    'cq_metric_number(jsonb,text)',
    'cq_failure_reason(text)',
    'cq_valid_timezone(text)',
    'cq_inbox_timezone(text,text)',
    'cq_check_overrides(text,text)',
    'cq_due_minute(timestamptz,timestamptz)',
    'cq_count_kind(text)',
    'cq_fold_message_counts()',
    'cq_rebuild_message_counts()',
    'cq_count_message_changes()',
    'cq_count_message_update()',
    'cq_forget_message_counts()',
    'cq_status_retrying(uuid[])',
    'cq_status_page(integer,timestamptz)',
    'cq_status_page_of(integer,integer,text,timestamptz)',
    'cq_status_counted(uuid[])',
    'cq_status_queue(uuid[],timestamptz)',
    'cq_status_circuit(timestamptz)',
    'cq_status_last_call()',
    'cq_status_eta_s(bigint,timestamptz,timestamptz,numeric,integer,integer,numeric,integer,integer,integer,uuid,campaign_inbox_pacing_state,campaign_inbox_pacing,integer,integer,integer)',
    'cq_window_open(time,time,text,timestamptz)',
    'cq_window_opening(time,time,text,timestamptz)',
    'cq_open_horizon(time,time,text,timestamptz,timestamptz)',
    'cq_horizon_since(timestamptz,timestamptz)',
    'cq_note_window_change()',
    'cq_brake_error(text)',
    'cq_record_inbox_send(uuid,integer,text,integer,real)',
    'cq_contact_stop_reason(uuid,integer)',
    'cq_contact_phone(text)',
    'cq_status_skipped(timestamptz,uuid)',
    'cq_claim_text(uuid,text,uuid)',
    'cq_claim_text_at_slot(uuid,uuid)',
    'cq_forget_sent_texts(integer)',
    'cq_skip_late_in_lead_zones(uuid,time,time,text,uuid,timestamptz,integer)',
    'cq_run_answer(uuid,boolean,text,text,text,integer)',
    'cq_skip_cancelled_message()',
    'cq_inbox_overrides(campaign_inbox_pacing)',
    'cq_masked_phone(text)',
    'cq_contact_answer(boolean,text,uuid,text,boolean,boolean,campaign_suppressions)',
    'cq_contact_refusal(uuid,text)',
    'cq_stamp_override_hold()',
    'cq_skip_cancelled_leftovers(integer)',
    'cq_requeue_failed(uuid,text)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated, service_role',
                   v_fn);
  end loop;
end
$$;

-- The ledger `python -m app migrate` keeps (app/store/migrations.py creates it before 001, when
-- the API roles may not exist yet). Supabase grants new tables in public to anon and
-- authenticated by default: like every table of ours, it is closed to them.
do $$
begin
  if to_regclass('public.campaign_queue_migrations') is not null then
    alter table campaign_queue_migrations enable row level security;
    revoke all on campaign_queue_migrations from public, anon, authenticated;
  end if;
end
$$;
