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
-- the job or in this file. Running this file again is safe: cron.schedule with an existing
-- job name updates that job.
--
-- pg_net gives up waiting for the answer after 5 s (its default timeout_milliseconds) and
-- records a timeout in net._http_response. That is fine: the service finishes a call's work
-- when its caller hangs up, and records all it started. On Cloud Run such a call keeps its
-- CPU only with CPU always allocated: deploy with --no-cpu-throttling. To see every call's
-- status in net._http_response (a 502 when a key or credit ran out), raise
-- timeout_milliseconds above a call's length, e.g. 90000.
--
-- The service must accept the shared secret from the internet: Cloud Run with
-- --allow-unauthenticated (pg_net cannot send Google's OIDC token), or Fly.io.
--
-- Watch it:
--   select jobid, status, return_message, start_time from cron.job_run_details
--    where jobid = (select jobid from cron.job where jobname = 'campaign-process-queue')
--    order by start_time desc limit 10;
--   select created, status_code, timed_out, error_msg, left(content, 300) from net._http_response
--    order by created desc limit 10;
-- Stop it:
--   select cron.unschedule('campaign-process-queue');

create extension if not exists pg_cron;
create extension if not exists pg_net;

select cron.schedule(
  'campaign-process-queue',
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
