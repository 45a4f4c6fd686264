-- campaign_logs in bulk, through the product's log_campaign_step.

create or replace function log_campaign_steps(p_entries jsonb)
returns integer
language plpgsql security definer set search_path = public
as $$
declare
  -- Batches still to write. An entry the product's log_campaign_step rejects (a CHECK of its
  -- own, a value that is not a uuid) must not drop the others: a batch that fails is rolled
  -- back alone and tried again as two halves, down to single entries, and only a single
  -- entry that fails is given up (with a warning). A batch of good entries costs one
  -- subtransaction, not one per entry (many per transaction overflow Postgres's subxid cache).
  v_batches jsonb[];
  v_batch jsonb;
  v_half int;
  v_count int := 0;
  i int := 1;
begin
  if jsonb_typeof(p_entries) is distinct from 'array' then
    return 0;
  end if;
  -- Elements that are not objects are not log entries: skipped.
  v_batches := array[(select coalesce(jsonb_agg(e order by n), '[]'::jsonb)
                        from jsonb_array_elements(p_entries) with ordinality x(e, n)
                       where jsonb_typeof(e) = 'object')];
  while i <= cardinality(v_batches) loop
    v_batch := v_batches[i];
    begin
      perform log_campaign_step(
        p_run_id => (e ->> 'run_id')::uuid,
        p_step_name => coalesce(e ->> 'step_name', e ->> 'step', 'log'),
        p_level => coalesce(e ->> 'level', 'info'),
        p_message => e ->> 'message',
        -- details that are not an object are kept inside one: a log line is worth more
        -- than the shape of its details, and the product may insist on an object.
        p_details => case when jsonb_typeof(e -> 'details') = 'object' then e -> 'details'
                          when jsonb_typeof(e -> 'details') in ('array', 'string', 'number',
                                                                 'boolean')
                            then jsonb_build_object('value', e -> 'details') end,
        p_lead_id => (e ->> 'lead_id')::uuid,
        p_message_id => (e ->> 'message_id')::uuid)
      from jsonb_array_elements(v_batch) e;
      v_count := v_count + jsonb_array_length(v_batch);
    exception when others then
      if jsonb_array_length(v_batch) > 1 then
        v_half := jsonb_array_length(v_batch) / 2;
        v_batches := v_batches
          || (select coalesce(jsonb_agg(e order by n), '[]'::jsonb)
                from jsonb_array_elements(v_batch) with ordinality x(e, n) where n <= v_half)
          || (select coalesce(jsonb_agg(e order by n), '[]'::jsonb)
                from jsonb_array_elements(v_batch) with ordinality x(e, n) where n > v_half);
      else
        raise warning 'log_campaign_steps: entry not written (%): %',
          sqlerrm, left(v_batch ->> 0, 500);
      end if;
    end;
    i := i + 1;
  end loop;
  return v_count;
end;
$$;
