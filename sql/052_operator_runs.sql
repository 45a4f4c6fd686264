-- Operators' actions on a run (README, "Operator actions"): pause, resume, cancel, and the
-- requeue of its failed messages, all or one reason group. Each answers jsonb
-- {ok, reason, run_id, status_before, status_after, messages_changed}: ok false with a reason
-- (run_not_found, not_running, not_paused, not_cancellable, run_cancelled,
-- inbox_disconnected, nothing_to_requeue) changes nothing.
--
-- Lock order (012_runs.sql): each locks its one run first, then only that run's pending or
-- failed messages, with skip locked: it never waits on a message row.
--
-- Cancel: the run becomes cancelled and its pending messages skipped with reason 'cancelled'.
-- A pending one another transaction holds is being claimed: it is queued, then worked as below.
-- A message being worked stops at the next message boundary: start_campaign_message and
-- save_generated_message refuse it (run_not_running), the service gives it back, and the
-- trigger below skips it as 'cancelled' as it comes back. One whose text was saved before
-- the cancel (status sending) finishes all its parts: mark_message_part_sent never asks for
-- the run, so no message is left half-sent. A cancelled run is never claimed (the claim takes
-- running runs only), never completed (finalize_campaign_runs too), never requeued.

create or replace function cq_run_answer(
  p_run_id uuid, p_ok boolean, p_reason text, p_before text, p_after text, p_changed int
) returns jsonb
language sql immutable
as $$
  select jsonb_build_object('ok', p_ok, 'reason', p_reason, 'run_id', p_run_id,
                            'status_before', p_before, 'status_after', p_after,
                            'messages_changed', p_changed);
$$;


create or replace function operator_pause_campaign_run(p_run_id uuid, p_reason text default null)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
begin
  select status into v_status from campaign_runs where id = p_run_id for update;
  if not found then
    return cq_run_answer(p_run_id, false, 'run_not_found', null, null, 0);
  end if;
  if v_status <> 'running' then
    return cq_run_answer(p_run_id, false, 'not_running', v_status, v_status, 0);
  end if;
  perform pause_campaign_run(p_run_id,
                             left(coalesce(nullif(btrim(p_reason), ''), 'paused by an operator'),
                                  2000));
  return cq_run_answer(p_run_id, true, null, v_status, 'paused', 0);
end;
$$;


create or replace function operator_resume_campaign_run(p_run_id uuid)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
  v_resumed jsonb;
begin
  select status into v_status from campaign_runs where id = p_run_id for update;
  if not found then
    return cq_run_answer(p_run_id, false, 'run_not_found', null, null, 0);
  end if;
  if v_status <> 'paused' then
    return cq_run_answer(p_run_id, false, 'not_paused', v_status, v_status, 0);
  end if;
  v_resumed := resume_campaign_run(p_run_id);
  if not (v_resumed ->> 'ok')::boolean then
    return cq_run_answer(p_run_id, false, v_resumed ->> 'reason', v_status, v_status, 0);
  end if;
  -- running, or completed when nothing was left to send
  return cq_run_answer(p_run_id, true, null, v_status,
                       (select status from campaign_runs where id = p_run_id),
                       (v_resumed ->> 'rescheduled')::int);
end;
$$;


-- Cancelling a cancelled run again is allowed (status_before cancelled): it skips any
-- pending message left, say one given back by a worker whose release committed while the
-- first cancel was committing (the trigger below read the run as running).
create or replace function cancel_campaign_run(p_run_id uuid, p_reason text default null)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
  v_count int;
begin
  select status into v_status from campaign_runs where id = p_run_id for update;
  if not found then
    return cq_run_answer(p_run_id, false, 'run_not_found', null, null, 0);
  end if;
  if v_status not in ('running', 'paused', 'cancelled') then
    return cq_run_answer(p_run_id, false, 'not_cancellable', v_status, v_status, 0);
  end if;
  if v_status <> 'cancelled' then
    update campaign_runs
       set status = 'cancelled', completed_at = now(),
           error_message = left(coalesce(nullif(btrim(p_reason), ''), 'cancelled by an operator'),
                                2000)
     where id = p_run_id;
  end if;
  -- A new statement: it sees the pending messages committed while we waited on the run.
  -- Those another transaction holds are left to it (the lock order, 012_runs.sql): a claim's
  -- pick holds them, then queues them, and the trigger below skips each one its worker gives
  -- back. Waiting would deadlock: a message pending in this snapshot may have been claimed
  -- since and be held by its ending, which waits for this run.
  with free as (
    select m.id from campaign_messages m
     where m.run_id = p_run_id and m.status = 'pending'
       for update of m skip locked
  )
  update campaign_messages m
     set status = 'skipped', error_message = 'cancelled', updated_at = now()
    from free
   where m.id = free.id;
  get diagnostics v_count = row_count;
  begin
    perform log_campaign_step(p_run_id, 'cancel', 'warning',
                              format('run cancelled: %s pending message(s) skipped', v_count),
                              null, null, null);
  exception when others then
    raise warning 'campaign_logs entry for cancelled run % not written: %', p_run_id, sqlerrm;
  end;
  return cq_run_answer(p_run_id, true, null, v_status, 'cancelled', v_count);
