-- Runs: pause, resume, complete, and manual reprocessing of failed messages.
--
-- Lock order, kept by every function of the queue, so no two of them deadlock:
-- - Runs in id order: a transaction waits for a run only while it holds no run of a higher
--   id. finalize_campaign_runs, the late skip (010_claim.sql) and
--   resume_reconnected_campaign_runs walk their runs by id; the claim's stale-lease recovery
--   waits for the runs of its first round only and takes a later round's with skip locked.
--   A function that finalizes runs it already holds (the claim, the late skip, the endings,
--   resume) waits for none of them again.
-- - A message row before its run is only ever a leased one (queued, generating, sending): an
--   ending's own message (017_message_end.sql), the claim's stale leases (skip locked).
--   Holding a run, a function waits only on runs of a higher id, or last on fair-share turn
--   rows in run order (the claim, 018_fair_claim.sql); never on a message row: it takes that
--   run's messages with skip locked (resume_campaign_run, requeue_failed_campaign_messages,
--   the late skip, the claim's later rounds; cancel_campaign_run and
--   requeue_campaign_run_failures, 052_operator_runs.sql). Waiting on one would deadlock, in
--   read committed, whatever its status in the statement's snapshot: a message pending there
--   may have been claimed since and be held by its ending, which waits for the run
--   (fail_campaign_message, finalize_campaign_runs), as the waiter follows the row to its
--   newest version; and a claim's stale-lease step keeps its lock on a row it found ended
--   (failed, or pending again) since its snapshot, then waits for that row's run.
-- - Pending messages are taken with skip locked by every function; the claim's pick holds them
--   without their run, and then waits on turn rows only. A pending message skipped so is being
--   claimed: the claim queues it, and its worker works it or gives it back (in a cancelled run
--   052_operator_runs.sql's trigger skips it); a failed one skipped stays failed for the next
--   requeue.

create or replace function pause_campaign_run(p_run_id uuid, p_reason text)
returns boolean
language plpgsql security definer set search_path = public
as $$
begin
  update campaign_runs set status = 'paused', error_message = p_reason
   where id = p_run_id and status = 'running';
  return found;
end;
$$;


create or replace function resume_campaign_run(p_run_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
  v_inbox uuid;
  v_shift interval;
  v_count int := 0;
begin
  select r.status, c.inbox_id into v_status, v_inbox
    from campaign_runs r join campaign_configs c on c.id = r.config_id
   where r.id = p_run_id
   for update of r;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'run_not_found', 'rescheduled', 0);
  end if;
  if v_status <> 'paused' then
    return jsonb_build_object('ok', false, 'reason', 'not_paused', 'rescheduled', 0);
  end if;
  if coalesce((check_campaign_instance_status(v_inbox) ->> 'connected')::boolean, false)
     is not true then
    return jsonb_build_object('ok', false, 'reason', 'inbox_disconnected', 'rescheduled', 0);
  end if;

  -- Shift every pending message by how late the earliest one is: order and gaps are kept,
  -- and none is late when the run starts again. Messages not yet due are never moved earlier.
  -- One another transaction holds is being claimed (the lock order above: never waited on).
  select greatest(now() - min(scheduled_at), interval '0') into v_shift
    from campaign_messages where run_id = p_run_id and status = 'pending';
  if v_shift > interval '0' then
    with free as (
      select m.id from campaign_messages m
       where m.run_id = p_run_id and m.status = 'pending'
         for update of m skip locked
    )
    update campaign_messages m
       set scheduled_at = m.scheduled_at + v_shift, updated_at = now()
      from free
     where m.id = free.id;
    get diagnostics v_count = row_count;
  end if;

  update campaign_runs set status = 'running', error_message = null where id = p_run_id;
  -- A run whose messages all ended while it was paused (say, its last leases ran out) has
  -- nothing to resume: it completes now, by the rule of finalize_campaign_runs.
  perform finalize_campaign_runs(array[p_run_id]);
  return jsonb_build_object('ok', true, 'reason', null, 'rescheduled', v_count);
end;
$$;


-- Runs the service paused because their inbox was down come back by themselves once the inbox
-- reports connected. The service calls this once per invocation, before claiming. Only runs
-- whose error_message starts with 'inbox not connected' (the prefix the service writes when
-- it pauses a run for its inbox): a run paused by a person, for any other reason, waits for
-- that person. At most 100 runs a call, the oldest campaigns first (started_at, id); each
-- inbox's status is asked once a call. Each run goes through resume_campaign_run, in id order
-- (the order every function locks runs in, above), which re-checks the inbox and re-spaces the
-- pending messages from now: holding the runs before, it waits on a run of a higher id only
-- (that run's pending messages it takes with skip locked), never on a lower run. Returns the
-- ids of the runs resumed.
create or replace function resume_reconnected_campaign_runs()
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_run uuid;
  v_resumed uuid[] := '{}';
begin
  for v_run in
    with paused as (
      select r.id, r.started_at, c.inbox_id
        from campaign_runs r join campaign_configs c on c.id = r.config_id
       where r.status = 'paused' and r.error_message like 'inbox not connected%'
    ), connected as materialized (
      select d.inbox_id from (select distinct inbox_id from paused) d
       where coalesce((check_campaign_instance_status(d.inbox_id) ->> 'connected')::boolean,
                      false)
    ), picked as (
      select p.id from paused p join connected using (inbox_id)
       order by p.started_at, p.id
       limit 100
    )
    select id from picked order by id
  loop
    if coalesce((resume_campaign_run(v_run) ->> 'ok')::boolean, false) then
      v_resumed := v_resumed || v_run;
    end if;
  end loop;
  return to_jsonb(v_resumed);
end;
$$;


create or replace function finalize_campaign_runs(p_run_ids uuid[])
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_finished jsonb;
  v_id uuid;
begin
  -- 1. Lock the running runs first, in id order (the lock order above: two functions that
  --    lock several runs never deadlock). A requeue locks its run before touching its
  --    messages, so once we hold the row no requeue of that run is in flight.
  perform 1 from campaign_runs
   where id = any(p_run_ids) and status = 'running'
   order by id
   for update;
  -- 2. A new statement, so a new snapshot (plpgsql, read committed): it sees the messages a
  --    requeue committed while we waited on the run row. One statement reading an old
  --    snapshot after the wait would complete a run that has pending messages again.
  with finished as (
    update campaign_runs r
       set status = 'completed', completed_at = now()
     where r.id = any(p_run_ids) and r.status = 'running'
       and not exists (select 1 from campaign_messages m
                        where m.run_id = r.id
                          and m.status in ('pending', 'queued', 'generating', 'sending'))
    returning r.id
  )
  select coalesce(jsonb_agg(id order by id), '[]'::jsonb) into v_finished from finished;
  -- Whichever path ended the run's last message, the run's log says so, once. The product's
  -- log function refusing it must not undo the completion.
  for v_id in select (x #>> '{}')::uuid from jsonb_array_elements(v_finished) x loop
    begin
      perform log_campaign_step(v_id, 'completed', 'info',
                                'run completed: nothing left to send', null, null, null);
    exception when others then
      raise warning 'campaign_logs entry for completed run % not written: %', v_id, sqlerrm;
    end;
  end loop;
  return v_finished;
end;
$$;


-- Housekeeping the service does at the end of each call that worked messages (once a call,
-- not once a message): folds the status's counts (009_message_counts.sql) and forgets the
-- fair-share turns of runs that are over (a row each, else kept for ever; a run made running
-- again starts with the first turn). Never waits: a turn row another transaction holds is
-- left for the next call, and a fold in progress elsewhere folds for both. Returns
-- {folded, turns_forgotten}.
create or replace function tidy_campaign_queue()
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_forgotten int;
  v_cancelled int;
begin
  -- campaign_messages before the fold's advisory lock, as every writer takes them
  -- (009_message_counts.sql): skipping them after the fold deadlocked with a re-applied
  -- counts migration, which holds campaign_messages while it waits for that lock.
  v_cancelled := cq_skip_cancelled_leftovers();  -- 052
  delete from campaign_run_turns t
   where t.run_id in (select d.run_id from campaign_run_turns d
                       where not exists (select 1 from campaign_runs r
                                          where r.id = d.run_id
                                            and r.status in ('running', 'paused'))
                       for update skip locked);
  get diagnostics v_forgotten = row_count;
  return jsonb_build_object('folded', cq_fold_message_counts(), 'turns_forgotten', v_forgotten,
                            'sent_texts_forgotten', cq_forget_sent_texts(),  -- 047
                            'cancelled_skipped', v_cancelled);
end;
$$;


-- The requeue itself, for a caller that holds the run's row (requeue_failed_campaign_messages
-- below, requeue_campaign_run_failures in 052_operator_runs.sql): the run's failed messages,
-- or those of one reason group (cq_failure_reason, 020_status.sql), back to pending, and the
-- run running again if it had ended. Returns how many.
--
-- A message partly delivered (parts_sent > 0) keeps its text and parts: the new attempt
-- resumes at the first unsent part, never re-sends. One that sent nothing is written again:
-- its text may be what the endpoint rejected, and re-sending it unchanged would fail forever.
-- Its conversation stays (it is the lead's conversation, whatever the text). One another
-- transaction holds stays failed for the next requeue (the lock order above).
create or replace function cq_requeue_failed(p_run_id uuid, p_reason text default null)
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_count int;
begin
  with free as (
    select m.id from campaign_messages m
     where m.run_id = p_run_id and m.status = 'failed'
       and (p_reason is null or cq_failure_reason(m.error_message) = p_reason)
       for update of m skip locked
  )
  update campaign_messages m
     set status = 'pending', scheduled_at = now(), retry_count = 0, error_message = null,
         generated_message = case when m.parts_sent > 0 then m.generated_message end,
         message_parts = case when m.parts_sent > 0 then m.message_parts end,
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
    from free
   where m.id = free.id;
  get diagnostics v_count = row_count;
  if v_count > 0 then
    update campaign_runs
       set leads_failed = greatest(leads_failed - v_count, 0),
           completed_at = case when status in ('completed', 'failed') then null
                               else completed_at end,
           status = case when status in ('completed', 'failed') then 'running' else status end
     where id = p_run_id;
  end if;
  return v_count;
end;
$$;


create or replace function requeue_failed_campaign_messages(p_run_id uuid)
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
begin
  -- The run row first, then its messages: a finalize that locks the run after us waits and
  -- then sees the messages we made pending; one that locked it before us completes the run
  -- and we make it running again.
  select status into v_status from campaign_runs where id = p_run_id for update;
  if not found or v_status = 'cancelled' then
    return 0;
  end if;
  return cq_requeue_failed(p_run_id);
end;
$$;
