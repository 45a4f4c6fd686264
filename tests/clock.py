"""Zones for tests that count an inbox's calendar day: its cap and warm-up start afresh at
local midnight, so a test that sends over a few seconds or spans hours counts in a zone where
it is about noon, whatever time the suite runs."""

from __future__ import annotations

from datetime import UTC, datetime


def midday_zone() -> str:
    """A fixed-offset zone where it is now between 11:00 and 13:00 (Etc/GMT-10 is UTC+10)."""
    return f"Etc/GMT{datetime.now(UTC).hour - 12:+d}"
