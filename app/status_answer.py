"""The answer of GET /status (campaign_queue_status), as models the OpenAPI document shows.

The database builds the answer; these models document it and the tests check the real answer
against them. Fields may be added (extra fields are allowed), never removed.

`failed` means two things, each named where it appears: a run's `failed` (and `failures`)
counts messages failed for good; the last call's `failed` counts failed attempts, the
retried ones included, as POST /process-queue answers it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class StatusQueue(_Part):
    """Pending messages of running runs, and those claimed."""

    due: int = Field(description="Pending and due now.")
    scheduled: int = Field(description="Pending, not yet due.")
    in_flight: int = Field(description="Claimed: queued, generating or sending.")
    oldest_due_s: float | None = Field(description="How late the oldest due one is; null: none.")


class StatusRun(_Part):
    """A running or paused run (or the one asked for)."""

    run_id: uuid.UUID = Field(description="The run.")
    status: str = Field(description="running, paused, or the asked-for run's status.")
    inbox_id: uuid.UUID | None = Field(description="Its campaign's inbox.")
    total: int = Field(description="Its leads (or more, when it holds more messages).")
    sent: int = Field(description="Messages sent in full.")
    failed: int = Field(description="Messages failed for good (the run's leads_failed).")
    retrying: int = Field(description="Messages waiting for a retry after a failed attempt.")
    skipped: int = Field(description="Messages skipped (lead gone, too late).")
    pending: int = Field(description="Messages not yet sent, the retrying ones included.")
    in_flight: int = Field(description="Messages claimed now.")
    ai_tokens: float = Field(description="AI tokens of its sent messages.")
    ai_cost_usd: float = Field(description="AI cost of its sent messages, USD.")
    started_at: datetime | None = Field(description="When it started.")
    error_message: str | None = Field(description="Why it is paused, when it is.")
    eta_s: int | None = Field(description="Seconds until its last message goes out; null: unknown.")


class StatusInbox(_Part):
    """An inbox of the runs shown: its pace today."""

    inbox_id: uuid.UUID = Field(description="The inbox.")
    sent_today: int = Field(description="First parts sent in its calendar day so far.")
    daily_cap: int = Field(description="Its daily cap; 0: none.")
    timezone: str | None = Field(
        default=None,
        description="The zone of the calendar day its cap counts: its override's, else "
        "INBOX_TIMEZONE.",
    )
    next_slot_at: datetime | None = Field(description="When its next message may go.")
    # Number health (README, "Number health"): the warm-up, the hourly cap, the brake.
    warmup_day: int | None = Field(
        default=None,
        description="Its warm-up's day today (0: the local day of its first message sent); "
        "null: no warm-up in force, or past it.",
    )
    today_cap: int | None = Field(
        default=None, description="Today's cap: the warm-up's, else daily_cap; 0: none."
    )
    hourly_cap: int | None = Field(default=None, description="Its hourly cap; 0: none.")
    sent_last_hour: int | None = Field(
        default=None, description="First parts in the last 60 minutes; null: no hourly cap."
    )
    held: str | None = Field(
        default=None,
        description="What holds its first parts now: 'daily_cap' (the warm-up's cap during a "
        "warm-up), 'hourly_cap' or 'brake'; null: nothing.",
    )
    held_until: datetime | None = Field(default=None, description="When that hold ends.")
    brake_reason: str | None = Field(
        default=None, description="Why it is braked (while it is); null: not braked."
    )
    brake_until: datetime | None = Field(
        default=None, description="When its brake ends (while it is braked)."
    )


class StatusFailure(_Part):
    """Messages failed for good in the last 24 h with one reason."""

    reason: str = Field(description="The error, ids and numbers taken out.")
    count: int = Field(description="How many.")


class StatusRetrying(_Part):
    """Messages waiting for a retry with one reason (their last attempt's error)."""

    reason: str = Field(description="The last attempt's error, ids and numbers taken out.")
    count: int = Field(description="How many.")
    next_attempt_at: datetime | None = Field(
        description="The earliest next attempt; in the past: due, waiting for a claim."
    )


class StatusSkipped(_Part):
    """Messages skipped in the last 24 h with one reason: 'opted out' (the suppression list),
    'replied' (stop-on-reply, REPLY_STOP_DAYS), 'lead not found', too late, ..."""

    reason: str = Field(description="Why they were skipped.")
    count: int = Field(description="How many.")


class StatusThroughput(_Part):
    """Messages sent in full lately."""

    sent_5m: int = Field(description="In the last 5 minutes.")
    sent_60m: int = Field(description="In the last 60 minutes.")


class CircuitOpening(_Part):
    """A call whose provider circuit opened and stopped its new work."""

    opened_at: datetime = Field(description="When.")
    worker: str = Field(description="The service instance (host:pid).")
    reason: str = Field(
        description="An auth/credit error, or CIRCUIT_FAILURE_THRESHOLD outbound failures in a row."
    )
    answered_502: bool = Field(description="A key or credit error: the call answered 502.")


class StatusCircuit(_Part):
    """The service's provider circuit (whatever run was asked for)."""

    outage_since: datetime | None = Field(
        description="Since when a provider outage is open (its backlog is not late); null: none."
    )
    openings_24h: int = Field(description="Circuit openings in the last 24 hours.")
    openings: list[CircuitOpening] = Field(description="The 10 latest of them, newest first.")


class StatusLastCall(_Part):
    """The call of POST /process-queue (or `python -m app process`) that ended last."""

    at: datetime = Field(description="When it ended.")
    worker: str = Field(description="The service instance (host:pid).")
    claimed: int = Field(description="Messages it claimed (0: it found nothing due).")
    processed: int = Field(description="Sent in full.")
    failed: int = Field(description="Attempts that failed, the retried ones included.")
    retried: int = Field(description="Of those, requeued for a later try.")
    circuit_open: str | None = Field(description="Why its circuit opened; null: it did not.")
    answered_502: bool = Field(description="Its circuit opened on a key or credit error.")


class StatusAnswer(_Part):
    """GET /status: the queue, the runs, their inboxes and what went wrong."""

    model_config = ConfigDict(title="StatusAnswer")

    at: datetime = Field(description="The database's clock: ages are measured from it.")
    queue: StatusQueue = Field(description="How deep and late the queue is.")
    runs: list[StatusRun] = Field(
        description="Running and paused runs (a page: at most `?limit=`, default 50; running "
        "first, the most recently active first), or the one asked for."
    )
    runs_total: int = Field(
        description="How many runs the page is taken from: all running and paused ones (or 1)."
    )
    inboxes: list[StatusInbox] = Field(description="The inboxes of the runs shown.")
    failures: list[StatusFailure] = Field(
        description="Messages failed for good in the last 24 h, by reason (20 at most)."
    )
    retrying: list[StatusRetrying] = Field(
        description="Messages of the running and paused runs (or of the one asked for) waiting "
        "for a retry, by reason (20 at most)."
    )
    skipped_by_reason: list[StatusSkipped] = Field(
        description="Messages (of that run, or all) skipped in the last 24 h, by reason (20 at "
        "most): 'opted out', 'replied' (README, \"Number health\"), 'lead not found', ..."
    )
    throughput: StatusThroughput = Field(description="How fast messages go out.")
    circuit: StatusCircuit = Field(description="The provider circuit's recent openings.")
    last_call: StatusLastCall | None = Field(description="null until a call has ended.")
