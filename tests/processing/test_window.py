"""The send window in the campaign's timezone (pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from app.processing.window import next_opening


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
