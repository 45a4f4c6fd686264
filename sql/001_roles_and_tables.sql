-- Roles and tables. In production (Supabase) all of these exist already: every statement here
-- is additive and idempotent (create if not exists, add column if not exists), never a drop.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
end
$$;

create table if not exists inboxes (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  name text not null default 'WhatsApp',
  status text not null default 'connected',
  created_at timestamptz not null default now()
);

create table if not exists leads (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  column_id uuid,
  client_name text,
  company text,
  phone text,
  deal_value numeric,
  priority text,
  tags text[] not null default '{}',
  custom_fields jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists campaign_configs (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  inbox_id uuid not null,
  source_column_id uuid,
  target_column_id uuid,
  ai_instructions text not null default '',
  split_messages boolean not null default false,
  max_split_parts int not null default 3 check (max_split_parts between 1 and 5),
  start_time time,
  end_time time,
  timezone text not null default 'America/Sao_Paulo',
  created_at timestamptz not null default now()
);

create table if not exists campaign_runs (
  id uuid primary key default gen_random_uuid(),
  config_id uuid not null references campaign_configs (id),
  status text not null default 'running'
    check (status in ('running', 'paused', 'completed', 'failed', 'cancelled')),
  leads_total int not null default 0,
  leads_processed int not null default 0,
  leads_failed int not null default 0,
  error_message text,
  metrics jsonb not null default '{}',
  started_at timestamptz not null default now(),
  completed_at timestamptz
);

create table if not exists campaign_messages (
  id uuid primary key default gen_random_uuid(),
  run_id uuid not null references campaign_runs (id),
  lead_id uuid not null,
  phone_number text not null,
  phone_normalized text,
  scheduled_at timestamptz not null default now(),
  status text not null default 'pending'
    check (status in ('pending', 'queued', 'generating', 'sending', 'sent', 'failed',
                      'skipped', 'replied')),
  retry_count int not null default 0,
  conversation_id uuid,
  provider_message_id text,
  error_message text,
  generated_message text,
  ai_tokens_used int,
  ai_generation_time_ms int,
  split_time_ms int,
  sent_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Columns this service adds to the product's table.
alter table campaign_messages add column if not exists lock_token uuid;
alter table campaign_messages add column if not exists locked_at timestamptz;
alter table campaign_messages add column if not exists claimed_by text;
alter table campaign_messages add column if not exists message_parts jsonb;
alter table campaign_messages add column if not exists parts_sent int not null default 0;
-- When its first part was delivered: the inbox's next first part keeps its gap from it.
alter table campaign_messages add column if not exists first_part_at timestamptz;
-- The lead's own zone, kept when lead-local hours held the message back (049_lead_local_hours.sql).
alter table campaign_messages add column if not exists lead_timezone text;

create table if not exists conversations (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  inbox_id uuid not null,
  lead_id uuid,
  contact_phone text not null,
  contact_name text,
  channel text not null default 'whatsapp',
  status text not null default 'open',
  last_message_at timestamptz,
  created_at timestamptz not null default now()
);

create table if not exists ai_agents (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  model text
);

create table if not exists ai_message_splitter_config (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  min_chars_to_split int not null default 150,
  delay_between_messages int not null default 500,
  temperature numeric not null default 0.1,
  max_tokens int not null default 1000
);

create table if not exists campaign_logs (
  id uuid primary key default gen_random_uuid(),
  run_id uuid,
  lead_id uuid,
  message_id uuid,
  step_name text not null,
  level text not null default 'info',
  message text,
  details jsonb,
  created_at timestamptz not null default now()
);
