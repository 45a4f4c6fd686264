"""The send window: a campaign sends only between start_time and end_time, in its timezone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "America/Sao_Paulo"


def utc_now() -> datetime:
    """The one clock the processing code reads: the skip horizon and the send window."""
    return datetime.now(UTC)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def _inside(instant: datetime, start: time, end: time, tz: ZoneInfo) -> bool:
    t = instant.astimezone(tz).time().replace(tzinfo=None)
    return start <= t < end if start < end else (t >= start or t < end)


def next_opening(
    now: datetime, start: time | None, end: time | None, timezone: str | None
) -> datetime | None:
    """None when `now` is inside the window (or there is none); else when it next opens (UTC).

    A window whose end is before its start runs overnight (22:00-06:00). Equal start and end,
    or a missing bound, means no window. The opening is always strictly after `now`, also on
    daylight-saving days: a start time that happens twice (fall back) is tried at both
    instants, one that does not happen (spring forward) opens when the clock jumps past it.
    """
    if start is None or end is None or start == end:
        return None
    tz = zone(timezone)
    if _inside(now, start, end, tz):
        return None
    today = now.astimezone(tz).date()
    candidates = sorted(
        datetime.combine(today + timedelta(days=offset), start, tzinfo=tz)
        .replace(fold=fold)
        .astimezone(UTC)
        for offset in range(-1, 3)
        for fold in (0, 1)
    )
    for candidate in candidates:
        if candidate > now and _inside(candidate, start, end, tz):
            return candidate
    return now + timedelta(hours=1)  # unreachable for real zones; never an opening in the past
