"""The send window in the campaign's timezone (pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.processing.window import lead_timezone, next_opening, window_timezone


def at(hour: int, minute: int = 0) -> datetime:
    # 2026-11-25 in São Paulo is UTC-3 (no daylight saving time since 2019).
    return datetime(2026, 11, 25, 3, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def test_inside_a_day_window() -> None:
    assert next_opening(at(10), time(9), time(18), "America/Sao_Paulo") is None


def test_before_and_after_a_day_window() -> None:
    assert next_opening(at(8), time(9), time(18), "America/Sao_Paulo") == at(9)
    assert next_opening(at(18), time(9), time(18), "America/Sao_Paulo") == datetime(
        2026, 11, 26, 12, tzinfo=UTC
    )


def test_overnight_window() -> None:
    assert next_opening(at(23), time(22), time(6), "America/Sao_Paulo") is None
    assert next_opening(at(5, 59), time(22), time(6), "America/Sao_Paulo") is None
    assert next_opening(at(6), time(22), time(6), "America/Sao_Paulo") == at(22)


def test_no_window_and_bad_timezone() -> None:
    assert next_opening(at(3), None, time(6), "America/Sao_Paulo") is None
    assert next_opening(at(3), time(6), time(6), "America/Sao_Paulo") is None
    assert next_opening(at(8), time(9), time(18), "Not/AZone") == at(9)  # falls back to SP


def test_the_opening_is_in_the_future_on_the_fall_back_day() -> None:
    # New York falls back on 2026-11-01: 01:00-02:00 local happens twice (EDT, then EST).
    # At 01:10 EST (the second pass) a 01:30 window opens at 01:30 EST, not at 01:30 EDT,
    # which was an hour ago.
    now = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST
    opening = next_opening(now, time(1, 30), time(1, 45), "America/New_York")
    assert opening == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def _transition_days(zone_name: str, year: int) -> list[datetime]:
    """The UTC midnights of the days on which the zone's offset changes."""
    tz = ZoneInfo(zone_name)
    days = []
    for day in range(366):
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=day)
        if (
            start.astimezone(tz).utcoffset()
            != (start + timedelta(days=1)).astimezone(tz).utcoffset()
        ):
            days.append(start)
    return days


def test_the_opening_is_strictly_after_now_around_every_transition() -> None:
    zones = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago"]
    starts = [time(0, 0), time(0, 30), time(1, 0), time(1, 30), time(2, 0), time(2, 30)]
    for zone_name in zones:
        transitions = _transition_days(zone_name, 2026)
        assert transitions, zone_name
        for day in transitions:
            for minutes in range(-24 * 60, 48 * 60, 10):  # the day before to the day after
                now = day + timedelta(minutes=minutes)
                for start in starts:
                    end = time((start.hour + 1) % 24, start.minute)
                    opening = next_opening(now, start, end, zone_name)
                    if opening is not None:
                        assert now < opening <= now + timedelta(days=2), (zone_name, now, start)


# Lead-local hours: the lead's zone from the phone number (fictional numbers).
SAO_PAULO_MOBILE = "+55 11 91234-5678"  # one zone: America/Sao_Paulo
MANAUS_MOBILE = "+5592912345678"  # Brazil, area code 92: one zone, America/Manaus
US_TOLL_FREE = "+1 800 555 0199"  # every US zone: the campaign's


def test_a_brazilian_number_with_one_zone_gives_it() -> None:
    assert lead_timezone(SAO_PAULO_MOBILE) == "America/Sao_Paulo"
    assert lead_timezone(MANAUS_MOBILE) == "America/Manaus"
    assert window_timezone(MANAUS_MOBILE, "America/Sao_Paulo", True) == "America/Manaus"


def test_a_us_number_spanning_zones_gives_the_campaigns_zone() -> None:
    assert lead_timezone(US_TOLL_FREE) is None
    assert window_timezone(US_TOLL_FREE, "America/Sao_Paulo", True) == "America/Sao_Paulo"


def test_bad_and_national_numbers_give_the_campaigns_zone_and_never_raise() -> None:
    for phone in [
        "",
        "+",
        "abc",
        "+999 999 999 999",
        "11912345678",
        "5592912345678",
        "+55",
        "+" + "9" * 40,
        "\x00+5592",
        None,
    ]:
        assert lead_timezone(phone) is None
        assert window_timezone(phone, "Europe/Lisbon", True) == "Europe/Lisbon"


def test_with_lead_local_hours_off_the_window_is_the_campaigns() -> None:
    assert window_timezone(MANAUS_MOBILE, "America/Sao_Paulo", False) == "America/Sao_Paulo"
    assert window_timezone(MANAUS_MOBILE, None, False) is None


def test_the_window_read_in_the_leads_zone_opens_at_the_leads_opening() -> None:
    # 10:00 in São Paulo is 09:00 in Manaus (UTC-4): a 09:30-18:00 window is open in São Paulo
    # and opens in half an hour for the lead in Manaus.
    zone_of_lead = window_timezone(MANAUS_MOBILE, "America/Sao_Paulo", True)
    assert next_opening(at(10), time(9, 30), time(18), "America/Sao_Paulo") is None
    assert next_opening(at(10), time(9, 30), time(18), zone_of_lead) == at(10, 30)
