-- What the service's calls did, for an operator who never reads their answers (a pg_cron
-- caller gives up after 5 s and drops the answer): each worker's last call and the recent
-- openings of its provider circuit. campaign_queue_status (020_status.sql) shows them, with
-- the messages waiting for a retry, through the cq_status_* helpers below.
--
-- Cheap and bounded: one upsert a call (a call that claims nothing counts too), one insert
-- a circuit opening; a worker's row is forgotten 7 days after its last call, an opening
-- after 7 days or once 1,000 newer ones exist.

create table if not exists campaign_queue_calls (
  worker text primary key,           -- the service instance: host:pid
  called_at timestamptz not null,    -- when its last call ended
  claimed int not null,              -- that call's answer: messages claimed,
  processed int not null,            -- sent in full,
  failed int not null,               -- attempts that failed (the retried ones included),
  retried int not null,              -- of those, requeued for a later try
  circuit_open text,                 -- why its circuit opened, or null
  answered_502 boolean not null      -- it opened on a key or credit error: the call failed
);
create index if not exists idx_campaign_queue_calls_at on campaign_queue_calls (called_at);

create table if not exists campaign_queue_circuit_openings (
  id bigint generated always as identity primary key,
  opened_at timestamptz not null default now(),
  worker text not null,
  reason text not null,
  answered_502 boolean not null
);
create index if not exists idx_campaign_queue_circuit_openings_at
  on campaign_queue_circuit_openings (opened_at);

-- Pending messages that failed at least once (the retry schedule of fail_campaign_message,
-- or a lease that expired): the status's "waiting for a retry", by run.
create index if not exists idx_campaign_messages_retrying
  on campaign_messages (run_id, scheduled_at) where status = 'pending' and retry_count > 0;

-- Our tables, not the product's: nobody reads them through PostgREST, only our functions.
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_queue_calls'::regclass) then
    alter table campaign_queue_calls enable row level security;
  end if;
end $$;
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_queue_circuit_openings'::regclass) then
    alter table campaign_queue_circuit_openings enable row level security;
  end if;
end $$;
revoke all on campaign_queue_calls, campaign_queue_circuit_openings
  from public, anon, authenticated;


-- Called once at the end of every call of the service with its answer's counts. Records the
-- worker's last call; when the circuit opened (p_circuit_open), an opening; and the provider
-- outage that holds lateness back (014_provider_outages.sql): opened by a circuit opening,
-- ended by a call that sent a message. Returns whether an outage is open after the call.
-- Counts below 0 are stored as 0; texts are cut to 500 characters.
create or replace function record_campaign_queue_call(
  p_worker text,
  p_claimed int default 0,
  p_processed int default 0,
  p_failed int default 0,
  p_retried int default 0,
  p_circuit_open text default null,
  p_answered_502 boolean default false
) returns boolean
language plpgsql security definer set search_path = public
as $$
declare
  v_worker constant text := left(coalesce(nullif(btrim(p_worker), ''), 'unknown'), 200);
  v_reason constant text := left(nullif(btrim(p_circuit_open), ''), 500);
  v_502 constant boolean := coalesce(p_answered_502, false) and v_reason is not null;
  v_new_worker boolean;
  v_id bigint;
begin
  insert into campaign_queue_calls as c (worker, called_at, claimed, processed, failed, retried,
                                         circuit_open, answered_502)
  values (v_worker, now(), greatest(coalesce(p_claimed, 0), 0),
          greatest(coalesce(p_processed, 0), 0), greatest(coalesce(p_failed, 0), 0),
          greatest(coalesce(p_retried, 0), 0), v_reason, v_502)
  on conflict (worker) do update
     set called_at = excluded.called_at, claimed = excluded.claimed,
         processed = excluded.processed, failed = excluded.failed, retried = excluded.retried,
         circuit_open = excluded.circuit_open, answered_502 = excluded.answered_502
  returning (c.xmax = 0) into v_new_worker;
  if v_new_worker then  -- a new instance: forget those gone for a week
    delete from campaign_queue_calls where called_at < now() - interval '7 days';
  end if;

  if v_reason is not null then
    insert into campaign_queue_circuit_openings (worker, reason, answered_502)
    values (v_worker, v_reason, v_502)
    returning id into v_id;
    delete from campaign_queue_circuit_openings
     where id <= v_id - 1000 or opened_at < now() - interval '7 days';
    return record_provider_outage(v_reason);
  end if;
  if coalesce(p_processed, 0) > 0 then
    return record_provider_outage(null);
  end if;
  return exists (select 1 from campaign_queue_outages where ended_at is null);
