"""One message: checks -> start -> generate -> split -> save -> send parts -> record.

Every write is fenced by the message's lease; when the database answers `lock_lost`, the
lease went to another worker and this one stops touching the message. How an attempt ends
when it is not sent lives in endings.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from app.ai.openrouter import Generation, ModerationError
from app.ai.prompts import system_prompt, user_prompt
from app.ai.repetition import text_hash
from app.ai.split import SplitAsker, split_message
from app.ai.validation import InvalidMessageError, validate_message
from app.metrics import ServiceMetrics
from app.models import ClaimedMessage, LeadContext
from app.outbound import AuthError, OutboundError
from app.processing.endings import Endings, Outcome, log_fields
from app.processing.invocation import Invocation
from app.processing.window import next_opening, utc_now, window_timezone
from app.store.rpc import DatabaseError
from app.store.store import (
    FailureBrake,
    Lease,
    Pacing,
    SaveAnswer,
    StoppedContact,
    Store,
    UnreadableLead,
)
from app.text import clamp_int32

log = logging.getLogger("campaign_queue")

MAX_DELAY_BETWEEN_PARTS_S = 30.0
SLOT_TRIES = 3
# take_inbox_slot's answers for a contact who may not be written to any more.
STOP_REASONS = ("opted out", "replied")

__all__ = ["MessagePipeline", "Outcome"]


class Writer(SplitAsker, Protocol):
    async def generate(
        self,
        *,
        model: str,
        system: str,
        user: str,
        deadline: float | None = None,
        session_id: str | None = None,
    ) -> Generation: ...


@dataclass(frozen=True)
class Written:
    """A message's text and parts, and what writing them cost (None: reused, not written)."""

    text: str
    parts: list[str]
    tokens: int | None = None
    generation_ms: int | None = None
    split_ms: int | None = None
    cost_usd: float | None = None

    def after(self, earlier: Written) -> Written:
        """This text, with the cost of an earlier one written for the same message added."""
        return replace(
            self,
            tokens=_plus(self.tokens, earlier.tokens),
            generation_ms=_plus(self.generation_ms, earlier.generation_ms),
            split_ms=_plus(self.split_ms, earlier.split_ms),
            cost_usd=_plus(self.cost_usd, earlier.cost_usd),
        )


N = TypeVar("N", int, float)


def _plus(a: N | None, b: N | None) -> N | None:
    return b if a is None else a if b is None else a + b


class MessageSender(Protocol):
    async def send(
        self, conversation_id: str, text: str, idempotency_key: str, deadline: float | None = None
    ) -> str | None: ...


