-- The status's ETA (docs/architecture.md, "Status"): when an inbox's k-th next first part goes,
-- counting number health's holds as the claim and take_inbox_slot would. The rules are 040's
-- (040_inbox_hold.sql), not written out again here: the hold in force now and its end, today's
-- cap, warm-up day and hourly cap come from cq_inbox_hold (the status calls it once an inbox
-- and passes them); a later day's cap is cq_inbox_hold's day_cap on that day; each projected
-- slot of the hour waits for cq_hourly_hold_until over the slots before it.
--
-- An estimate with the mean gap, not a schedule:
-- - the first slot is at p_start_at: the inbox's next slot, or the end of its hold (a brake,
--   the daily or the hourly cap) when later; nothing goes before it;
-- - then one a mean gap, or, when the hourly cap is tighter than the gap (hourly_cap * gap
--   under an hour), at most hourly_cap an hour: today's first hourly_cap slots are projected
--   one by one over the hour's slots already taken (hour_slots), each later one goes an hour
--   after the one hourly_cap before it;
-- - today's cap (a warm-up's, during one) leaves cap - sent_today; the rest go from each next
--   local midnight, a day's cap at a time (a warm-up's growing cap on its days; with an hourly
--   cap, at most 24 hours' worth a day), at the same pace from midnight. Today's share is not
--   cut at midnight: a share the hourly cap spreads past midnight makes the estimate early.
-- Days wholly inside the hold (a brake past midnight) send nothing.
create or replace function cq_status_eta_s(
  p_k bigint,                 -- the inbox's k-th next first part (1: the next one)
  p_now timestamptz,
  p_start_at timestamptz,     -- its next slot, holds counted (null: now)
  p_gap numeric,              -- the mean gap, seconds
  p_cap int,                  -- the daily cap in force (0: none)
  p_sent_today int,           -- first parts counted today
  p_to_midnight_s numeric,    -- seconds to the next local midnight of the cap's day
  p_today_cap int,            -- cq_inbox_hold's now: day_cap, warmup_day, hourly_cap
  p_warmup_day int,
  p_hourly_cap_now int,
  p_inbox_id uuid,
  p_state campaign_inbox_pacing_state,  -- the inbox's state and overrides (null: none)
  p_row campaign_inbox_pacing,
  p_warmup_days int,          -- the service's settings, as cq_inbox_hold takes them (for
                              -- a later day's cap)
  p_warmup_start_cap int,
  p_hourly_cap int
) returns numeric
language plpgsql stable set search_path = public
as $$
declare
  v_start numeric := greatest(coalesce(extract(epoch from p_start_at - p_now), 0), 0);
  v_hourly boolean;
  v_hourly_cap int;
  v_first numeric[] := '{}';  -- today's first slots while the hourly cap paces, seconds from now
  v_slots timestamptz[];
  v_at timestamptz;
  v_room bigint;
  v_rest bigint;
  v_day bigint;
  v_day_start numeric;
  v_day_cap bigint;
  v_full_cap bigint;          -- a day's cap past the warm-up
  v_state campaign_inbox_pacing_state := p_state;
begin
  if p_k is null or p_k < 1 then
    return 0;
  end if;
  v_hourly_cap := coalesce(p_hourly_cap_now, 0);
  v_hourly := v_hourly_cap > 0 and v_hourly_cap * p_gap < 3600;
  v_full_cap := p_cap;
  if v_hourly then
    v_full_cap := least(p_cap, 24 * v_hourly_cap);
  end if;
  if p_cap > 0 then
    v_room := case when v_start < p_to_midnight_s
                   then greatest(p_today_cap - coalesce(p_sent_today, 0), 0) else 0 end;
  end if;

  if v_room is null or p_k <= v_room then  -- it goes today (or there is no daily cap)
    if not v_hourly then
      return v_start + (p_k - 1) * p_gap;
    end if;
    v_slots := coalesce(p_state.hour_slots, '{}');
    v_at := p_now + make_interval(secs => v_start::double precision);
    for i in 1 .. least(v_hourly_cap, p_k) loop
      v_at := greatest(v_at, cq_hourly_hold_until(v_slots, v_hourly_cap));
      v_slots := v_slots || v_at;
      v_first := v_first || extract(epoch from v_at - p_now);
      v_at := v_at + make_interval(secs => p_gap::double precision);
    end loop;
    return v_first[(p_k - 1) % v_hourly_cap + 1] + (p_k - 1) / v_hourly_cap * 3600;
  end if;

  -- The rest from the next midnights: the first day that ends after the hold.
  v_rest := p_k - v_room;
  v_day := greatest(floor((v_start - p_to_midnight_s) / 86400) + 1, 1);
  if p_warmup_day is not null then  -- the warm-up's day 0 is today when nothing went yet
    v_state.inbox_id := p_inbox_id;
    v_state.first_sent_day := coalesce(p_state.first_sent_day,
                                       cq_local_date(p_state.day_timezone, p_now));
  end if;
  loop
    v_day_start := p_to_midnight_s + (v_day - 1) * 86400;
    v_day_cap := p_cap;
    if p_warmup_day is not null then  -- that day's cap, read at its midday
      v_day_cap := (cq_inbox_hold(
        v_state, p_row, p_cap, p_warmup_days, p_warmup_start_cap, p_hourly_cap,
        p_now + make_interval(secs => (v_day_start + 43200)::double precision))).day_cap;
    end if;
    if v_hourly then
      v_day_cap := least(v_day_cap, 24 * v_hourly_cap);
    end if;
    if v_day_cap >= v_full_cap or v_day > 4000 then
      -- past the warm-up: a day's cap every day from here
      v_day := v_day + (v_rest - 1) / v_day_cap;
      v_rest := (v_rest - 1) % v_day_cap + 1;
      v_day_start := p_to_midnight_s + (v_day - 1) * 86400;
    end if;
    if v_rest <= v_day_cap then
      return greatest(v_day_start, v_start) + case
        when v_hourly then (v_rest - 1) % v_hourly_cap * p_gap
                           + (v_rest - 1) / v_hourly_cap * 3600
        else (v_rest - 1) * p_gap end;
    end if;
    v_rest := v_rest - v_day_cap;
    v_day := v_day + 1;
  end loop;
end;
$$;
