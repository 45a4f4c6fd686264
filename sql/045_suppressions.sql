-- Suppression and stop-on-reply (README, "Number health"): a contact who asked to stop (the
-- suppression list) or who answered a campaign message of the workspace within
-- REPLY_STOP_DAYS gets no further campaign message. Decided when the leads' contexts are
-- fetched (get_lead_contexts, before any LLM call) and checked again when the first part's
-- slot is taken (take_inbox_slot, 016): the service then skips the message with the reason.
--
-- A contact is (workspace, phone): the phone as digits only, the way the product fills
-- campaign_messages.phone_normalized (a message without one: its phone_number's digits).

create table if not exists campaign_suppressions (
  workspace_id uuid not null,
  phone_normalized text not null,
  reason text,
  created_at timestamptz not null default now(),
  primary key (workspace_id, phone_normalized)
);

-- Our table, not the product's: nobody reads it through PostgREST, only our functions.
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_suppressions'::regclass) then
    alter table campaign_suppressions enable row level security;
  end if;
end $$;
revoke all on campaign_suppressions from public, anon, authenticated;


-- Stop-on-reply's lookup: the replied messages of a phone (its digits), newest last. A
-- message's reply time is its updated_at (the product sets status 'replied' when the lead
-- answers). Built-in functions only: whoever inserts a message evaluates the expression.
do $$
begin
  if to_regclass('idx_campaign_messages_replied_phone') is null then
    create index idx_campaign_messages_replied_phone
      on campaign_messages (
        regexp_replace(coalesce(nullif(phone_normalized, ''), phone_number), '\D', '', 'g'),
        updated_at)
      where status = 'replied';
  end if;
end
$$;


-- A phone the product hands in, as the contact's key; a clear error (naming p_phone, never
-- echoing the number) for one that is not a phone: letters or other signs, or fewer than 8 or
-- more than 15 digits (E.164).
create or replace function cq_contact_phone(p_phone text)
returns text
language plpgsql immutable set search_path = public
as $$
declare
  v_digits text;
begin
  if p_phone is null or p_phone !~ '^[\s0-9+().-]*$' then
    raise exception 'p_phone is not a phone number: only digits, spaces, +, -, ( ) and . are allowed'
      using errcode = '22023';
  end if;
  v_digits := regexp_replace(p_phone, '\D', '', 'g');
  if length(v_digits) not between 8 and 15 then
    raise exception 'p_phone is not a phone number: % digits, 8 to 15 expected', length(v_digits)
      using errcode = '22023';
  end if;
  return v_digits;
end;
$$;