end;
$$;


-- The status's messages waiting for a retry among the runs p_runs: pending, retry_count > 0,
-- the error of their last attempt in error_message. {"reasons": [{reason, count,
-- next_attempt_at}], "by_run": {"<run_id>": count}}: reasons as the failures group them
-- (cq_failure_reason; the 20 most frequent, past 500 different texts the rest counted as one
-- entry), next_attempt_at the earliest scheduled_at of the reason (past: due, waiting for a
-- claim). Read by idx_campaign_messages_retrying: as many rows as messages waiting.
create or replace function cq_status_retrying(p_runs uuid[])
returns jsonb
language sql stable security definer set search_path = public
as $$
  with texts as materialized (
    select m.run_id, m.error_message, count(*) as n, min(m.scheduled_at) as next_at
      from campaign_messages m
     where m.run_id = any(p_runs) and m.status = 'pending' and m.retry_count > 0
     group by m.run_id, m.error_message
  ), by_text as (
    select t.error_message, sum(t.n) as n, min(t.next_at) as next_at,
           row_number() over (order by sum(t.n) desc, t.error_message) as rank
      from texts t group by t.error_message
  ), reasons as (
    select case when b.rank <= 500 then cq_failure_reason(b.error_message)
                else '(other failures: too many different texts to group)' end as reason,
           sum(b.n) as n, min(b.next_at) as next_at
      from by_text b group by 1
  )
  select jsonb_build_object(
    'reasons', coalesce((
      select jsonb_agg(jsonb_build_object('reason', r.reason, 'count', r.n,
                                          'next_attempt_at', r.next_at)
                       order by r.n desc, r.reason)
        from (select * from reasons order by n desc, reason limit 20) r), '[]'::jsonb),
    'by_run', coalesce((
      select jsonb_object_agg(x.run_id, x.n)
        from (select t.run_id, sum(t.n) as n from texts t group by t.run_id) x), '{}'::jsonb));
$$;


-- The status's circuit: {outage_since, openings_24h, openings: [{opened_at, worker, reason,
-- answered_502}]}: since when a provider outage is open (null: none), how many times a call's
-- circuit opened in the 24 hours before p_now, and the 10 latest of those, newest first.
create or replace function cq_status_circuit(p_now timestamptz)
returns jsonb
language sql stable security definer set search_path = public
as $$
  select jsonb_build_object(
    'outage_since', (select o.started_at from campaign_queue_outages o where o.ended_at is null),
    'openings_24h', (select count(*) from campaign_queue_circuit_openings o
                      where o.opened_at >= p_now - interval '24 hours'),
    'openings', coalesce((
      select jsonb_agg(jsonb_build_object('opened_at', o.opened_at, 'worker', o.worker,
                                          'reason', o.reason, 'answered_502', o.answered_502)
                       order by o.opened_at desc, o.id desc)
        from (select * from campaign_queue_circuit_openings o
               where o.opened_at >= p_now - interval '24 hours'
               order by o.opened_at desc, o.id desc limit 10) o), '[]'::jsonb));
$$;


-- The status's last call: {at, worker, claimed, processed, failed, retried, circuit_open,
-- answered_502} of the call that ended last, whichever worker made it (null: none yet).
-- failed counts attempts, retried the requeued ones among them: as in the call's answer.
create or replace function cq_status_last_call()
returns jsonb
language sql stable security definer set search_path = public
as $$
  select jsonb_build_object('at', c.called_at, 'worker', c.worker, 'claimed', c.claimed,
                            'processed', c.processed, 'failed', c.failed, 'retried', c.retried,
                            'circuit_open', c.circuit_open, 'answered_502', c.answered_502)
    from campaign_queue_calls c
   order by c.called_at desc
   limit 1;
$$;
