"""The console's chart: messages sent per minute over the last hour, as SVG bars drawn here
(the template writes them out; no script, no library). The time labels are HTML under the SVG,
not SVG text: they keep the page's font size however narrow the chart is drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WIDTH, HEIGHT = 600, 120  # the plot's area, in the SVG's user units
BAR_GAP = 2


@dataclass(frozen=True)
class Bar:
    minute: str  # ISO 8601, UTC: the minute's start
    label: str  # HH:MM UTC
    sent: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int  # the tallest bar's count (the scale)
    total: int
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def ticks(self) -> list[Bar]:
        """Bars whose time is written under the chart, spread evenly: every 15 minutes, and the
        last (five labels fit a phone's width)."""
        last = len(self.bars) - 1
        return [b for i, b in enumerate(self.bars) if (i % 15 == 0 and last - i >= 10) or i == last]


def sent_per_minute(minutes: Sequence[Mapping[str, Any]]) -> Chart:
    """Bars for campaign_console_sent_per_minute's `minutes` ({at, sent}, oldest first)."""
    counts = [max(int(m.get("sent") or 0), 0) for m in minutes]
    peak = max(counts, default=0)
    slot = WIDTH / max(len(counts), 1)
    bars = []
    for i, (minute, sent) in enumerate(zip(minutes, counts, strict=True)):
        at = _time(minute.get("at"))
        height = HEIGHT * sent / peak if peak else 0.0
        bars.append(
            Bar(
                minute=at.isoformat() if at else "",
                label=at.strftime("%H:%M") if at else "",
                sent=sent,
                x=round(i * slot + BAR_GAP / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - BAR_GAP, 2),
                height=round(height, 2),
            )
        )
    return Chart(bars=bars, peak=peak, total=sum(counts))


def _time(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None