-- The product calls it when a lead writes STOP or a person opts them out. Idempotent: a
-- contact already suppressed keeps its first reason and time. Answers {suppressed: true,
-- created: whether this call added it, phone_normalized}.
create or replace function suppress_campaign_contact(
  p_workspace_id uuid, p_phone text, p_reason text
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_phone constant text := cq_contact_phone(p_phone);
  v_created boolean;
begin
  if p_workspace_id is null then
    raise exception 'p_workspace_id is required' using errcode = '22004';
  end if;
  insert into campaign_suppressions (workspace_id, phone_normalized, reason)
  values (p_workspace_id, v_phone, nullif(left(btrim(coalesce(p_reason, '')), 500), ''))
  on conflict (workspace_id, phone_normalized) do nothing;
  v_created := found;
  return jsonb_build_object('suppressed', true, 'created', v_created,
                            'phone_normalized', v_phone);
end;
$$;


-- Takes one contact off the list (idempotent). Answers {removed: whether it was on it,
-- phone_normalized}. A reply within REPLY_STOP_DAYS still stops the contact.
create or replace function unsuppress_campaign_contact(p_workspace_id uuid, p_phone text)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_phone constant text := cq_contact_phone(p_phone);
  v_removed boolean;
begin
  if p_workspace_id is null then
    raise exception 'p_workspace_id is required' using errcode = '22004';
  end if;
  delete from campaign_suppressions
   where workspace_id = p_workspace_id and phone_normalized = v_phone;
  v_removed := found;
  return jsonb_build_object('removed', v_removed, 'phone_normalized', v_phone);
end;
$$;


-- Why a message's contact may not be written to: 'opted out' (on the suppression list of
-- the message's workspace), 'replied' (a replied message of that phone in the workspace
-- within p_reply_stop_days days; 0 or less: stop-on-reply off), else null. A message
-- whose first part went out is not stopped: its remaining parts go on. Index probes only:
-- the message and its run and config by primary key, the list by its key, the replies by
-- idx_campaign_messages_replied_phone.
create or replace function cq_contact_stop_reason(
  p_message_id uuid, p_reply_stop_days int default 30
) returns text
language sql stable security definer set search_path = public
as $$
  select case
    when exists (select 1 from campaign_suppressions s
                  where s.workspace_id = c.workspace_id and s.phone_normalized = x.phone)
      then 'opted out'
    when coalesce(p_reply_stop_days, 30) > 0
         and exists (
           select 1
             -- The phone's recent replies first (idx_campaign_messages_replied_phone; the
             -- fence keeps the planner from walking the workspace's runs instead), then
             -- each one's workspace by primary keys (a lateral with a limit: never a hash
             -- join over every run, which grows with the product's history).
             from (select r.run_id from campaign_messages r
                    where r.status = 'replied'
                      and regexp_replace(coalesce(nullif(r.phone_normalized, ''),
                                                  r.phone_number), '\D', '', 'g') = x.phone
                      and r.updated_at >= now() - make_interval(
                            days => least(coalesce(p_reply_stop_days, 30), 36500))
                   offset 0) r
             cross join lateral (
               select rc.workspace_id
                 from campaign_runs rr join campaign_configs rc on rc.id = rr.config_id
                where rr.id = r.run_id
                limit 1) w
            where w.workspace_id = c.workspace_id)
      then 'replied'
  end
  from campaign_messages m
  join campaign_runs ru on ru.id = m.run_id
  join campaign_configs c on c.id = ru.config_id
  cross join lateral (
    select regexp_replace(coalesce(nullif(m.phone_normalized, ''), m.phone_number), '\D', '',
                          'g') as phone
  ) x
  where m.id = p_message_id and m.parts_sent = 0 and x.phone <> '';
$$;


-- Every lead's context, by lead id, for the prompt. With p_message_ids (the claimed
-- messages), the answer also holds 'stop_reasons': {message id: 'opted out' | 'replied'} for
-- those whose contact may not be written to (cq_contact_stop_reason with p_reply_stop_days,
-- the service's REPLY_STOP_DAYS): the service skips them before any LLM call. The key is not
-- a lead id, so a reader that only looks for lead ids passes over it.
create or replace function get_lead_contexts(
  p_lead_ids uuid[],
  p_message_ids uuid[] default null,
  p_reply_stop_days int default 30
) returns jsonb
language sql stable security definer set search_path = public
as $$
  select coalesce((
    select jsonb_object_agg(l.id::text, jsonb_build_object(
             'id', l.id,
             'workspace_id', l.workspace_id,
             'column_id', l.column_id,
             'client_name', l.client_name,
             'company', l.company,
             'deal_value', l.deal_value,
             'priority', l.priority,
             'tags', to_jsonb(l.tags),
             'custom_fields', l.custom_fields))
      from leads l
     where l.id = any(p_lead_ids)), '{}'::jsonb)
  || case when p_message_ids is null then '{}'::jsonb
     else jsonb_build_object('stop_reasons', coalesce((
       select jsonb_object_agg(s.id::text, s.reason)
         from (select ids.id, cq_contact_stop_reason(ids.id, p_reply_stop_days) as reason
                 from unnest(p_message_ids) as ids(id)) s
        where s.reason is not null), '{}'::jsonb))
     end;
$$;
