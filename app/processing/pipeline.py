"""One message: checks -> start -> generate -> split -> save -> send parts -> record.

Every write is fenced by the message's lease; when the database answers `lock_lost`, the
lease went to another worker and this one stops touching the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from app.ai.openrouter import Generation
from app.ai.prompts import system_prompt, user_prompt
from app.ai.split import SplitAsker, split_message
from app.ai.validation import InvalidMessageError, validate_message
from app.logs import mask_phone
from app.models import ClaimedMessage, LeadContext
from app.outbound import AuthError, OutboundError
from app.processing.invocation import Invocation
from app.processing.window import next_opening
from app.store.rpc import DatabaseError
from app.store.store import Lease, Store

log = logging.getLogger("campaign_queue")


class Outcome(StrEnum):
    SENT = "sent"
    RETRIED = "retried"  # failed, a retry is scheduled
    FAILED = "failed"  # failed for good
    PAUSED = "paused"  # run paused, inbox down or outside the window: released untouched
    SKIPPED = "skipped"
    RELEASED = "released"  # not started: out of time or the circuit opened
    AUTH_FAILED = "auth_failed"  # a key or credit error: released, the invocation stops
    LEASE_LOST = "lease_lost"  # another worker holds it now
    ERROR = "error"  # the database failed mid-message: the lease will expire and bring it back


class Writer(SplitAsker, Protocol):
    async def generate(
        self, *, model: str, system: str, user: str, deadline: float | None = None
    ) -> Generation: ...


class MessageSender(Protocol):
    async def send(
        self, conversation_id: str, text: str, idempotency_key: str, deadline: float | None = None
    ) -> str | None: ...


class MessagePipeline:
    def __init__(
        self, store: Store, writer: Writer, sender: MessageSender, *, default_model: str
    ) -> None:
        self._store = store
        self._writer = writer
        self._sender = sender
        self._default_model = default_model

    async def run(
        self, message: ClaimedMessage, lead: LeadContext | None, invocation: Invocation
    ) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = await self._run(message, lead, invocation)
        except DatabaseError as exc:
            log.error(
                "database failed mid-message; its lease will bring it back",
                extra=_extra(message, "error", started, error=str(exc)),
            )
            return Outcome.ERROR
        except Exception as exc:  # a bug must not fail the other messages
            log.exception("unexpected error", extra=_extra(message, "error", started))
            try:
                outcome = await self._fail(
                    message, invocation, f"internal error: {type(exc).__name__}", retryable=True
                )
            except DatabaseError:
                return Outcome.ERROR
        log.info(f"message {outcome.value}", extra=_extra(message, outcome.value, started))
        return outcome

    async def _run(
        self, message: ClaimedMessage, lead: LeadContext | None, invocation: Invocation
    ) -> Outcome:
        lease = Lease.of(message)
        config = message.config
        if invocation.should_stop:
            await self._store.release([lease])
            return Outcome.RELEASED
        if message.run.status != "running":
            await self._store.release([lease])
            return Outcome.PAUSED
        opening = next_opening(
            datetime.now(UTC), config.start_time, config.end_time, config.timezone
        )
        if opening is not None:
            await self._store.release([lease], not_before=opening)
            invocation.logs.add(
                message.run_id,
                "window",
                f"outside the send window; next opening {opening.isoformat()}",
                lead_id=message.lead_id,
                message_id=message.id,
            )
            return Outcome.PAUSED
        if not config.inbox_status.connected:
            await self._pause_for_inbox(message, invocation)
            return Outcome.PAUSED
        if lead is None:
            return await self._skip(message, invocation, "lead not found")

        started = await self._store.start(lease)
        if not started.ok:
            return await self._not_ok(message, invocation, started.reason)

        try:
            if message.has_generated_parts:  # resuming: reuse the text and parts already sent
                text, parts = message.generated_message or "", list(message.message_parts or [])
                tokens = generation_ms = split_ms = None
            else:
                text, parts, tokens, generation_ms, split_ms = await self._write(
                    message, lead, invocation
                )
            saved = await self._store.save_generated(
                lease,
                text=text,
                parts=parts,
                ai_tokens_used=tokens,
                ai_generation_time_ms=generation_ms,
                split_time_ms=split_ms,
            )
            if not saved.ok or saved.conversation_id is None:
                return await self._not_ok(message, invocation, saved.reason)
            outcome = await self._send_parts(message, parts, str(saved.conversation_id), invocation)
        except AuthError as exc:
            invocation.circuit.trip(str(exc))
            await self._store.release([lease])
            invocation.logs.add(
                message.run_id,
                "auth",
                str(exc),
                level="error",
                lead_id=message.lead_id,
                message_id=message.id,
            )
            return Outcome.AUTH_FAILED
        except OutboundError as exc:
            if not isinstance(exc, InvalidMessageError):  # the model, not the far end
                invocation.circuit.failure(str(exc))
            return await self._fail(message, invocation, str(exc), retryable=exc.retryable)
        invocation.circuit.success()
        return outcome

    async def _write(
        self, message: ClaimedMessage, lead: LeadContext, invocation: Invocation
    ) -> tuple[str, list[str], int, int, int | None]:
        config = message.config
        model = config.model or self._default_model
        generation = await self._writer.generate(
            model=model,
            system=system_prompt(config.ai_instructions),
            user=user_prompt(lead),
            deadline=invocation.deadline,
        )
        text = validate_message(generation.text)
        tokens, split_ms = generation.tokens, None
        parts = [text]
        if config.split_messages:
            split = await split_message(
                self._writer,
                text,
                model=model,
                max_parts=config.max_split_parts,
                splitter=config.splitter,
                deadline=invocation.deadline,
            )
            parts, tokens, split_ms = split.parts, tokens + split.tokens, split.elapsed_ms
            if split.fallback_reason:
                invocation.logs.add(
                    message.run_id,
                    "split",
                    "local splitter used: " + split.fallback_reason,
                    level="warning",
                    lead_id=message.lead_id,
                    message_id=message.id,
                )
        return text, parts, tokens, generation.elapsed_ms, split_ms

    async def _send_parts(
        self,
        message: ClaimedMessage,
        parts: list[str],
        conversation_id: str,
        invocation: Invocation,
    ) -> Outcome:
        lease = Lease.of(message)
        delay_s = message.config.splitter.delay_between_messages / 1000
        for index in range(message.parts_sent, len(parts)):
            if index > message.parts_sent and delay_s > 0:
                await asyncio.sleep(delay_s)
            key = f"{message.id}:{index}"
            provider_id = await self._sender.send(
                conversation_id, parts[index], key, deadline=invocation.deadline
            )
            marked = await self._store.mark_part_sent(lease, index, provider_id)
            if not marked.ok:
                return await self._not_ok(message, invocation, marked.reason)
            if marked.completed:
                invocation.logs.add(
                    message.run_id,
                    "sent",
                    f"sent in {len(parts)} part(s)",
                    lead_id=message.lead_id,
                    message_id=message.id,
                    details={"parts": len(parts)},
                )
                return Outcome.SENT
        # Every part was recorded but none completed it: the database and we disagree.
        return await self._fail(
            message, invocation, "parts recorded without completion", retryable=True
        )

    async def _not_ok(
        self, message: ClaimedMessage, invocation: Invocation, reason: str | None
    ) -> Outcome:
        """What the database's refusal means for this message."""
        lease = Lease.of(message)
        if reason == "lock_lost":
            log.warning(
                "lease lost; leaving the message to its new owner",
                extra=_extra(message, "lease_lost"),
            )
            return Outcome.LEASE_LOST
        if reason == "run_not_running":
            await self._store.release([lease])
            return Outcome.PAUSED
        if reason == "inbox_disconnected":
            await self._pause_for_inbox(message, invocation)
            return Outcome.PAUSED
        if reason == "lead_not_found":
            return await self._skip(message, invocation, "lead not found")
        return await self._fail(
            message, invocation, f"rejected by the database: {reason}", retryable=True
        )

    async def _pause_for_inbox(self, message: ClaimedMessage, invocation: Invocation) -> None:
        status = message.config.inbox_status.status or "unknown"
        reason = f"inbox not connected (status: {status})"
        if await self._store.pause_run(message.run_id, reason):
            log.warning("run paused: " + reason, extra=_extra(message, "pause"))
            invocation.logs.add(message.run_id, "pause", "run paused: " + reason, level="warning")
        await self._store.release([Lease.of(message)])

    async def _skip(self, message: ClaimedMessage, invocation: Invocation, reason: str) -> Outcome:
        result = await self._store.skip(Lease.of(message), reason)
        if not result.ok:
            return Outcome.LEASE_LOST
        invocation.logs.add(
            message.run_id, "skip", reason, lead_id=message.lead_id, message_id=message.id
        )
        return Outcome.SKIPPED

    async def _fail(
        self, message: ClaimedMessage, invocation: Invocation, error: str, *, retryable: bool
    ) -> Outcome:
        result = await self._store.fail(Lease.of(message), error, retryable=retryable)
        if not result.ok:
            return Outcome.LEASE_LOST
        retried = result.status == "pending"
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


def _extra(
    message: ClaimedMessage, step: str, started: float | None = None, error: str | None = None
) -> dict[str, object]:
    extra: dict[str, object] = {
        "run_id": str(message.run_id),
        "message_id": str(message.id),
        "step": step,
        "phone": mask_phone(message.phone_number),
    }
    if started is not None:
        extra["ms"] = int((time.perf_counter() - started) * 1000)
    if error is not None:
        extra["error"] = error
    return extra
