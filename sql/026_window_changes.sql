-- When a campaign's send window last changed (docs/architecture.md, "Pacing": what counts as
-- late). A backlog is late only for open-window time, and the past is read through the
-- window as it is now: an operator who opens a closed window by editing it (clearing it, or
-- moving its start earlier) would turn the closed night behind the backlog into open time, and
-- the next call would skip it all as late. So a change is recorded, and no open time before it
-- counts: until the skip horizon's worth of open time has passed since the change, nothing of
-- that campaign is late (cq_horizon_since, applied by the claim, next start and the skip).

alter table campaign_configs add column if not exists window_changed_at timestamptz;

create or replace function cq_note_window_change()
returns trigger
language plpgsql set search_path = public
as $$
begin
  if (new.start_time, new.end_time, new.timezone)
     is distinct from (old.start_time, old.end_time, old.timezone) then
    new.window_changed_at := now();
  end if;
  return new;
end;
$$;

-- Only the window's own columns fire it; it writes nothing but the row being updated.
create or replace trigger campaign_configs_window_changed
  before update of start_time, end_time, timezone on campaign_configs
  for each row execute function cq_note_window_change();

-- A horizon that does not reach back past a window's change: none (nothing late) until it
-- does. Null p_since (never changed) keeps the horizon.
create or replace function cq_horizon_since(p_horizon timestamptz, p_since timestamptz)
returns timestamptz
language sql immutable
as $$
  select case when p_since > p_horizon then '-infinity'::timestamptz else p_horizon end;
$$;
