-- The operators' overrides of an inbox's pacing (campaign_inbox_pacing, 016_pacing.sql): the
-- zone of the inbox's calendar day, and the values refused when written.

-- The zone of an inbox's calendar day (the one its daily cap counts): its row's timezone when
-- Postgres knows it, else the service's INBOX_TIMEZONE when it knows that, else the product's
-- default. Whatever the zones of the campaigns sharing the inbox.
create or replace function cq_inbox_timezone(p_override text, p_setting text)
returns text
language sql stable security definer set search_path = public
as $$
  select case when cq_valid_timezone(p_override) = p_override then p_override
              else cq_valid_timezone(p_setting) end;
$$;


-- Invalid overrides are refused when written, by constraints named after the column and the
-- rule (a violation's error names them): negative, NaN or infinite gaps, a max below the
-- min, a negative cap, a zone Postgres does not know. They replace the first checks (>= 0
-- only: NaN and Infinity passed them).
alter table campaign_inbox_pacing drop constraint if exists campaign_inbox_pacing_min_gap_s_check;
alter table campaign_inbox_pacing drop constraint if exists campaign_inbox_pacing_max_gap_s_check;
alter table campaign_inbox_pacing drop constraint if exists campaign_inbox_pacing_daily_cap_check;

-- Rows written before (say a NaN) must not fail the upgrade: each constraint is added not
-- valid (enforced on every insert and update from now on), then validated; while some old
-- row breaks it, it stays not valid, a notice names it, and the functions read such a row as
-- unset (cq_inbox_limits, the claim's pick, the status). Fix the rows, apply again: validated.
-- Used by every migration that adds an override's rule (here, 040_inbox_hold.sql).
create or replace function cq_check_overrides(p_name text, p_rule text)
returns void
language plpgsql set search_path = public
as $$
begin
  if not exists (select 1 from pg_constraint
                  where conrelid = 'campaign_inbox_pacing'::regclass and conname = p_name) then
    execute format('alter table campaign_inbox_pacing add constraint %I check (%s) not valid',
                   p_name, p_rule);
  end if;
  if exists (select 1 from pg_constraint
              where conrelid = 'campaign_inbox_pacing'::regclass
                and conname = p_name and not convalidated) then
    begin
      execute format('alter table campaign_inbox_pacing validate constraint %I', p_name);
    exception when check_violation then
      raise notice 'campaign_inbox_pacing: rows written before break "%"; they are read as '
                   'unset until fixed', p_name;
    end;
  end if;
end;
$$;

do $$
declare
  v_check record;
begin
  for v_check in
    select * from (values
      ('min_gap_s: null or a finite number of seconds >= 0',
       'min_gap_s is null or (min_gap_s >= 0 and min_gap_s < ''Infinity'')'),
      ('max_gap_s: null or a finite number of seconds >= 0',
       'max_gap_s is null or (max_gap_s >= 0 and max_gap_s < ''Infinity'')'),
      ('max_gap_s: not below min_gap_s',
       'max_gap_s is null or min_gap_s is null or max_gap_s >= min_gap_s'),
      ('daily_cap: null or a whole number >= 0',
       'daily_cap is null or daily_cap >= 0'),
      ('timezone: null or a time zone Postgres knows',
       'timezone is null or cq_valid_timezone(timezone) = timezone')
    ) c(name, rule)
  loop
    perform cq_check_overrides(v_check.name, v_check.rule);
  end loop;
end
$$;
