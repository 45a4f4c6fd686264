"""The send window: a campaign sends only between start_time and end_time, in its timezone,
or with lead-local hours (LEAD_LOCAL_WINDOW) in the lead's own zone, from the phone number."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

DEFAULT_TIMEZONE = "America/Sao_Paulo"


def utc_now() -> datetime:
    """The one clock the processing code reads: the skip horizon and the send window."""
    return datetime.now(UTC)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def lead_timezone(phone: str | None) -> str | None:
    """The zone of an international number (+country...) that maps to exactly one zone; None
    for anything else (no '+', a national number, unparseable, several zones, unknown), so
    the caller reads the window in the campaign's zone. Never raises."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not phone.lstrip().startswith("+") or not 8 <= len(digits) <= 15:
        return None
    return _zone_of_digits(digits)


@lru_cache(maxsize=16384)
def _zone_of_digits(digits: str) -> str | None:
    # Parsing costs tens of microseconds; a bounded cache keeps a repeated number free.
    try:
        number = phonenumbers.parse("+" + digits, None)
        zones = phone_timezones.time_zones_for_number(number)
    except Exception:  # the library's parse errors, and anything a malformed number trips
        return None
    if len(zones) != 1 or zones[0] == phone_timezones.UNKNOWN_TIMEZONE:
        return None
    try:
        ZoneInfo(zones[0])
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return zones[0]


def window_timezone(
    phone: str | None, campaign_timezone: str | None, lead_local: bool
) -> str | None:
    """The zone a message's send window is read in: the lead's own when lead-local hours are
    on and the number tells it, else the campaign's."""
    return (lead_timezone(phone) if lead_local else None) or campaign_timezone


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
