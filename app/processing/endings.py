"""How one message's attempt ends when it is not sent: fail, skip, pause, release.

Each ending is one fenced write, a campaign log entry, and a log line: warning for a retry,
error for a failure for good, always with an `error` field naming the cause and never the
text, the lead's name or a full phone number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from enum import StrEnum

from app.logs import mask_phone
from app.models import ClaimedMessage
from app.processing.invocation import Invocation
from app.store.rpc import DatabaseError
from app.store.store import FailureBrake, InboxBraked, Lease, Store

log = logging.getLogger("campaign_queue")

_RECORD_TRIES = 3
INBOX_PAUSE_PREFIX = "inbox not connected"  # resume_reconnected_campaign_runs looks for it


class Outcome(StrEnum):
    SENT = "sent"
    RETRIED = "retried"  # failed, a retry is scheduled
    FAILED = "failed"  # failed for good
    PAUSED = "paused"  # run paused, inbox down or outside the window: released untouched
    SKIPPED = "skipped"
    RELEASED = "released"  # not started: out of time, the circuit opened, or a key/credit error
    LEASE_LOST = "lease_lost"  # another worker holds it now
    ERROR = "error"  # the database could not record anything: the lease brings it back


class Endings:
    """Each ending is one fenced write; MessagePipeline.run stops renewing the lease after it."""

    def __init__(self, store: Store, brake: FailureBrake | None = None) -> None:
        self._store = store
        self._brake = brake or FailureBrake()

    async def fail(
        self,
        message: ClaimedMessage,
        invocation: Invocation,
        error: str,
        *,
        retryable: bool,
        send_status: int | None = None,
    ) -> Outcome:
        """send_status: the send endpoint's HTTP status when it is what failed (the brake's
        record counts it); None for every other failure."""
        result = await self._store.fail(
            Lease.of(message),
            error,
            retryable=retryable,
            send_status=send_status,
            brake=self._brake,
        )
        if not result.ok:
            return Outcome.LEASE_LOST
        if result.braked is not None:
            self._braked(message, invocation, result.braked)
        retried = result.status == "pending"
        log.log(
            logging.WARNING if retried else logging.ERROR,
            "message failed, retry scheduled" if retried else "message failed for good",
            extra=log_fields(message, "retry" if retried else "failed", error=error),
        )
        invocation.logs.add(
            message.run_id,
            "retry" if retried else "failed",
            error,
            level="warning" if retried else "error",
            lead_id=message.lead_id,
            message_id=message.id,
            details={
                "retry_count": result.retry_count,
                "next_attempt_at": result.next_attempt_at.isoformat()
                if result.next_attempt_at
                else None,
            },
        )
        return Outcome.RETRIED if retried else Outcome.FAILED

    def _braked(self, message: ClaimedMessage, invocation: Invocation, braked: InboxBraked) -> None:
        """The inbox's failure brake tripped: said once, at warning, without a phone number."""
        why = f"inbox braked until {braked.until.isoformat()}: {braked.reason}"
        log.warning(
            why,
            extra={
                "run_id": str(message.run_id),
                "inbox_id": str(braked.inbox_id),
                "step": "brake",
                "error": braked.reason,
            },
        )
        invocation.logs.add(message.run_id, "brake", why, level="warning", message_id=message.id)

    async def skip(self, message: ClaimedMessage, invocation: Invocation, reason: str) -> Outcome:
        result = await self._store.skip(Lease.of(message), reason)
        if not result.ok:
            return Outcome.LEASE_LOST
        invocation.logs.add(
            message.run_id, "skip", reason, lead_id=message.lead_id, message_id=message.id
        )
        return Outcome.SKIPPED

    async def release(
        self,
        message: ClaimedMessage,
        invocation: Invocation,
        outcome: Outcome,
        not_before: datetime | None = None,
        lead_timezone: str | None = None,
    ) -> Outcome:
        await self._store.release(
            [Lease.of(message)], not_before=not_before, lead_timezone=lead_timezone
        )
        return outcome

    async def hold_back(
        self,
        message: ClaimedMessage,
        invocation: Invocation,
        step: str,
        why: str,
        not_before: datetime | None = None,
        lead_timezone: str | None = None,
    ) -> Outcome:
        """Not now (the send window, the inbox's pace): back untouched, said in the run's log."""
        outcome = await self.release(message, invocation, Outcome.PAUSED, not_before, lead_timezone)
        invocation.logs.add(
            message.run_id, step, why, lead_id=message.lead_id, message_id=message.id
        )
        return outcome

    async def pause_for_inbox(
        self, message: ClaimedMessage, invocation: Invocation, status: str | None
    ) -> Outcome:
        reason = f"{INBOX_PAUSE_PREFIX} (status: {status or 'unknown'})"
        if await self._store.pause_run(message.run_id, reason):
            log.warning("run paused: " + reason, extra=log_fields(message, "pause", error=reason))
            invocation.logs.add(message.run_id, "pause", "run paused: " + reason, level="warning")
        return await self.release(message, invocation, Outcome.PAUSED)

    async def refused(
        self,
        message: ClaimedMessage,
        invocation: Invocation,
        reason: str | None,
        inbox_status: str | None = None,
    ) -> Outcome:
        """What the database's refusal of a fenced write means for this message."""
        if reason == "lock_lost":
            log.warning(
                "lease lost; leaving the message to its new owner",
                extra=log_fields(message, "lease_lost", error="lock_lost"),
            )
            return Outcome.LEASE_LOST
        if reason == "run_not_running":
            return await self.release(message, invocation, Outcome.PAUSED)
        if reason == "inbox_disconnected":
            return await self.pause_for_inbox(message, invocation, inbox_status)
        if reason == "lead_not_found":
            return await self.skip(message, invocation, "lead not found")
        if reason == "repeated":  # the repetition guard: written again at the next attempt
            return await self.fail(message, invocation, "repeated text", retryable=True)
        return await self.fail(
            message, invocation, f"rejected by the database: {reason}", retryable=True
        )

    async def after_database_error(
        self, message: ClaimedMessage, invocation: Invocation, exc: DatabaseError
    ) -> Outcome:
        """The database failed mid-message: record that, so no lease is left behind.

        Data it cannot store fails the message for good at once; any other error spends a
        retry (a deterministic error must not loop for ever, and a part may have gone out
        unrecorded: its repeat must count as a retry). A cut connection is usually back at
        once, so the write is tried a few times; when nothing can be written, the lease
        brings the message back.
        """
        error = f"database error: {exc}"
        for attempt in range(_RECORD_TRIES):
            try:
                return await self.fail(message, invocation, error, retryable=not exc.data_error)
            except DatabaseError:
                if attempt < _RECORD_TRIES - 1:
                    await asyncio.sleep(0.2 * (attempt + 1))
        log.error(
            "database failed mid-message; its lease will bring it back",
            extra=log_fields(message, "error", error=str(exc)),
        )
        return Outcome.ERROR


def log_fields(
    message: ClaimedMessage, step: str, started: float | None = None, error: str | None = None
) -> dict[str, object]:
    fields: dict[str, object] = {
        "run_id": str(message.run_id),
        "message_id": str(message.id),
        "step": step,
        "phone": mask_phone(message.phone_number),
    }
    if started is not None:
        fields["ms"] = int((time.perf_counter() - started) * 1000)
    if error is not None:
        fields["error"] = error
    return fields
