"""`python -m app status`: campaign_queue_status as readable tables for a terminal.

Pure formatting: render() takes the jsonb the database answered (DESIGN section 9) and gives
text. Ages and "in 12s" are measured from the answer's own `at` (the database's clock), so
the output depends on nothing but its input.
"""

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


def render(status: Mapping[str, Any], run_id: object = None) -> str:
    """The status as text: queue, throughput, runs, inboxes, failures."""
    at = _time(status.get("at"))
    title = "campaign-queue status"
    if run_id:
        title += f" of run {run_id}"
    if at is not None:
        title += " at " + at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    lines = [title, ""]
    lines += _queue(_mapping(status.get("queue")), _mapping(status.get("throughput")))
    lines += ["", *_runs(_rows(status.get("runs")), at)]
    lines += ["", *_inboxes(_rows(status.get("inboxes")), at)]
    lines += ["", *_failures(_rows(status.get("failures")))]
    return "\n".join(lines) + "\n"


def _queue(queue: Mapping[str, Any], throughput: Mapping[str, Any]) -> list[str]:
    headers = ["due now", "scheduled", "in flight", "oldest due", "sent 5 min", "sent 60 min"]
    row = [
        count(_number(queue.get("due"))),
        count(_number(queue.get("scheduled"))),
        count(_number(queue.get("in_flight"))),
        duration(_number(queue.get("oldest_due_s"))),
        count(_number(throughput.get("sent_5m"))),
        count(_number(throughput.get("sent_60m"))),
    ]
    return ["QUEUE", *table(headers, [row], right=set(range(len(headers))))]


def _runs(runs: list[Mapping[str, Any]], at: datetime | None) -> list[str]:
    if not runs:
        return ["RUNS", "  no running or paused run"]
    headers = [
        "run",
        "status",
        "sent",
        "done",
        "failed",
        "skipped",
        "pending",
        "in flight",
        "tokens",
        "cost",
        "started",
        "ETA",
    ]
    rows = []
    for run in runs:
        total = _number(run.get("total")) or 0
        sent = _number(run.get("sent")) or 0
        ended = sent + (_number(run.get("failed")) or 0) + (_number(run.get("skipped")) or 0)
        rows.append(
            [
                short_id(run.get("run_id")),
                str(run.get("status") or NONE),
                f"{count(sent)}/{count(total)}",
                f"{math.floor(100 * ended / total)}%" if total else NONE,
                count(_number(run.get("failed"))),
                count(_number(run.get("skipped"))),
                count(_number(run.get("pending"))),
                count(_number(run.get("in_flight"))),
                count(_number(run.get("ai_tokens"))),
                usd(_number(run.get("ai_cost_usd"))),
                _ago(_time(run.get("started_at")), at),
                duration(_number(run.get("eta_s"))),
            ]
        )
    lines = [f"RUNS ({len(runs)})", *table(headers, rows, right={2, 3, 4, 5, 6, 7, 8, 9, 10, 11})]
    paused = [r for r in runs if r.get("status") == "paused" and r.get("error_message")]
    for run in paused:
        lines.append(f"  {short_id(run.get('run_id'))} paused: {_one_line(run['error_message'])}")
    return lines


def _inboxes(inboxes: list[Mapping[str, Any]], at: datetime | None) -> list[str]:
    if not inboxes:
        return ["INBOXES", "  no inbox"]
    headers = ["inbox", "sent today", "day's zone", "gap", "next slot", "pending"]
    rows = []
    for inbox in inboxes:
        cap = _number(inbox.get("daily_cap"))
        sent_today = count(_number(inbox.get("sent_today")))
        rows.append(
            [
                short_id(inbox.get("inbox_id")),
                f"{sent_today}/{count(cap)}" if cap else f"{sent_today} (no cap)",
                _one_line(inbox.get("timezone")) or "-",
                _gap(_number(inbox.get("min_gap_s")), _number(inbox.get("max_gap_s"))),
                _until(_time(inbox.get("next_slot_at")), at),
                count(_number(inbox.get("pending"))),
            ]
        )
    return [f"INBOXES ({len(inboxes)})", *table(headers, rows, right={1, 3, 4, 5})]


def _failures(failures: list[Mapping[str, Any]]) -> list[str]:
    if not failures:
        return ["FAILURES, LAST 24 H", "  none"]
    rows = [
        [count(_number(f.get("count"))), _one_line(f.get("reason"))[:MAX_REASON_CHARS]]
        for f in failures
    ]
    return ["FAILURES, LAST 24 H (by reason)", *table(["count", "reason"], rows, right={0})]


def _gap(low: float | None, high: float | None) -> str:
    if not low and not high:
        return "off"
    low, high = low or 0.0, high or 0.0
    if low == high:
        return f"{low:g}s"
    return f"{low:g}-{high:g}s"


def _ago(when: datetime | None, at: datetime | None) -> str:
    if when is None or at is None:
        return NONE
    return duration((at - when).total_seconds()) + " ago"


def _until(when: datetime | None, at: datetime | None) -> str:
    if when is None or at is None:
        return NONE
    seconds = (when - at).total_seconds()
    return "now" if seconds <= 0 else "in " + duration(seconds)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, Mapping)]


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())
