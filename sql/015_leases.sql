-- The lease of a claimed message (lock_token, locked_at), apart from the message's own writes:
-- its owner renews it while it works (a heartbeat), or releases it untouched.
-- Both take [{"id": uuid, "lock_token": uuid}, ...]. Elements that are not such an object
-- (not an object, no id or token, a value that is not a uuid) are skipped, never raised on:
-- one bad element never costs the caller the others. Rows are locked in id order, so two
-- callers with overlapping lists wait for each other instead of deadlocking.

-- The [{"id", "lock_token"}] pairs of a request, each once; malformed elements skipped.
create or replace function cq_requested_leases(p_messages jsonb)
returns table (id uuid, lock_token uuid)
language sql immutable security definer set search_path = public
as $$
  select distinct q.id, q.lock_token
  from jsonb_array_elements(
         case when jsonb_typeof(p_messages) = 'array' then p_messages else '[]'::jsonb end) e
  cross join lateral (
    select case when jsonb_typeof(e -> 'id') = 'string'
                 and e ->> 'id' ~* '^[0-9a-f]{8}(-?[0-9a-f]{4}){3}-?[0-9a-f]{12}$'
                then (e ->> 'id')::uuid end as id,
           case when jsonb_typeof(e -> 'lock_token') = 'string'
                 and e ->> 'lock_token' ~* '^[0-9a-f]{8}(-?[0-9a-f]{4}){3}-?[0-9a-f]{12}$'
                then (e ->> 'lock_token')::uuid end as lock_token
  ) q
  where jsonb_typeof(e) = 'object' and q.id is not null and q.lock_token is not null;
$$;


create or replace function renew_campaign_leases(p_messages jsonb)
returns jsonb
language sql security definer set search_path = public
as $$
  with requested as (
    select l.id, l.lock_token from cq_requested_leases(p_messages) l
  ), owned as (
    -- Plain row locks, no skip locked: a lease its owner still holds is renewed even when
    -- another transaction holds the row for a moment (the renewal waits), and a lease lost
    -- meanwhile (released, reclaimed) is re-checked after the wait and not renewed.
    select m.id
    from campaign_messages m
    join requested q on q.id = m.id and q.lock_token = m.lock_token
    where m.status in ('queued', 'generating', 'sending')
    order by m.id
    for update of m
  ), renewed as (
    update campaign_messages m
       set locked_at = now(), updated_at = now()
      from owned o
     where m.id = o.id
    returning m.id
  )
  -- The ids renewed; a lease asked for and not answered is lost: stop touching that message.
  select coalesce(jsonb_agg(r.id::text order by r.id), '[]'::jsonb) from renewed r;
$$;


create or replace function release_campaign_messages(
  p_messages jsonb,
  p_not_before timestamptz default null
) returns integer
language sql security definer set search_path = public
as $$
  with requested as (
    select l.id, l.lock_token from cq_requested_leases(p_messages) l
  ), owned as (
    select m.id,
           (select nullif(left(e ->> 'lead_timezone', 64), '')
              from jsonb_array_elements(p_messages) e
             where jsonb_typeof(e) = 'object' and e ->> 'id' = m.id::text
               and jsonb_typeof(e -> 'lead_timezone') = 'string'
             limit 1) as lead_timezone
    from campaign_messages m
    join requested q on q.id = m.id and q.lock_token = m.lock_token
    where m.status in ('queued', 'generating', 'sending')
    order by m.id
    for update of m
  ), released as (
    -- Without p_not_before the schedule is kept (due again at once: out of time budget).
    -- With it (the send window is closed until then) the message is due strictly later by
    -- the database's clock, at least a second from now: an opening computed in the past,
    -- or on a clock behind the database's, would otherwise make the same messages be
    -- claimed and released over and over.
    update campaign_messages m
       set status = 'pending',
           scheduled_at = case when p_not_before is null then m.scheduled_at
                               else greatest(p_not_before, now() + interval '1 second') end,
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now(),
           -- A message held back by its lead's own window (LEAD_LOCAL_WINDOW) keeps the
           -- lead's zone: the skip reads its lateness in it (049_lead_local_hours.sql).
           lead_timezone = coalesce(o.lead_timezone, m.lead_timezone)
      from owned o
     where m.id = o.id
    returning 1
  )
  select count(*)::int from released;
$$;
