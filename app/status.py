"""`python -m app status`: campaign_queue_status as readable tables for a terminal.

Pure formatting: render() takes the jsonb the database answered (README: "Seeing the
queue") and gives text. A run's `failed` is its messages failed for good, `retrying` those
waiting for a retry. Ages and "in 12s" are measured from the answer's own `at` (the
database's clock), so the output depends on nothing but its input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app import status_failures
from app.status_format import (
    NONE,
    ago,
    as_mapping,
    as_number,
    as_rows,
    as_time,
    count,
    duration,
    gap_range,
    one_line,
    short_id,
    table,
    until,
    usd,
)

__all__ = ["count", "duration", "render", "table", "usd"]


def render(status: Mapping[str, Any], run_id: object = None) -> str:
    """The status as text: queue and throughput, the last call, runs, inboxes, messages
    waiting for a retry, messages failed for good, messages skipped, the provider circuit."""
    at = as_time(status.get("at"))
    title = "campaign-queue status"
    if run_id:
        title += f" of run {run_id}"
    if at is not None:
        title += " at " + at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    lines = [title, ""]
    lines += _queue(as_mapping(status.get("queue")), as_mapping(status.get("throughput")))
    lines += ["", *status_failures.last_call(status.get("last_call"), at)]
    lines += ["", *_runs(as_rows(status.get("runs")), at, as_number(status.get("runs_total")))]
    lines += ["", *_inboxes(as_rows(status.get("inboxes")), at)]
    lines += ["", *status_failures.retrying(status.get("retrying"), at)]
    lines += ["", *status_failures.failed_for_good(status.get("failures"))]
    lines += ["", *status_failures.skipped(status.get("skipped_by_reason"))]
    lines += ["", *status_failures.circuit(status.get("circuit"), at)]
    return "\n".join(lines) + "\n"


def _queue(queue: Mapping[str, Any], throughput: Mapping[str, Any]) -> list[str]:
    headers = ["due now", "scheduled", "in flight", "oldest due", "sent 5 min", "sent 60 min"]
    row = [
        count(as_number(queue.get("due"))),
        count(as_number(queue.get("scheduled"))),
        count(as_number(queue.get("in_flight"))),
        duration(as_number(queue.get("oldest_due_s"))),
        count(as_number(throughput.get("sent_5m"))),
        count(as_number(throughput.get("sent_60m"))),
    ]
    return ["QUEUE", *table(headers, [row], right=set(range(len(headers))))]


def _shown(shown: int, total: float | None) -> str:
    """How many runs the page shows, and of how many when it is not all of them."""
    if total is None or total <= shown:
        return count(shown)
    return f"{count(shown)} of {count(total)}, the most recently active; --limit N for more"


def _runs(
    runs: list[Mapping[str, Any]], at: datetime | None, runs_total: float | None
) -> list[str]:
    if not runs:
        return ["RUNS", "  no running or paused run"]
    headers = [
        "run",
        "status",
        "sent",
        "done",
        "failed",
        "retrying",
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
        total = as_number(run.get("total")) or 0
        sent = as_number(run.get("sent")) or 0
        ended = sent + (as_number(run.get("failed")) or 0) + (as_number(run.get("skipped")) or 0)
        rows.append(
            [
                short_id(run.get("run_id")),
                str(run.get("status") or NONE),
                f"{count(sent)}/{count(total)}",
                f"{math.floor(100 * ended / total)}%" if total else NONE,
                count(as_number(run.get("failed"))),
                count(as_number(run.get("retrying"))),
                count(as_number(run.get("skipped"))),
                count(as_number(run.get("pending"))),
                count(as_number(run.get("in_flight"))),
                count(as_number(run.get("ai_tokens"))),
                usd(as_number(run.get("ai_cost_usd"))),
                ago(as_time(run.get("started_at")), at),
                duration(as_number(run.get("eta_s"))),
            ]
        )
    lines = [
        f"RUNS ({_shown(len(runs), runs_total)})",
        *table(headers, rows, right=set(range(2, len(headers)))),
    ]
    paused = [r for r in runs if r.get("status") == "paused" and r.get("error_message")]
    for run in paused:
        lines.append(f"  {short_id(run.get('run_id'))} paused: {one_line(run['error_message'])}")
    return lines


def _inboxes(inboxes: list[Mapping[str, Any]], at: datetime | None) -> list[str]:
    if not inboxes:
        return ["INBOXES", "  no inbox"]
    headers = ["inbox", "sent today", "warm-up", "last hour", "day's zone", "gap", "next slot"]
    headers.append("pending")
    rows = []
    for inbox in inboxes:
        cap = as_number(inbox.get("today_cap"))
        if cap is None:  # an older database: no warm-up
            cap = as_number(inbox.get("daily_cap"))
        sent_today = count(as_number(inbox.get("sent_today")))
        warmup_day = as_number(inbox.get("warmup_day"))
        hourly_cap = as_number(inbox.get("hourly_cap"))
        last_hour = count(as_number(inbox.get("sent_last_hour")))
        rows.append(
            [
                short_id(inbox.get("inbox_id")),
                f"{sent_today}/{count(cap)}" if cap else f"{sent_today} (no cap)",
                f"day {count(warmup_day)}" if warmup_day is not None else "-",
                f"{last_hour}/{count(hourly_cap)}" if hourly_cap else "-",
                one_line(inbox.get("timezone")) or "-",
                gap_range(as_number(inbox.get("min_gap_s")), as_number(inbox.get("max_gap_s"))),
                until(as_time(inbox.get("next_slot_at")), at),
                count(as_number(inbox.get("pending"))),
            ]
        )
    lines = [f"INBOXES ({len(inboxes)})", *table(headers, rows, right={1, 3, 5, 6, 7})]
    for inbox in inboxes:  # what holds an inbox now (README, "Number health")
        held = inbox.get("held")
        if not held:
            continue
        why = f" ({one_line(inbox['brake_reason'])})" if inbox.get("brake_reason") else ""
        ends = until(as_time(inbox.get("held_until")), at)
        lines.append(
            f"  {short_id(inbox.get('inbox_id'))} held: {one_line(held)}{why}, ends {ends}"
        )
    return lines
