"""The send window: a campaign sends only between start_time and end_time, in its timezone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "America/Sao_Paulo"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def next_opening(
    now: datetime, start: time | None, end: time | None, timezone: str | None
) -> datetime | None:
    """None when `now` is inside the window (or there is none); else when it next opens (UTC).

    A window whose end is before its start runs overnight (22:00-06:00). Equal start and end,
    or a missing bound, means no window.
    """
    if start is None or end is None or start == end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if inside:
        return None
    day = local.date()
    if t >= start:  # past today's opening (and outside): it opens again tomorrow
        day += timedelta(days=1)
    return datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
