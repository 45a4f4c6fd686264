-- Functions the rest of the product owns. They are created here only where they do not exist
-- yet (a local database, the tests); an existing definition is never replaced.

do $outer$
begin
  if to_regprocedure('public.check_campaign_instance_status(uuid)') is null then
    execute $f$
      create function public.check_campaign_instance_status(p_inbox_id uuid)
      returns jsonb
      language sql stable security definer set search_path = public
      as $body$
        select coalesce(
          (select jsonb_build_object('connected', i.status = 'connected',
                                     'status', i.status,
                                     'instance_name', i.name)
             from inboxes i where i.id = p_inbox_id),
          jsonb_build_object('connected', false, 'status', 'not_found', 'instance_name', null))
      $body$
    $f$;
  end if;

  if to_regprocedure('public.log_campaign_step(uuid,text,text,text,jsonb,uuid,uuid)') is null then
    execute $f$
      create function public.log_campaign_step(
        p_run_id uuid, p_step_name text, p_level text, p_message text,
        p_details jsonb default null, p_lead_id uuid default null, p_message_id uuid default null)
      returns void
      language sql security definer set search_path = public
      as $body$
        insert into campaign_logs (run_id, lead_id, message_id, step_name, level, message, details)
        values (p_run_id, p_lead_id, p_message_id, p_step_name, coalesce(p_level, 'info'),
                p_message, p_details)
      $body$
    $f$;
  end if;
end
$outer$;