end;
$$;


-- A message coming back to pending (given back by its worker, or a retry scheduled) in a
-- cancelled run is skipped as 'cancelled' instead: nothing of a cancelled run stays pending.
create or replace function cq_skip_cancelled_message()
returns trigger
language plpgsql security definer set search_path = public
as $$
begin
  if exists (select 1 from campaign_runs where id = new.run_id and status = 'cancelled') then
    new.status := 'skipped';
    new.error_message := 'cancelled';
    new.lock_token := null;
    new.locked_at := null;
    new.claimed_by := null;
  end if;
  return new;
end;
$$;

-- Replaced, not dropped, under the writers' lock taken first (as 009_message_counts.sql does):
-- a drop would raise the lock to access exclusive, which deadlocks with a writer's read.
do $$
begin
  lock table campaign_messages in share row exclusive mode;
  create or replace trigger campaign_messages_skip_cancelled
    before update of status on campaign_messages
    for each row
    when (new.status = 'pending' and old.status in ('queued', 'generating', 'sending'))
    execute function cq_skip_cancelled_message();
end
$$;


-- What a cancel left pending (it takes its run's messages with skip locked: one held at that
-- instant by a claim's pick that then rolled back, or given back by a transaction that read
-- the run before the cancel committed), skipped as 'cancelled' by each call's tidy
-- (tidy_campaign_queue, 012_runs.sql): nothing of a cancelled run stays pending. Runs
-- cancelled in the last 7 days (idx_campaign_runs_ended, 055), their pending messages by
-- idx_campaign_messages_run_status; taken with skip locked, and no run locked (the lock order).
create or replace function cq_skip_cancelled_leftovers(p_limit int default 500)
returns int
language plpgsql security definer set search_path = public
as $$
declare
  v_count int;
begin
  -- Read first: with nothing left over, no write lock on campaign_messages at all.
  if not exists (select 1
                   from campaign_runs r
                   join campaign_messages p on p.run_id = r.id and p.status = 'pending'
                  where r.status = 'cancelled'
                    and coalesce(r.completed_at, r.started_at) > now() - interval '7 days') then
    return 0;
  end if;
  update campaign_messages m
     set status = 'skipped', error_message = 'cancelled', updated_at = now()
   where m.id in (select p.id
                    from campaign_runs r
                    join campaign_messages p on p.run_id = r.id and p.status = 'pending'
                   where r.status = 'cancelled'
                     and coalesce(r.completed_at, r.started_at) > now() - interval '7 days'
                   limit p_limit
                   for update of p skip locked)
     and m.status = 'pending';
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;


-- Failed messages back to pending, as requeue_failed_campaign_messages does (012_runs.sql),
-- all of them or those of one reason group: the reason as the status groups failures
-- (cq_failure_reason, 020_status.sql), e.g. 'send failed: HTTP 500'.
create or replace function requeue_campaign_run_failures(p_run_id uuid, p_reason text default null)
returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_status text;
  v_count int;
begin
  select status into v_status from campaign_runs where id = p_run_id for update;
  if not found then
    return cq_run_answer(p_run_id, false, 'run_not_found', null, null, 0);
  end if;
  if v_status = 'cancelled' then
    return cq_run_answer(p_run_id, false, 'run_cancelled', v_status, v_status, 0);
  end if;
  v_count := cq_requeue_failed(p_run_id, p_reason);  -- 012_runs.sql
  if v_count = 0 then
    return cq_run_answer(p_run_id, false, 'nothing_to_requeue', v_status, v_status, 0);
  end if;
  return cq_run_answer(p_run_id, true, null, v_status,
                       case when v_status in ('completed', 'failed') then 'running'
                            else v_status end,
                       v_count);
end;
$$;
