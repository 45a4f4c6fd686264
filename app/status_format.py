"""Formatting for `python -m app status`: durations, amounts, counts, aligned tables, and
lenient readers of the status's JSON (a field of the wrong type reads as unknown, "-")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

NONE = "-"
MAX_REASON_CHARS = 100


def duration(seconds: float | None) -> str:
    """45s, 3m12s, 2h05m, 3d04h; "-" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    total = max(math.ceil(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def usd(amount: float | None) -> str:
    """$0.0123: four decimals below $100 (two above), more for a fraction of a cent, so a
    cheap campaign does not read as free ($0.000043); "<$0.000001" below that."""
    if amount is None or not math.isfinite(amount):
        return NONE
    if amount == 0:
        return "$0.00"
    if abs(amount) < 0.000001:
        return "<$0.000001"
    rounded = float(f"{amount:.2g}")  # two significant digits
    if abs(rounded) < 0.001:
        return f"${rounded:.{1 - math.floor(math.log10(abs(rounded)))}f}"
    if abs(amount) < 100:
        return f"${amount:,.4f}"
    return f"${amount:,.2f}"


def count(value: float | None) -> str:
    """1,234; "-" when unknown."""
    if value is None or not math.isfinite(value):
        return NONE
    return f"{int(value):,}"


def short_id(value: object) -> str:
    """The first 8 characters of a uuid: enough to tell runs apart on one screen."""
    return str(value)[:8] if value else NONE


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Aligned columns, two spaces apart; the columns whose index is in `right` are right-aligned
    (numbers), the others left-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  " + "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def gap_range(low: float | None, high: float | None) -> str:
    if not low and not high:
        return "off"
    low, high = low or 0.0, high or 0.0
    if low == high:
        return f"{low:g}s"
    return f"{low:g}-{high:g}s"


def ago(when: datetime | None, at: datetime | None) -> str:
    if when is None or at is None:
        return NONE
    return duration((at - when).total_seconds()) + " ago"


def until(when: datetime | None, at: datetime | None) -> str:
    if when is None or at is None:
        return NONE
    seconds = (when - at).total_seconds()
    return "now" if seconds <= 0 else "in " + duration(seconds)


def as_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_rows(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, Mapping)]


def one_line(value: object) -> str:
    return " ".join(str(value or "").split())
