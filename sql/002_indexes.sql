-- Every hot query of the queue is index-backed (bench/claim_cost.py shows the plans at 1M rows).

-- Claim and skip, by run: the edge function's index, kept for per-run claims (p_run_id).
create index if not exists idx_campaign_messages_atomic_selection
  on campaign_messages (run_id, status, scheduled_at) where status = 'pending';

-- Claim and skip across runs: due pending messages in scheduled order.
create index if not exists idx_campaign_messages_due
  on campaign_messages (scheduled_at) where status = 'pending';

-- Stale-lease recovery: claimed rows whose worker stopped renewing them.
create index if not exists idx_campaign_messages_stale_leases
  on campaign_messages (locked_at) where status in ('queued', 'generating', 'sending');

-- Finalize and per-run counts: "does this run still have work?".
create index if not exists idx_campaign_messages_run_status
  on campaign_messages (run_id, status);

create index if not exists idx_campaign_runs_id_status on campaign_runs (id, status);

-- The skip of late messages walks the running runs only, in id order.
create index if not exists idx_campaign_runs_running on campaign_runs (id) where status = 'running';

-- Runs paused for their inbox, which resume_reconnected_campaign_runs looks at every call.
create index if not exists idx_campaign_runs_paused_for_inbox
  on campaign_runs (started_at, id)
  where status = 'paused' and error_message like 'inbox not connected%';

-- Pass 2 of the claim (018_fair_claim.sql): an inbox's configs, then their running runs.
create index if not exists idx_campaign_configs_inbox on campaign_configs (inbox_id);
create index if not exists idx_campaign_runs_config_running
  on campaign_runs (config_id) where status = 'running';

create index if not exists idx_leads_id_for_context on leads (id, workspace_id);

create index if not exists idx_conversations_contact
  on conversations (workspace_id, inbox_id, contact_phone);

create index if not exists idx_ai_agents_workspace on ai_agents (workspace_id);
create index if not exists idx_splitter_config_workspace on ai_message_splitter_config (workspace_id);
create index if not exists idx_campaign_logs_run on campaign_logs (run_id, created_at);
