-- Repetition guard (README, "Number health"): the same text to many people gets a number
-- banned. The service normalizes a message's text (the lead's name and company, digits, case,
-- accents, punctuation and whitespace taken out: app/ai/repetition.py) and hashes it; the hash
-- is stored on the message. Per inbox, one row per hash names the last message that was to
-- send it and when (campaign_inbox_sent_texts):
-- - save_generated_message claims the hash for its message (cq_claim_text); held by another
--   message of the inbox within 24 hours, it answers 'repeated' and saves nothing, and the
--   service writes the text once more, told to vary it. The row is unique per (inbox, hash):
--   of two instances saving the same text for one inbox at once, the second waits on the
--   first's row and is answered 'repeated' once the first commits.
-- - take_inbox_slot claims it again as the first part's slot is asked for
--   (cq_claim_text_at_slot), so the 24 hours count from the send, not from the save (a
--   message held back by the daily cap saves today and sends tomorrow).
-- One primary-key probe each (the upsert's arbiter index), never a scan of the day's texts.

alter table campaign_messages add column if not exists text_hash text;

create table if not exists campaign_inbox_sent_texts (
  inbox_id uuid not null,
  text_hash text not null,
  message_id uuid not null,
  sent_at timestamptz not null,
  primary key (inbox_id, text_hash)
);
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_inbox_sent_texts'::regclass) then
    alter table campaign_inbox_sent_texts enable row level security;
  end if;
end $$;
revoke all on campaign_inbox_sent_texts from public, anon, authenticated;


-- True (repeated) when another message of the inbox holds the hash from the last 24 hours;
-- else the hash is this message's from now. A null hash (the guard off, an older caller)
-- never repeats and claims nothing. The caller holds the message's row lock; lock order: the
-- message, then this row (then, in take_inbox_slot, the inbox's pacing state).
create or replace function cq_claim_text(p_inbox_id uuid, p_text_hash text, p_message_id uuid)
returns boolean
language plpgsql security definer set search_path = public
as $$
begin
  if p_text_hash is null or p_inbox_id is null then
    return false;
  end if;
  insert into campaign_inbox_sent_texts as t (inbox_id, text_hash, message_id, sent_at)
  values (p_inbox_id, p_text_hash, p_message_id, clock_timestamp())
  on conflict (inbox_id, text_hash) do update
     set message_id = excluded.message_id, sent_at = excluded.sent_at
   where t.message_id = excluded.message_id
      or t.sent_at <= clock_timestamp() - interval '24 hours';
  return not found;
end;
$$;


-- take_inbox_slot's call (its message locked, no part out yet): the message's own hash claimed
-- again. Refused only if another message took the hash since (this one's claim had expired):
-- then its saved text is dropped, so its retry writes a new one instead of reusing it.
create or replace function cq_claim_text_at_slot(p_message_id uuid, p_inbox_id uuid)
returns boolean
language plpgsql security definer set search_path = public
as $$
begin
  if not cq_claim_text(p_inbox_id,
                       (select m.text_hash from campaign_messages m where m.id = p_message_id),
                       p_message_id) then
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
