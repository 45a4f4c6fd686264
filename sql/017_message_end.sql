-- A claimed message's end other than delivery (011_message_life.sql), fenced on (id,
-- lock_token): fail (3 retries at +5/+15/+30 minutes, then failed) or skip.
--
-- A message that ends (sent, failed for good, skipped) as the last unfinished one of its
-- running run completes the run in the same transaction: a process that dies before its
-- finalize_campaign_runs leaves no run running with nothing left. A retry (back to pending)
-- leaves the run alone. Each ending calls finalize_campaign_runs for its run, which locks the
-- run row (running only: a paused, cancelled or failed run is left as it is) and then checks
-- its messages in a new statement, so it sees every end committed while it waited: of two
-- last messages ending at once, the one that gets the run row second completes the run.
--
-- Lock order: the message row, then its inbox's send record (043_failure_brake.sql: a send
-- that trips the brake locks the inbox's pacing state next), then (mark_message_part_sent)
-- its lead and conversation, then the run row last; holding the run row, an ending waits on nothing else (finalize reads the
-- messages, it locks none). A deadlock would need a transaction holding the run row and
-- waiting on the message being ended, and none does: holding a run, every function takes its
-- messages with skip locked (the requeues, resume_campaign_run, cancel_campaign_run, the skip
-- of late messages, the claim; a message pending in their snapshot may have been claimed and
-- be being ended since, and read committed would wait on its newest version's holder); the claim's
-- stale-lease step takes messages, then runs (the order here; after its
-- first round, runs with skip locked: the lock order of 012_runs.sql);
-- finalize_campaign_runs and pause_campaign_run lock runs only. (Each call its own
-- transaction, as the service makes them: ending messages of two runs in one transaction
-- would hold a run while waiting on a message.)

create or replace function fail_campaign_message(
  p_message_id uuid,
  p_lock_token uuid,
  p_error text,
  p_retryable boolean default true,
  -- The failure brake (043_failure_brake.sql): the send endpoint's HTTP status when it is what
  -- failed this attempt (null: the model, the database, the network), and the service's
  -- INBOX_BRAKE_FAILURES and INBOX_BRAKE_HOURS.
  p_send_status int default null,
  p_brake_failures int default null,
  p_brake_hours real default null
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_msg campaign_messages;
  v_next timestamptz;
  v_retries int;
  v_delays constant int[] := array[5, 15, 30];  -- minutes before retry 1, 2 and 3
  v_brake jsonb;
begin
  select * into v_msg from campaign_messages
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
   for update;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost', 'status', null,
                              'retry_count', null, 'next_attempt_at', null);
  end if;
  if v_msg.parts_sent = 0 then  -- a part delivered already recorded this attempt's send
    v_brake := cq_record_inbox_send(v_msg.run_id, p_send_status, p_error, p_brake_failures,
                                    p_brake_hours);
  end if;

  v_retries := greatest(v_msg.retry_count, 0);  -- a negative count (set by hand) counts as 0
  if coalesce(p_retryable, true) and v_retries < cardinality(v_delays) then
    v_next := now() + make_interval(mins => v_delays[v_retries + 1]);
    update campaign_messages
       set status = 'pending', retry_count = v_retries + 1, scheduled_at = v_next,
           error_message = left(coalesce(p_error, 'unknown error'), 2000),
           lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
     where id = p_message_id;
    return jsonb_build_object('ok', true, 'reason', null, 'status', 'pending',
                              'retry_count', v_retries + 1, 'next_attempt_at', v_next,
                              'brake', v_brake);
  end if;

  update campaign_messages
     set status = 'failed', error_message = left(coalesce(p_error, 'unknown error'), 2000),
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
   where id = p_message_id;
  update campaign_runs set leads_failed = leads_failed + 1 where id = v_msg.run_id;
  perform finalize_campaign_runs(array[v_msg.run_id]);  -- its last unfinished message?
  return jsonb_build_object('ok', true, 'reason', null, 'status', 'failed',
                            'retry_count', v_msg.retry_count, 'next_attempt_at', null,
                            'brake', v_brake);
end;
$$;


create or replace function skip_campaign_message(
  p_message_id uuid,
  p_lock_token uuid,
  p_reason text
) returns jsonb
language plpgsql security definer set search_path = public
as $$
declare
  v_run uuid;
begin
  update campaign_messages
     set status = 'skipped', error_message = left(coalesce(p_reason, 'skipped'), 2000),
         lock_token = null, locked_at = null, claimed_by = null, updated_at = now()
   where id = p_message_id and lock_token = p_lock_token
     and status in ('queued', 'generating', 'sending')
  returning run_id into v_run;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'lock_lost');
  end if;
  perform finalize_campaign_runs(array[v_run]);  -- its last unfinished message?
  return jsonb_build_object('ok', true, 'reason', null);
end;
$$;
