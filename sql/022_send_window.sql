-- The send window in SQL: a campaign sends only between start_time and end_time, in its
-- timezone (app/processing/window.py has the same rule; the service checks it again before a
-- message starts). A window whose end is before its start runs overnight (22:00-06:00); equal
-- bounds, or a missing one, mean no window. An unknown zone counts as the product's default.
--
-- The claim leaves the runs whose window is closed alone (018_fair_claim.sql): claimed only to
-- be given back, they would churn and their backlog would look unserved. Lateness counts only
-- time in which the window was open (cq_open_horizon): a backlog waiting overnight is not late
-- in the morning.


-- Whether the window is open at an instant (true when there is none).
create or replace function cq_window_open(
  p_start time, p_end time, p_timezone text, p_at timestamptz
) returns boolean
language sql stable set search_path = public
as $$
  select case
    when p_start is null or p_end is null or p_start = p_end then true
    else (select case when p_start < p_end then t >= p_start and t < p_end
                      else t >= p_start or t < p_end end
            from (select (p_at at time zone cq_valid_timezone(p_timezone))::time as t) l)
  end;
$$;


-- When a closed window next opens, strictly after p_at; null when it is open (or there is
-- none). A start time a daylight-saving jump skips opens when Postgres places it (after the
-- jump); the service's own check (window.py) stays the safety net for such instants.
create or replace function cq_window_opening(
  p_start time, p_end time, p_timezone text, p_at timestamptz
) returns timestamptz
language plpgsql stable set search_path = public
as $$
declare
  v_tz text;
  v_day date;
  v_opening timestamptz;
begin
  if cq_window_open(p_start, p_end, p_timezone, p_at) then
    return null;
  end if;
  v_tz := cq_valid_timezone(p_timezone);
  v_day := (p_at at time zone v_tz)::date;
  for k in 0 .. 2 loop
    v_opening := (v_day + k + p_start) at time zone v_tz;
    if v_opening > p_at then
      return v_opening;
    end if;
  end loop;
  return p_at + interval '1 hour';  -- unreachable for real zones; never an opening in the past
end;
$$;


-- The lateness horizon of a run with its window's closed time not counted: walking back from
-- p_at, count only time inside the window until as much as p_at - p_horizon has been counted;
-- the instant reached is the horizon. Without a window it is p_horizon. Bounded: a window so
-- short that a year does not hold the horizon's length makes nothing late (-infinity).
create or replace function cq_open_horizon(
  p_start time, p_end time, p_timezone text, p_at timestamptz, p_horizon timestamptz
) returns timestamptz
language plpgsql stable set search_path = public
as $$
declare
  v_need double precision := extract(epoch from p_at - p_horizon);  -- seconds still to count
  v_tz text;
  v_day date;
  v_from timestamptz;
  v_to timestamptz;
  v_open double precision;
begin
  if p_horizon is null or v_need <= 0 or p_start is null or p_end is null
     or p_start = p_end then
    return p_horizon;
  end if;
  v_tz := cq_valid_timezone(p_timezone);
  v_day := (p_at at time zone v_tz)::date;
  -- Each day's opening, newest first (an overnight window ends the next day).
  for k in 0 .. 366 loop
    v_from := (v_day - k + p_start) at time zone v_tz;
    v_to := least((v_day - k + case when p_start < p_end then 0 else 1 end + p_end)
                  at time zone v_tz, p_at);
    if v_to > v_from then
      v_open := extract(epoch from v_to - v_from);
      if v_open >= v_need then
        return v_to - make_interval(secs => v_need);
      end if;
      v_need := v_need - v_open;
    end if;
  end loop;
  return '-infinity';
end;
$$;
