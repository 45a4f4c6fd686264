-- campaign-queue: Supabase calls POST /process-queue every minute itself (pg_cron + pg_net).
--
-- A template, not a migration: `python -m app migrate` never applies it (it is not in sql/).
-- Run it once in the project's SQL editor (or psql), after storing two secrets in Vault:
--
--   select vault.create_secret('https://<the service host>', 'campaign_queue_url');
--   select vault.create_secret('<the service CRON_SECRET>', 'campaign_queue_cron_secret');
--
-- (to change one later: select vault.update_secret(
--    (select id from vault.secrets where name = 'campaign_queue_cron_secret'), '<new>'); )
-- The job reads both at every run from vault.decrypted_secrets, so no secret is written in
-- the job or in this file.
--
-- The job is named campaign-queue-process, a name of our own: the edge function's job is
-- usually named campaign-process-queue, and cron.schedule with a name that exists replaces
-- that job without a word. Before scheduling, this file refuses (an error, nothing changed)
-- while a job still calls the edge function (named campaign-process-queue, or calling
-- /functions/v1/campaign-process-queue), or while a job of another command holds our name:
-- never run the edge function and this service against the same runs (README, "Switching
-- over from the edge function"). Running this file again updates our own job.
--
-- pg_net gives up waiting for the answer after 5 s (timeout_milliseconds, kept at its default
-- here) and records a timeout in net._http_response. That is fine: the service finishes a
-- call's work when its caller hangs up, and records all it started. On Cloud Run such a call
-- keeps its CPU only with CPU always allocated: deploy with --no-cpu-throttling. How long a
-- call lasts, and the timeout to set to see each call's status: deploy/README.md, "How long
-- a call lasts".
--
-- The service must accept the shared secret from the internet: Cloud Run with
-- --allow-unauthenticated (pg_net cannot send Google's OIDC token), or Fly.io.
--
-- Watch it:
--   select jobid, status, return_message, start_time from cron.job_run_details
--    where jobid = (select jobid from cron.job where jobname = 'campaign-queue-process')
--    order by start_time desc limit 10;
--   select created, status_code, timed_out, error_msg, left(content, 300) from net._http_response
--    order by created desc limit 10;
-- Stop it:
--   select cron.unschedule('campaign-queue-process');

create extension if not exists pg_cron;
create extension if not exists pg_net;

-- The checks and the schedule are one statement: run with psql (which goes on after an
-- error), a refusal still schedules nothing.
do $schedule$
declare
  v_job record;
begin
  select j.jobid, j.jobname into v_job from cron.job j
   where j.jobname = 'campaign-process-queue'
      or j.command ilike '%/functions/v1/campaign-process-queue%'
   order by j.jobid
   limit 1;
  if found then
    raise exception 'the edge function''s job % (jobid %) is still scheduled: unschedule it '
                    'first with  select cron.unschedule(%);  then run this file again',
        coalesce(v_job.jobname, '(no name)'), v_job.jobid,
        coalesce(quote_literal(v_job.jobname), v_job.jobid::text)
      using hint = 'Never run the edge function and this service against the same runs '
                   || '(README, "Switching over from the edge function").';
  end if;

  select j.jobid, j.jobname into v_job from cron.job j
   where j.jobname = 'campaign-queue-process'
     and j.command not like '%campaign_queue_cron_secret%';
  if found then
    raise exception 'a job named campaign-queue-process (jobid %) runs another command: '
                    'it is not this template''s; rename or unschedule it, then run this file '
                    'again', v_job.jobid;
  end if;

  perform cron.schedule(
    'campaign-queue-process',
    '* * * * *',
    $job$
    select net.http_post(
      url := rtrim(
        (select decrypted_secret from vault.decrypted_secrets where name = 'campaign_queue_url'),
        '/'
      ) || '/process-queue',
      headers := jsonb_build_object(
        'Content-Type', 'application/json',
        'Authorization', 'Bearer ' || (
          select decrypted_secret from vault.decrypted_secrets
          where name = 'campaign_queue_cron_secret'
        )
      ),
      body := '{}'::jsonb,
      timeout_milliseconds := 5000
    );
    $job$
  );
  raise notice 'scheduled campaign-queue-process: * * * * *';
end
$schedule$;
