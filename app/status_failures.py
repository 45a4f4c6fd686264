"""`python -m app status`: what went wrong, for an operator whose scheduler never reads the
calls' answers. The last call, the messages waiting for a retry, those failed for good and
the provider circuit's openings, from campaign_queue_status's `last_call`, `retrying`,
`failures` and `circuit`.

`failed` means one thing on this screen: messages failed for good. A call's answer counts
failed attempts instead (the retried ones included); the LAST CALL line says "attempts".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.status_format import (
    MAX_REASON_CHARS,
    NONE,
    ago,
    as_mapping,
    as_number,
    as_rows,
    as_time,
    count,
    one_line,
    table,
    until,
)


def last_call(call: object, at: datetime | None) -> list[str]:
    """LAST CALL: when the last call of any worker ended, and what it answered."""
    if not isinstance(call, Mapping) or not call:
        return ["LAST CALL", "  none recorded"]
    processed, failed = as_number(call.get("processed")), as_number(call.get("failed"))
    retried = as_number(call.get("retried"))
    line = (
        f"  {ago(as_time(call.get('at')), at)} by {call.get('worker') or NONE}: "
        f"claimed {count(as_number(call.get('claimed')))}, sent {count(processed)}, "
        f"{count(failed)} attempt(s) failed ({count(retried)} to retry)"
    )
    lines = ["LAST CALL", line]
    if call.get("circuit_open"):
        answered = " (answered 502)" if call.get("answered_502") is True else ""
        lines.append(f"  circuit opened{answered}: {_reason(call['circuit_open'])}")
    return lines


def retrying(reasons: object, at: datetime | None) -> list[str]:
    """RETRYING: pending messages whose last attempt failed, by reason, with the earliest
    next attempt ("now": due, waiting for a claim)."""
    rows = [
        [
            count(as_number(r.get("count"))),
            until(as_time(r.get("next_attempt_at")), at),
            _reason(r.get("reason")),
        ]
        for r in as_rows(reasons)
    ]
    if not rows:
        return ["RETRYING", "  no message waiting for a retry"]
    title = "RETRYING: messages waiting for a retry (by reason)"
    return [title, *table(["count", "next attempt", "reason"], rows, right={0, 1})]


def failed_for_good(failures: object) -> list[str]:
    """FAILED FOR GOOD: messages that ended failed in the last 24 hours, by reason."""
    rows = [[count(as_number(f.get("count"))), _reason(f.get("reason"))] for f in as_rows(failures)]
    if not rows:
        return ["FAILED FOR GOOD, LAST 24 H", "  none"]
    return ["FAILED FOR GOOD, LAST 24 H (by reason)", *table(["count", "reason"], rows, right={0})]


def skipped(reasons: object) -> list[str]:
    """SKIPPED: messages skipped in the last 24 hours, by reason ('opted out', 'replied',
    'lead not found', too late ...)."""
    rows = [[count(as_number(s.get("count"))), _reason(s.get("reason"))] for s in as_rows(reasons)]
    if not rows:
        return ["SKIPPED, LAST 24 H", "  none"]
    return ["SKIPPED, LAST 24 H (by reason)", *table(["count", "reason"], rows, right={0})]


def circuit(state: object, at: datetime | None) -> list[str]:
    """CIRCUIT: an open provider outage, and the calls' circuit openings of the last 24 h."""
    state = as_mapping(state)
    lines = ["CIRCUIT"]
    since = as_time(state.get("outage_since"))
    if since is not None:
        lines.append(f"  provider outage open since {ago(since, at)}: its backlog is not late")
    openings = as_rows(state.get("openings"))
    total = as_number(state.get("openings_24h"))
    if not openings:
        return [*lines, "  not opened in the last 24 h"]
    shown = f", the latest {len(openings)}" if total is not None and total > len(openings) else ""
    lines.append(f"  opened {count(total)} time(s) in the last 24 h{shown}:")
    rows = [
        [
            ago(as_time(o.get("opened_at")), at),
            _yes_no(o.get("answered_502")),
            str(o.get("worker") or NONE),
            _reason(o.get("reason")),
        ]
        for o in openings
    ]
    return [*lines, *table(["when", "502", "worker", "reason"], rows, right={0})]


def _reason(value: Any) -> str:
    return one_line(value)[:MAX_REASON_CHARS]


def _yes_no(value: object) -> str:
    return "yes" if value is True else "no" if value is False else NONE
