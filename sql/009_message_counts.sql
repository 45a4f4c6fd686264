-- Per-run message counts, so campaign_queue_status (020_status.sql) reads a run's backlog in a
-- few rows instead of counting a million: how many of its messages are pending, how many of
-- those fall due by when, how many were skipped.
--
-- Kept by triggers on campaign_messages, so every writer is counted: this service's functions
-- and the product inserting, editing or deleting messages. A trigger only ever inserts a row of
-- changes (append-only, never an update): concurrent writers never wait on a counter row and
-- never deadlock on one. cq_fold_message_counts folds the changes into one row per key, one
-- folder at a time; tidy_campaign_queue (once a call of the service that worked messages) and
-- the status call it, never reading campaign_messages after it (the lock order every path
-- keeps: campaign_messages, then the fold's advisory lock; a TRUNCATE too).
--
-- Writes that fire no trigger (session_replication_role = replica: logical replication's
-- apply, some restore tools) are not counted: `select cq_rebuild_message_counts()` (as the
-- owner) recounts from the rows, as applying this file does.
--
-- Rows:
--   kind 'pending' / 'skipped'  due_at '-infinity'; n = the run's messages in that status
--   kind 'in_flight'            due_at '-infinity'; n = its messages claimed (queued,
--                               generating, sending)
--   kind 'due'                  pending messages by the minute they fall due (scheduled_at
--                               binned to the minute); '-infinity' once the minute is past,
--                               so a reader adds one row per run for all that is due, not
--                               one per minute of the campaign. latest_at: an upper bound on
--                               the scheduled_at counted in the row (only the status's
--                               current minute needs it). A message without a time never
--                               falls due (the claim never takes it): 'infinity'
--   folded false                a change a trigger wrote (n may be negative), not yet folded
-- The count of a key is the sum of its rows, folded or not; one snapshot reads a consistent
-- sum, since a fold deletes the changes and adds them in the same transaction.

create table if not exists campaign_message_counts (
  run_id uuid not null,
  kind text not null,
  due_at timestamptz not null default '-infinity',
  n bigint not null,
  latest_at timestamptz,
  folded boolean not null default false
);
-- Run whole (one transaction: `app migrate`, the SQL editor) this file holds each lock it takes
-- to its end, so it takes them first and in the order of every other path: campaign_messages
-- (the row a writer changes), the fold's advisory lock, campaign_message_counts (the row a
-- writer's trigger adds, the rows a fold rewrites); the create above locks nothing once the
-- table exists. Else re-applying the file on a live database deadlocks with a writer or a
-- fold. A DO block, as a runner that sends each statement on its own outside a transaction
-- (`supabase db push`, `psql -f`) refuses a bare LOCK TABLE.
do $$
begin
  lock table campaign_messages in share row exclusive mode;
  perform pg_advisory_xact_lock(hashtext('campaign_message_counts'));
  lock table campaign_message_counts in access exclusive mode;
  alter table campaign_message_counts
    drop constraint if exists campaign_message_counts_kind,
    add constraint campaign_message_counts_kind
      check (kind in ('pending', 'skipped', 'in_flight', 'due'));
end
$$;
do $$ begin  -- only when off: the alter locks the table access exclusive (live traffic)
  if not (select c.relrowsecurity from pg_class c
           where c.oid = 'public.campaign_message_counts'::regclass) then
    alter table campaign_message_counts enable row level security;
  end if;
end $$;
revoke all on campaign_message_counts from public, anon, authenticated;

-- Folded rows: one per key (the fold's upsert target).
create unique index if not exists idx_campaign_message_counts_key
  on campaign_message_counts (run_id, kind, due_at) where folded;
-- The status's read: a run's rows up to the current minute, folded or not.
create index if not exists idx_campaign_message_counts_run
  on campaign_message_counts (run_id, due_at) include (kind, n, latest_at);
-- The fold's work: changes not yet folded, minutes now past, keys that fell to zero.
create index if not exists idx_campaign_message_counts_changes
  on campaign_message_counts (run_id) where not folded;
create index if not exists idx_campaign_message_counts_minutes
  on campaign_message_counts (due_at) where folded and kind = 'due' and due_at > '-infinity';
create index if not exists idx_campaign_message_counts_empty
  on campaign_message_counts (run_id) where folded and n = 0;


-- The kind of count a message in this status is part of (besides 'due'), or null.
-- Plain SQL functions without a search_path setting: inlined into their callers (a setting
-- would stop that, and cost a settings swap a row); they name only built-ins.
create or replace function cq_count_kind(p_status text)
returns text
language sql immutable
as $$
  select case when p_status in ('pending', 'skipped') then p_status
              when p_status in ('queued', 'generating', 'sending') then 'in_flight' end;
$$;


-- The row of 'due' a pending message counts in: the minute it falls due, or '-infinity' when
-- that is well past (two minutes: a status whose clock reads a little before the writer's
-- still sees the message as due), 'infinity' when it has no time. Time-zone independent
-- (date_bin from a UTC origin). Stable, as timestamptz arithmetic is: so it is inlined.
create or replace function cq_due_minute(p_scheduled_at timestamptz, p_now timestamptz)
returns timestamptz
language sql stable
as $$
  select case
    when p_scheduled_at is null then 'infinity'::timestamptz
    when p_scheduled_at < p_now - interval '2 minutes' then '-infinity'::timestamptz
    when not isfinite(p_scheduled_at) then p_scheduled_at
    else date_bin('1 minute', p_scheduled_at, timestamptz '2000-01-01 00:00:00+00') end;
$$;


-- Inserts and deletes, a statement at a time: the rows the statement added or removed (its
-- transition tables), summed per key and written as change rows. The rows are grouped first
-- (by run, kind and minute: a campaign inserted in one statement is a few groups, not a row
-- each), then each group counts twice, in its kind and, when pending, in its minute.
create or replace function cq_count_message_changes()
returns trigger
language plpgsql security definer set search_path = public
as $$
begin
  if tg_op = 'INSERT' then
    insert into campaign_message_counts (run_id, kind, due_at, n, latest_at)
    select g.run_id, c.kind, c.due_at, sum(g.n), max(c.latest_at)
      from (select m.run_id, cq_count_kind(m.status) as kind,
                   case when m.status = 'pending' then cq_due_minute(m.scheduled_at, now()) end
                     as due_at,
                   count(*) as n, max(m.scheduled_at) as latest_at
              from new_rows m
             where cq_count_kind(m.status) is not null
             group by 1, 2, 3) g
     cross join lateral (values (g.kind, '-infinity'::timestamptz, null::timestamptz),
                                ('due', g.due_at, g.latest_at)) c(kind, due_at, latest_at)
     where c.due_at is not null
     group by 1, 2, 3;
  elsif tg_op = 'DELETE' then
    insert into campaign_message_counts (run_id, kind, due_at, n)
    select g.run_id, c.kind, c.due_at, -sum(g.n)
      from (select m.run_id, cq_count_kind(m.status) as kind,
                   case when m.status = 'pending' then cq_due_minute(m.scheduled_at, now()) end
                     as due_at,
                   count(*) as n
              from old_rows m
             where cq_count_kind(m.status) is not null
             group by 1, 2, 3) g
     cross join lateral (values (g.kind, '-infinity'::timestamptz),
                                ('due', g.due_at)) c(kind, due_at)
     where c.due_at is not null
     group by 1, 2, 3;
  end if;
  return null;
end;
$$;

-- Updates, a row at a time, and only the rows whose count changes (the trigger's WHEN, checked
-- before any call): a statement trigger would copy every updated row into its transition
-- tables, and most updates of the queue (a start, a saved text, a part sent, a renewed lease)
-- change no count. The row counts out of its old keys and into its new ones.
create or replace function cq_count_message_update()
returns trigger
language plpgsql security definer set search_path = public
as $$
begin
  insert into campaign_message_counts (run_id, kind, due_at, n, latest_at)
  select c.run_id, c.kind, c.due_at, sum(c.n), max(c.latest_at)
    from (values
      (old.run_id, cq_count_kind(old.status), '-infinity'::timestamptz, -1, null::timestamptz),
      (old.run_id, case when old.status = 'pending' then 'due' end,
       cq_due_minute(old.scheduled_at, now()), -1, null),
      (new.run_id, cq_count_kind(new.status), '-infinity', 1, null),
      (new.run_id, case when new.status = 'pending' then 'due' end,
       cq_due_minute(new.scheduled_at, now()), 1, new.scheduled_at)
    ) c(run_id, kind, due_at, n, latest_at)
   where c.kind is not null
   group by 1, 2, 3
  -- A message moved within its minute changes no count but may raise the minute's upper
  -- bound: that row is kept (n 0), or the status would take the minute as all due.
  having sum(c.n) <> 0 or max(c.latest_at) is not null;
  return null;
end;
$$;

-- A truncate forgets every count (after waiting for a fold in progress, which could otherwise
-- write back what it folded; the truncate already holds campaign_messages, and a fold's
-- transaction never reads campaign_messages after taking the fold's lock).
create or replace function cq_forget_message_counts()
returns trigger
language plpgsql security definer set search_path = public
as $$
begin
  perform pg_advisory_xact_lock(hashtext('campaign_message_counts'));
  delete from campaign_message_counts;
  return null;
end;
$$;


-- Folds the changes into one row per key, and the minutes now past into '-infinity'; drops
-- keys that fell to zero. One folder at a time (a transaction-scoped advisory lock: a second
-- caller does nothing, the first folds for both). Only in a read-committed transaction that
-- may write: an older snapshot (repeatable read) may not delete changes another fold took,
-- and the unfolded changes read right anyway. Returns the change rows folded.
create or replace function cq_fold_message_counts()
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  -- Minutes before this are past for any reader (the margin of cq_due_minute).
  v_horizon constant timestamptz :=
    date_bin('1 minute', now() - interval '2 minutes', timestamptz '2000-01-01 00:00:00+00');
  v_folded int;
begin
  if current_setting('transaction_read_only') = 'on'
     or current_setting('transaction_isolation') <> 'read committed'
     or not pg_try_advisory_xact_lock(hashtext('campaign_message_counts')) then
    return 0;
  end if;
  with changes as (  -- two deletes, one partial index each
    delete from campaign_message_counts c where not c.folded
    returning c.run_id, c.kind, c.due_at, c.n, c.latest_at
  ), past_minutes as (
    delete from campaign_message_counts c
     where c.folded and c.kind = 'due' and c.due_at > '-infinity' and c.due_at < v_horizon
    returning c.run_id, c.kind, c.due_at, c.n, c.latest_at
  ), moved as (
    select m.run_id, m.kind,
           case when m.due_at < v_horizon then '-infinity'::timestamptz else m.due_at end
             as due_at,
           m.n, case when m.due_at >= v_horizon then m.latest_at end as latest_at
      from (select * from changes union all select * from past_minutes) m
  )
  insert into campaign_message_counts as t (run_id, kind, due_at, n, latest_at, folded)
  select m.run_id, m.kind, m.due_at, sum(m.n), max(m.latest_at), true
    from moved m
   group by 1, 2, 3
  on conflict (run_id, kind, due_at) where folded
  do update set n = t.n + excluded.n, latest_at = greatest(t.latest_at, excluded.latest_at);
  get diagnostics v_folded = row_count;
  delete from campaign_message_counts where folded and n = 0;
  return v_folded;
end;
$$;


-- Every count recounted from the rows (writers wait: seconds at a million rows; readers do
-- not). Applying this file does it; so can the owner, after writes no trigger saw.
create or replace function cq_rebuild_message_counts()
returns bigint
language plpgsql security definer set search_path = public
as $$
declare
  v_rows bigint;
begin
  lock table campaign_messages in share row exclusive mode;
  perform pg_advisory_xact_lock(hashtext('campaign_message_counts'));
  delete from campaign_message_counts;
  insert into campaign_message_counts (run_id, kind, due_at, n, latest_at, folded)
  select g.run_id, c.kind, c.due_at, sum(g.n), max(c.latest_at), true
    from (select m.run_id, cq_count_kind(m.status) as kind,
                 case when m.status = 'pending' then cq_due_minute(m.scheduled_at, now()) end
                   as due_at,
                 count(*) as n, max(m.scheduled_at) as latest_at
            from campaign_messages m
           where cq_count_kind(m.status) is not null
           group by 1, 2, 3) g
   cross join lateral (values (g.kind, '-infinity'::timestamptz, null::timestamptz),
                              ('due', g.due_at, g.latest_at)) c(kind, due_at, latest_at)
   where c.due_at is not null
   group by 1, 2, 3;
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;


-- The triggers, and the counts rebuilt from the rows: on the first migration, and again each
-- time this file changes (a rebuild is always right, whatever the counts held). One statement
-- under the writers' lock, taken first: no write falls between the triggers and the recount,
-- whether the file runs whole or a statement at a time. Replaced, not dropped: a drop would
-- raise the lock to access exclusive, and raising a lock a writer's read holds deadlocks.
do $$
begin
  lock table campaign_messages in share row exclusive mode;

  create or replace trigger cq_count_inserted_messages
    after insert on campaign_messages referencing new table as new_rows
    for each statement execute function cq_count_message_changes();
  create or replace trigger cq_count_updated_messages
    after update on campaign_messages for each row
    when (cq_count_kind(old.status) is distinct from cq_count_kind(new.status)
          or old.run_id is distinct from new.run_id
          or (new.status = 'pending' and old.scheduled_at is distinct from new.scheduled_at))
    execute function cq_count_message_update();
  create or replace trigger cq_count_deleted_messages
    after delete on campaign_messages referencing old table as old_rows
    for each statement execute function cq_count_message_changes();
  create or replace trigger cq_forget_truncated_messages
    after truncate on campaign_messages
    for each statement execute function cq_forget_message_counts();

  perform cq_rebuild_message_counts();
end
$$;
