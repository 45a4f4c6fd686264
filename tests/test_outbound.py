"""Retry-After parsing (pure function, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.outbound import parse_retry_after


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("0.5", now=now) == 0.5
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-3", now=now) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad, now=now) is None
