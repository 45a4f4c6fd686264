"""What the console shows, from campaign_queue_status's answer (app.status_answer) and the
console's two reads (sql/055_console.sql): plain values the template writes out as they are.

Free text that could carry a phone number (a run's pause reason, a brake's, a failure's) goes
through mask_phones: no phone number appears whole on the page."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from app.console.chart import Chart, sent_per_minute
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
    until,
    usd,
)

STATUS_FILTERS = ("all", "running", "paused", "completed", "failed", "cancelled")
PAGE_SIZE = 20
_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


@dataclass(frozen=True)
class PacingInput:
    """One field of an inbox's "Edit pacing" form (app.operator_actions.PacingBody's names)."""

    name: str
    label: str
    unit: str = ""  # written after a value in the flash: "30 s"
    kind: str = "number"  # the input's type: number, text or date
    hint: str = ""


PACING_INPUTS = (
    PacingInput("min_gap_s", "min gap", "s"),
    PacingInput("max_gap_s", "max gap", "s"),
    PacingInput("daily_cap", "daily cap", hint="0 = none"),
    PacingInput("timezone", "time zone", kind="text", hint="e.g. UTC"),
    PacingInput("warmup_days", "warm-up days", hint="0 = off"),
    PacingInput("warmup_start_cap", "warm-up start cap"),
    PacingInput("hourly_cap", "hourly cap", hint="0 = none"),
    PacingInput("first_sent_day", "warm-up day 0", kind="date"),
)
PACING_LABELS = {i.name: i for i in PACING_INPUTS}


def mask_phones(text: object) -> str:
    """One line, each run of 7 or more digits (with separators) cut to its last two: '…42'."""
    return _PHONE.sub(lambda m: "…" + re.sub(r"\D", "", m.group())[-2:], one_line(text))


@dataclass(frozen=True)
class Listing:
    """Which runs the page shows: the status filter and the page (1-based)."""

    status: str = "all"
    page: int = 1

    @classmethod
    def from_query(cls, status: object, page: object) -> Listing:
        status = status if status in STATUS_FILTERS else "all"
        # isascii: "²" is a digit to str.isdigit(), not to int()
        number = int(page) if isinstance(page, str) and page.isascii() and page.isdigit() else 1
        return cls(str(status), min(max(number, 1), 10_000))

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def query(self, page: int | None = None) -> str:
        return urlencode({"status": self.status, "page": page or self.page})


@dataclass(frozen=True)
class Queue:
    due: str
    scheduled: str
    in_flight: str
    oldest_due: str
    sent_5m: str
    sent_60m: str


@dataclass(frozen=True)
class Reason:
    reason: str  # shown (masked)
    count: str
    value: str = ""  # the group as the database names it: what a requeue of it sends
    next_attempt: str = NONE


@dataclass(frozen=True)
class RunRow:
    run_id: str
    short: str
    status: str
    total: int
    done: int  # sent + failed + skipped: the progress bar's value
    sent: str
    failed: str
    retrying: str
    skipped: str
    pending: str
    in_flight: str
    ai_cost: str
    ai_tokens: str
    eta: str
    started: str
    note: str  # why it is paused (or ended), masked
    failure_groups: list[Reason] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def can_requeue(self) -> bool:
        return bool(self.failure_groups) and self.status != "cancelled"

    @property
    def has_actions(self) -> bool:
        """A button to show (an ended run with no failed message has none)."""
        return self.status in ("running", "paused") or self.can_requeue


@dataclass(frozen=True)
class InboxRow:
    inbox_id: str
    short: str
    pace: str
    sent_today: str
    cap: str
    warmup: str  # its day and today's cap, while it warms up
    last_hour: str
    next_slot: str
    held: str
    brake_reason: str
    brake_until: str
    braked: bool
    pending: str


@dataclass(frozen=True)
class ConsoleView:
    at: str
    queue: Queue
    chart: Chart
    runs: list[RunRow]
    runs_total: int
    listing: Listing
    pages: int
    inboxes: list[InboxRow]
    failures: list[Reason]
    retrying: list[Reason]
    skipped: list[Reason]
    pacing_inputs: tuple[PacingInput, ...] = PACING_INPUTS

    @property
    def prev_query(self) -> str | None:
        return self.listing.query(self.listing.page - 1) if self.listing.page > 1 else None

    @property
    def next_query(self) -> str | None:
        return self.listing.query(self.listing.page + 1) if self.listing.page < self.pages else None


def build_view(
    status: Mapping[str, Any],
    sent: Mapping[str, Any],
    run_failures: Mapping[str, Any],
    listing: Listing,
) -> ConsoleView:
    at = as_time(status.get("at"))
    total = int(as_number(status.get("runs_total")) or 0)
    return ConsoleView(
        at=at.strftime("%Y-%m-%d %H:%M:%S %Z") if at else NONE,
        queue=_queue(as_mapping(status.get("queue")), as_mapping(status.get("throughput"))),
        chart=sent_per_minute(as_rows(sent.get("minutes"))),
        runs=[_run(r, at, run_failures) for r in as_rows(status.get("runs"))],
        runs_total=total,
        listing=listing,
        pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        inboxes=[_inbox(i, at) for i in as_rows(status.get("inboxes"))],
        failures=_reasons(status.get("failures"), at),
        retrying=_reasons(status.get("retrying"), at),
        skipped=_reasons(status.get("skipped_by_reason"), at),
    )


def _queue(queue: Mapping[str, Any], throughput: Mapping[str, Any]) -> Queue:
    oldest = as_number(queue.get("oldest_due_s"))
    return Queue(
        due=count(as_number(queue.get("due"))),
        scheduled=count(as_number(queue.get("scheduled"))),
        in_flight=count(as_number(queue.get("in_flight"))),
        oldest_due=NONE if oldest is None else duration(oldest) + " late",
        sent_5m=count(as_number(throughput.get("sent_5m"))),
        sent_60m=count(as_number(throughput.get("sent_60m"))),
    )


def _run(run: Mapping[str, Any], at: datetime | None, failures: Mapping[str, Any]) -> RunRow:
    def number(name: str) -> int:
        return int(as_number(run.get(name)) or 0)

    status = str(run.get("status") or NONE)
    eta = as_number(run.get("eta_s"))
    run_id = str(run.get("run_id") or "")
    return RunRow(
        run_id=run_id,
        short=short_id(run_id),
        status=status,
        total=number("total"),
        done=number("sent") + number("failed") + number("skipped"),
        sent=count(number("sent")),
        failed=count(number("failed")),
        retrying=count(number("retrying")),
        skipped=count(number("skipped")),
        pending=count(number("pending")),
        in_flight=count(number("in_flight")),
        ai_cost=usd(as_number(run.get("ai_cost_usd"))),
        ai_tokens=count(as_number(run.get("ai_tokens"))),
        eta=_eta(status, eta),
        started=ago(as_time(run.get("started_at")), at),
        note=mask_phones(run.get("error_message")) if run.get("error_message") else "",
        failure_groups=_reasons(failures.get(run_id), at),
    )


def _eta(status: str, eta: float | None) -> str:
    if status != "running":
        return NONE
    if eta is None:
        return "unknown"
    return "now" if eta <= 0 else "in " + duration(eta)  # 0: its last message is due now


def _inbox(inbox: Mapping[str, Any], at: datetime | None) -> InboxRow:
    cap = as_number(inbox.get("daily_cap"))
    today_cap = as_number(inbox.get("today_cap"))
    hourly = as_number(inbox.get("hourly_cap"))
    warmup = as_number(inbox.get("warmup_day"))
    brake_until = as_time(inbox.get("brake_until"))
    held = str(inbox.get("held") or "")
    held_until = as_time(inbox.get("held_until"))
    return InboxRow(
        inbox_id=str(inbox.get("inbox_id") or ""),
        short=short_id(inbox.get("inbox_id")),
        pace=gap_range(as_number(inbox.get("min_gap_s")), as_number(inbox.get("max_gap_s"))),
        sent_today=count(as_number(inbox.get("sent_today"))),
        cap=_cap(today_cap if today_cap is not None else cap),
        warmup=_warmup(warmup, today_cap),
        last_hour=NONE
        if not hourly
        else f"{count(as_number(inbox.get('sent_last_hour')) or 0)} / {count(hourly)}",
        next_slot=until(as_time(inbox.get("next_slot_at")), at),
        held=f"{held.replace('_', ' ')}, ends {until(held_until, at)}" if held else "",
        brake_reason=mask_phones(inbox.get("brake_reason")) if brake_until else "",
        brake_until=until(brake_until, at) if brake_until else "",
        braked=brake_until is not None,
        pending=count(as_number(inbox.get("pending"))),
    )


def _warmup(day: float | None, today_cap: float | None) -> str:
    if day is None:
        return "off"
    return f"day {int(day)}" + (f", cap {count(today_cap)}" if today_cap else "")


def _cap(cap: float | None) -> str:
    return "no cap" if not cap else count(cap)


def _reasons(rows: object, at: datetime | None) -> list[Reason]:
    return [
        Reason(
            reason=mask_phones(r.get("reason")),
            value=str(r.get("reason") or ""),
            count=count(as_number(r.get("count"))),
            next_attempt=until(as_time(r.get("next_attempt_at")), at)
            if "next_attempt_at" in r
            else NONE,
        )
        for r in as_rows(rows)
    ]
