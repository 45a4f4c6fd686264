-- The operators' overrides of an inbox's pacing (campaign_inbox_pacing, 016_pacing.sql): the
-- zone of the inbox's calendar day.

-- The zone of an inbox's calendar day (the one its daily cap counts): its row's timezone when
-- Postgres knows it, else the service's INBOX_TIMEZONE when it knows that, else the product's
-- default. Whatever the zones of the campaigns sharing the inbox.
create or replace function cq_inbox_timezone(p_override text, p_setting text)
returns text
language sql stable security definer set search_path = public
as $$
  select case when cq_valid_timezone(p_override) = p_override then p_override
              else cq_valid_timezone(p_setting) end;
$$;