class MessagePipeline:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        sender: MessageSender,
        *,
        default_model: str,
        send_timeout_s: float = 10.0,
        pacing: Pacing | None = None,
        brake: FailureBrake | None = None,
        reply_stop_days: int | None = None,
        repetition_guard: bool = True,
        lead_local_window: bool = False,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or ServiceMetrics()
        self._writer = writer
        self._sender = sender
        self._default_model = default_model
        self._send_timeout_s = send_timeout_s
        self._pacing = pacing or Pacing()
        self._reply_stop_days = reply_stop_days  # REPLY_STOP_DAYS (None: the database's 30)
        self._repetition_guard = repetition_guard
        self._lead_local_window = lead_local_window
        self._endings = Endings(store, brake)

    async def run(
        self,
        message: ClaimedMessage,
        lead: LeadContext | UnreadableLead | StoppedContact | None,
        invocation: Invocation,
    ) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = await self._run(message, lead, invocation)
        except DatabaseError as exc:
            outcome = await self._endings.after_database_error(message, invocation, exc)
        except Exception as exc:  # a bug must not fail the other messages
            log.exception("unexpected error", extra=log_fields(message, "error", started))
            error = DatabaseError(f"internal error: {type(exc).__name__}")
            outcome = await self._endings.after_database_error(message, invocation, error)
        finally:
            invocation.leases.release(Lease.of(message))
        if outcome not in (Outcome.RETRIED, Outcome.FAILED):  # endings logged those, with cause
            log.info(f"message {outcome.value}", extra=log_fields(message, outcome.value, started))
        return outcome

    async def _run(
        self,
        message: ClaimedMessage,
        lead: LeadContext | UnreadableLead | StoppedContact | None,
        invocation: Invocation,
    ) -> Outcome:
        config = message.config
        endings = self._endings
        if invocation.should_stop:
            return await endings.release(message, invocation, Outcome.RELEASED)
        if message.run.status != "running":
            return await endings.release(message, invocation, Outcome.PAUSED)
        tz = window_timezone(message.phone_number, config.timezone, self._lead_local_window)
        opening = next_opening(utc_now(), config.start_time, config.end_time, tz)
        if opening is not None:
            why = f"outside the send window ({tz}); next opening {opening.isoformat()}"
            # The lead's zone is kept on the message: the skip reads its lateness in it.
            kept = tz if self._lead_local_window else None
            return await endings.hold_back(message, invocation, "window", why, opening, kept)
        if not config.inbox_status.connected:
            return await endings.pause_for_inbox(message, invocation, config.inbox_status.status)
        if lead is None:
            return await endings.skip(message, invocation, "lead not found")
        if isinstance(lead, UnreadableLead):
            return await endings.fail(message, invocation, lead.error, retryable=False)
        if isinstance(lead, StoppedContact):  # opted out or replied: before any LLM call
            return await endings.skip(message, invocation, lead.reason)

        lease = Lease.of(message)
        asked_at = time.monotonic()
        started = await self._store.start(lease)
        if not started.ok:
            return await endings.refused(message, invocation, started.reason)
        invocation.leases.renewed(lease, asked_at)

        try:
            if message.has_generated_parts:  # resuming: reuse the text and parts already sent
                parts = list(message.message_parts or [])
                written = Written(message.generated_message or "\n".join(parts), parts)
            else:
                written = await self._write(message, lead, invocation)
            hash_ = self._text_hash(message, lead, written.text)
            saved = await self._save(lease, written, hash_, invocation)
            if saved.reason == "repeated":
                # The inbox sent this text to someone else today (or, for a text saved by an
                # earlier attempt and held back, since its own claim lapsed): written once
                # more, told to vary it; the first attempt's tokens and cost count with it.
                written = (await self._write(message, lead, invocation, vary=True)).after(written)
                hash_ = self._text_hash(message, lead, written.text)
                saved = await self._save(lease, written, hash_, invocation)
            if not saved.ok or saved.conversation_id is None:
                return await endings.refused(message, invocation, saved.reason, saved.inbox_status)
            parts = written.parts
            not_sent = await self._take_slot(message, invocation)
            if not_sent is not None:
                return not_sent
            outcome = await self._send_parts(message, parts, str(saved.conversation_id), invocation)
        except AuthError as exc:
            invocation.circuit.trip(str(exc))
            log.error("key or credit refused", extra=log_fields(message, "auth", error=str(exc)))
            invocation.logs.add(
                message.run_id,
                "auth",
                str(exc),
                level="error",
                lead_id=message.lead_id,
                message_id=message.id,
            )
            return await endings.release(message, invocation, Outcome.RELEASED)
        except OutboundError as exc:
            # The model or this input (moderation), not the far end: no circuit failure.
            if not isinstance(exc, InvalidMessageError | ModerationError):
                invocation.circuit.failure(str(exc))
            send_status = exc.status if exc.at_send_endpoint else None
            return await endings.fail(
                message, invocation, str(exc), retryable=exc.retryable, send_status=send_status
            )
        invocation.circuit.success()
        return outcome

    def _text_hash(self, message: ClaimedMessage, lead: LeadContext, text: str) -> str | None:
        """The repetition guard's hash, for a first part only: a message partly delivered
        goes on with its text, whatever the inbox sent since."""
        if not self._repetition_guard or message.parts_sent > 0:
            return None
        return text_hash(text, name=lead.client_name, company=lead.company)

    async def _save(
        self, lease: Lease, written: Written, hash_: str | None, invocation: Invocation
    ) -> SaveAnswer:
        asked_at = time.monotonic()
        saved = await self._store.save_generated(
            lease,
            text=written.text,
            parts=written.parts,
            ai_tokens_used=clamp_int32(written.tokens),
            ai_generation_time_ms=clamp_int32(written.generation_ms),
            split_time_ms=clamp_int32(written.split_ms),
            ai_cost_usd=written.cost_usd,
            text_hash=hash_,
        )
        if saved.ok:
            invocation.leases.renewed(lease, asked_at)
        return saved

    async def _write(
        self,
        message: ClaimedMessage,
        lead: LeadContext,
        invocation: Invocation,
        *,
        vary: bool = False,
    ) -> Written:
        config = message.config
        model = config.model or self._default_model
        session_id = str(message.run_id)  # a run's calls share a provider and its prompt cache
        generation = await self._writer.generate(
            model=model,
            system=system_prompt(config.ai_instructions),
            user=user_prompt(lead, vary=vary),
            deadline=invocation.deadline,
            session_id=session_id,
        )
        text = validate_message(generation.text)
        self._metrics.llm_call("generate", generation.elapsed_ms)
        tokens, split_ms, cost_usd = generation.tokens, None, generation.cost_usd
        parts = [text]
        if config.split_messages:
            split = await split_message(
                self._writer,
                text,
                model=model,
                max_parts=config.max_split_parts,
                splitter=config.splitter,
                deadline=invocation.deadline,
                session_id=session_id,
            )
            parts, tokens, split_ms = split.parts, tokens + split.tokens, split.elapsed_ms
            if split.asked:
                self._metrics.llm_call("split", split.elapsed_ms)
            if split.cost_usd is not None:
                cost_usd = (cost_usd or 0.0) + split.cost_usd
            if split.fallback_reason:
                invocation.logs.add(
                    message.run_id,
                    "split",
                    "local splitter used: " + split.fallback_reason,
                    level="warning",
                    lead_id=message.lead_id,
                    message_id=message.id,
                )
        self._metrics.cost(cost_usd)
        return Written(text, parts, tokens, generation.elapsed_ms, split_ms, cost_usd)

    async def _take_slot(self, message: ClaimedMessage, invocation: Invocation) -> Outcome | None:
        """The inbox's slot for the first part (pacing): None to send now, else how it ended.

        The claim said when the slot opens; the wait holds a lease the heartbeat renews. A
        slot another message took meanwhile is waited for while the budget lasts; a daily cap
        releases the message untouched, for the next day. A shutdown (SIGTERM) ends the wait at
        once and releases the message as a spent budget does: nothing of it has gone out yet.
        """
        if message.parts_sent > 0:  # only first parts are paced
            return None
        if not self._pacing.on and message.config.slot_in_s is None:
            return None  # pacing off, and no row of this inbox's own: nothing to take
        lease = Lease.of(message)
        early_s = (message.config.slot_in_s or 0.0) - (time.monotonic() - message.claimed_at)
        reason = "slot"
        if 0 < early_s <= invocation.deadline - time.monotonic():  # else: released below
            waited = await invocation.wait(early_s)
        else:
            waited = True
        tries = 0
        while waited and tries < SLOT_TRIES:
            asked_at = time.monotonic()
            slot = await self._store.take_inbox_slot(
                lease, self._pacing, invocation.leases.lock_timeout_s, self._reply_stop_days
            )
            if slot.reason == "lock_lost":  # another worker's, or expired: send nothing
                return await self._endings.refused(message, invocation, "lock_lost")
            invocation.leases.renewed(lease, asked_at)  # any other answer renewed the lease
            if slot.ok:
                return None
            if slot.reason in STOP_REASONS:  # a STOP or a reply came in while it was written
                return await self._endings.skip(message, invocation, slot.reason)
            if slot.reason == "repeated":  # its claim on the text lapsed and another took it
                return await self._endings.refused(message, invocation, "repeated")
            reason, wait_s = slot.reason or "slot", slot.wait_s or 0.0
            if (
                reason not in ("gap", "in_flight")
                or wait_s > invocation.deadline - time.monotonic()
            ):
                break
            # The inbox's last first part still being sent (its send retrying) is waited for
            # while the budget lasts, without spending a try: given back, this message would
            # only be claimed, started and saved again at the next poll.
            if reason == "gap":
                tries += 1
            waited = await invocation.wait(wait_s)
        why = f"waiting for the inbox's pace ({reason})"
        return await self._endings.hold_back(message, invocation, "pacing", why)

    async def _send_parts(
        self,
        message: ClaimedMessage,
        parts: list[str],
        conversation_id: str,
        invocation: Invocation,
    ) -> Outcome:
        lease = Lease.of(message)
        leases = invocation.leases
        # The product's delay between parts, bounded so a wait never outlives half a lease.
        delay_s = min(
            message.config.splitter.delay_between_messages / 1000,
            leases.renew_every_s * 1.5,
            MAX_DELAY_BETWEEN_PARTS_S,
        )
        for index in range(message.parts_sent, len(parts)):
            if index > message.parts_sent and delay_s > 0:
                await asyncio.sleep(delay_s)
            # A part goes out only while the lease surely outlasts the send.
            time_left = await leases.time_to_send(lease, self._send_timeout_s)
            if time_left is None:
                return await self._endings.refused(message, invocation, "lock_lost")
            key = f"{message.id}:{index}"
            send_started = time.perf_counter()
            try:
                provider_id = await self._sender.send(
                    conversation_id,
                    parts[index],
                    key,
                    deadline=time.monotonic() + time_left,
                )
            except OutboundError as exc:
                exc.at_send_endpoint = True  # the failure brake counts it
                raise
            self._metrics.sent_part(time.perf_counter() - send_started)
            asked_at = time.monotonic()
            marked = await self._store.mark_part_sent(lease, index, provider_id)
            if not marked.ok:
                return await self._endings.refused(message, invocation, marked.reason)
            leases.renewed(lease, asked_at)
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
        return await self._endings.fail(
            message, invocation, "parts recorded without completion", retryable=True
        )
