-- Provider outages: while OpenRouter or the send endpoint is down (the service's circuit
-- breaker opened), due messages are held back through no fault of theirs. Time inside an
-- outage does not count towards lateness, so the held-back backlog is sent when the provider
-- comes back instead of being skipped as late.
--
-- The service calls record_provider_outage at the end of every invocation: with the reason its
-- circuit opened (an auth/credit error, or failures in a row), or null when it did not.
-- get_and_lock_campaign_messages and mark_old_campaign_messages_as_skipped turn the horizon
-- they are given into campaign_queue_effective_horizon(horizon). The helper is exposed to
-- service_role like the rest (read-only, stable), so the service or an operator can see the
-- horizon in force.

create table if not exists campaign_queue_outages (
  id bigint generated always as identity primary key,
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  reason text
);

-- At most one open outage, whichever instances report at the same moment.
create unique index if not exists idx_campaign_queue_outages_one_open
  on campaign_queue_outages ((true)) where ended_at is null;

-- Our table, not the product's: nobody reads it through PostgREST, only our functions.
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_queue_outages'::regclass) then
    alter table campaign_queue_outages enable row level security;
  end if;
end $$;
revoke all on campaign_queue_outages from public, anon, authenticated;


-- A non-null reason opens an outage unless one is open (the open one keeps its start and
-- reason); null closes the open one. Returns whether an outage is open after the call.
-- Closing forgets outages that ended more than 7 days ago: they can no longer move a horizon
-- unless the skip horizon is a week long.
create or replace function record_provider_outage(p_reason text default null)
returns boolean
language plpgsql security definer set search_path = public
as $$
begin
  if p_reason is not null then
    insert into campaign_queue_outages (reason) values (left(p_reason, 500))
    on conflict ((true)) where ended_at is null do nothing;
    return true;
  end if;

  update campaign_queue_outages set ended_at = now() where ended_at is null;
  if found then
    delete from campaign_queue_outages where ended_at < now() - interval '7 days';
  end if;
  return false;
end;
$$;


-- The lateness horizon with outage time discounted. skip_after = now() - p_one_hour_ago;
-- walking back from now(), count only time outside every outage until skip_after has been
-- counted: the instant reached is the horizon. So during an outage open since S the horizon
-- is S - skip_after; after an outage [S, E] a message is late once it has been due for
-- skip_after of time outside outages. Without outages it is p_one_hour_ago itself; a null or
-- future p_one_hour_ago is returned unchanged. Overlapping rows count once.
-- Arithmetic in seconds, so a day is always 24 hours whatever the session's time zone.
create or replace function campaign_queue_effective_horizon(p_one_hour_ago timestamptz)
returns timestamptz
language plpgsql stable security definer set search_path = public
as $$
declare
  v_need numeric := extract(epoch from now() - p_one_hour_ago);  -- seconds still to count
  v_cursor timestamptz := now();
  v_gap numeric;
  v_outage record;
begin
  if p_one_hour_ago is null or v_need <= 0 then
    return p_one_hour_ago;
  end if;
  -- Newest end first; an open outage ends now. The table holds a week at most.
  for v_outage in
    select o.started_at, least(coalesce(o.ended_at, now()), now()) as ended_at
      from campaign_queue_outages o
     where o.started_at < now()
     order by 2 desc, 1
  loop
    if v_outage.ended_at < v_cursor then
      v_gap := extract(epoch from v_cursor - v_outage.ended_at);
      exit when v_gap >= v_need;
      v_need := v_need - v_gap;
      v_cursor := v_outage.ended_at;
    end if;
    v_cursor := least(v_cursor, v_outage.started_at);
  end loop;
  return v_cursor - make_interval(secs => v_need::double precision);
end;
$$;
