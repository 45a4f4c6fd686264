-- Every hot query of the queue is index-backed (bench/claim_cost.py shows the plans at 1M rows).
--
-- Each index is made only where it is missing: `create index if not exists` locks its table
-- (share) even when the index is there, and re-applied whole on a live database (one
-- transaction, `app migrate`) this file would hold share locks on several tables at once, which
-- deadlocks with a writer that holds one of them (a new conversation) and waits for another
-- (its message). Missing indexes only, it locks nothing that exists. One statement: it runs
-- the same a statement at a time (`supabase db push`, `psql -f`).
do $$
begin
  -- Claim and skip, by run: the edge function's index, kept for per-run claims (p_run_id).
  if to_regclass('idx_campaign_messages_atomic_selection') is null then
    create index idx_campaign_messages_atomic_selection
      on campaign_messages (run_id, status, scheduled_at) where status = 'pending';
  end if;

  -- Claim and skip across runs: due pending messages in scheduled order.
  if to_regclass('idx_campaign_messages_due') is null then
    create index idx_campaign_messages_due
      on campaign_messages (scheduled_at) where status = 'pending';
  end if;

  -- Stale-lease recovery: claimed rows whose worker stopped renewing them.
  if to_regclass('idx_campaign_messages_stale_leases') is null then
    create index idx_campaign_messages_stale_leases
      on campaign_messages (locked_at) where status in ('queued', 'generating', 'sending');
  end if;

  -- Finalize and per-run counts: "does this run still have work?".
  if to_regclass('idx_campaign_messages_run_status') is null then
    create index idx_campaign_messages_run_status on campaign_messages (run_id, status);
  end if;

  if to_regclass('idx_campaign_runs_id_status') is null then
    create index idx_campaign_runs_id_status on campaign_runs (id, status);
  end if;

  -- The skip of late messages walks the running runs only, in id order.
  if to_regclass('idx_campaign_runs_running') is null then
    create index idx_campaign_runs_running on campaign_runs (id) where status = 'running';
  end if;

  -- Runs paused for their inbox, which resume_reconnected_campaign_runs looks at every call.
  if to_regclass('idx_campaign_runs_paused_for_inbox') is null then
    create index idx_campaign_runs_paused_for_inbox
      on campaign_runs (started_at, id)
      where status = 'paused' and error_message like 'inbox not connected%';
  end if;

  -- Pass 2 of the claim (018_fair_claim.sql): an inbox's configs, then their running runs.
  if to_regclass('idx_campaign_configs_inbox') is null then
    create index idx_campaign_configs_inbox on campaign_configs (inbox_id);
  end if;
  if to_regclass('idx_campaign_runs_config_running') is null then
    create index idx_campaign_runs_config_running
      on campaign_runs (config_id) where status = 'running';
  end if;

  if to_regclass('idx_leads_id_for_context') is null then
    create index idx_leads_id_for_context on leads (id, workspace_id);
  end if;

  if to_regclass('idx_conversations_contact') is null then
    create index idx_conversations_contact
      on conversations (workspace_id, inbox_id, contact_phone);
  end if;

  if to_regclass('idx_ai_agents_workspace') is null then
    create index idx_ai_agents_workspace on ai_agents (workspace_id);
  end if;
  if to_regclass('idx_splitter_config_workspace') is null then
    create index idx_splitter_config_workspace on ai_message_splitter_config (workspace_id);
  end if;
  if to_regclass('idx_campaign_logs_run') is null then
    create index idx_campaign_logs_run on campaign_logs (run_id, created_at);
  end if;
end
$$;
