-- The status's skipped: [{reason, count}]: messages skipped in the 24 hours before p_now
-- (their updated_at), by reason (error_message grouped by cause: 'opted out', 'replied',
-- 'lead not found', the late skip's ...), the 20 most frequent; all runs, or the one
-- p_run_id names.
-- Read by idx_campaign_messages_skipped_at (all runs) or idx_campaign_messages_run_status.

do $$
begin
  if to_regclass('idx_campaign_messages_skipped_at') is null then
    create index idx_campaign_messages_skipped_at
      on campaign_messages (updated_at) where status = 'skipped';
  end if;
end
$$;

create or replace function cq_status_skipped(p_now timestamptz, p_run_id uuid default null)
returns jsonb
language sql stable security definer set search_path = public
as $$
  -- Grouped by cause (cq_failure_reason, 020: the late skip names its horizon, a different
  -- instant every call), normalising distinct texts, not rows: at most 500 of them, the rest
  -- counted under their own text.
  select coalesce(jsonb_agg(jsonb_build_object('reason', s.reason, 'count', s.n)
                            order by s.n desc, s.reason), '[]'::jsonb)
    from (select t.reason, sum(t.n)::bigint as n
            from (select case when row_number() over (order by d.n desc, d.text) <= 500
                              then cq_failure_reason(d.text) else d.text end as reason,
                         d.n
                    from (select coalesce(m.error_message, 'skipped') as text, count(*) as n
                            from campaign_messages m
                           where m.status = 'skipped'
                             and m.updated_at >= p_now - interval '24 hours'
                             and (p_run_id is null or m.run_id = p_run_id)
                           group by 1) d) t
           group by 1
           order by 2 desc, 1
           limit 20) s;
$$;
