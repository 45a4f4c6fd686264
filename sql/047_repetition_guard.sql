-- Repetition guard (README, "Number health"): the same text to many people gets a number
-- banned. The service normalizes a message's text (the lead's name and company, digits, case,
-- punctuation and whitespace taken out: app/ai/repetition.py) and hashes it; the hash is stored
-- on the message. A first part whose hash its inbox sent in the last 24 hours does not go:
-- - save_generated_message probes the inbox's record (cq_text_sent_recently) and answers
--   'repeated' without saving, so the service writes the text once more, told to vary it;
-- - take_inbox_slot records the hash for its inbox as the first part's slot is asked for
--   (cq_record_sent_text): one row per (inbox, hash), so of two instances that saved the
--   same text for one inbox at once, the second waits on the first's row and is refused.
-- One primary-key probe each, never a scan of the day's texts.

alter table campaign_messages add column if not exists text_hash text;

-- Per inbox, the last message that took a first part's slot with each text hash, and when.
create table if not exists campaign_inbox_sent_texts (
  inbox_id uuid not null,
  text_hash text not null,
  message_id uuid not null,
  sent_at timestamptz not null,
  primary key (inbox_id, text_hash)
);
alter table campaign_inbox_sent_texts enable row level security;
revoke all on campaign_inbox_sent_texts from public, anon, authenticated;


-- Did another message of this inbox take a slot with this hash in the last 24 hours? A null
-- hash (the guard off, an older caller) never repeats.
create or replace function cq_text_sent_recently(
  p_inbox_id uuid, p_text_hash text, p_message_id uuid
) returns boolean
language sql stable security definer set search_path = public
as $$
  select p_text_hash is not null and p_inbox_id is not null and exists (
    select 1 from campaign_inbox_sent_texts t
     where t.inbox_id = p_inbox_id and t.text_hash = p_text_hash
       and t.sent_at > clock_timestamp() - interval '24 hours'
       and t.message_id is distinct from p_message_id);
$$;


-- take_inbox_slot's call, the message row already locked by it and its first part not out yet:
-- records (inbox, the message's hash) as sent now, unless another message of the inbox holds
-- that hash from the last 24 hours. Then it answers true (repeated), and the message's saved
-- text is dropped, so its retry writes a new one instead of reusing the repeated one. The
-- unique key makes a concurrent caller with the same hash wait for the first's commit and
-- see its row. Lock order: the message, then this row, then the inbox's pacing state.
create or replace function cq_record_sent_text(p_message_id uuid, p_inbox_id uuid)
returns boolean
language plpgsql security definer set search_path = public
as $$
declare
  v_hash text;
begin
  select m.text_hash into v_hash from campaign_messages m where m.id = p_message_id;
  if v_hash is null or p_inbox_id is null then
    return false;
  end if;
  insert into campaign_inbox_sent_texts as t (inbox_id, text_hash, message_id, sent_at)
  values (p_inbox_id, v_hash, p_message_id, clock_timestamp())
  on conflict (inbox_id, text_hash) do update
     set message_id = excluded.message_id, sent_at = excluded.sent_at
   where t.message_id = excluded.message_id
      or t.sent_at <= clock_timestamp() - interval '24 hours';
  if found then
    return false;
  end if;
  update campaign_messages
     set generated_message = null, message_parts = null, text_hash = null, updated_at = now()
   where id = p_message_id and parts_sent = 0;
  return true;
end;
$$;


-- Rows older than the window only take room (a probe ignores them): tidy_campaign_queue
-- forgets them, a batch at a time.
create or replace function cq_forget_sent_texts(p_limit int default 10000)
returns integer
language sql security definer set search_path = public
as $$
  with old as (
    select inbox_id, text_hash from campaign_inbox_sent_texts
     where sent_at <= now() - interval '24 hours'
     limit greatest(coalesce(p_limit, 10000), 0)
     for update skip locked),
  gone as (
    delete from campaign_inbox_sent_texts t using old
     where t.inbox_id = old.inbox_id and t.text_hash = old.text_hash
    returning 1)
  select count(*)::int from gone;
$$;
