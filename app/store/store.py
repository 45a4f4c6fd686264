"""The typed Store: every SQL function of the queue, over one RPC seam."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from app.models import ClaimedMessage, LeadContext
from app.store.answers import (
    Answer,
    Claim,
    FailAnswer,
    FailureBrake,
    InboxBraked,
    LeadContexts,
    Lease,
    Pacing,
    PartAnswer,
    SaveAnswer,
    SlotAnswer,
    StoppedContact,
    StopReasons,
    UnreadableLead,
    UnworkableRow,
)
from app.store.parsing import as_list, braked_inbox, fields_of, unworkable_row
from app.store.rpc import DatabaseError, answer_ids, answer_int, answer_object
from app.store.run_calls import RunCalls

__all__ = [
    "Answer",
    "Claim",
    "FailAnswer",
    "FailureBrake",
    "InboxBraked",
    "LeadContexts",
    "Lease",
    "Pacing",
    "PartAnswer",
    "SaveAnswer",
    "SlotAnswer",
    "StopReasons",
    "StoppedContact",
    "Store",
    "UnreadableLead",
    "UnworkableRow",
]


class Store(RunCalls):
    """A message's steps (claim, contexts, generation, slot, parts, endings); the run- and
    queue-level calls come from RunCalls."""

    async def claim(
        self,
        *,
        batch_size: int,
        one_hour_ago: datetime | None,
        lock_timeout_s: int,
        worker: str,
        run_id: uuid.UUID | None = None,
        pacing: Pacing | None = None,
        lookahead_s: float = 0.0,
        lead_local_window: bool = False,
    ) -> Claim:
        items = await self._call(
            "get_and_lock_campaign_messages",
            p_batch_size=batch_size,
            p_one_hour_ago=one_hour_ago,
            p_lock_timeout_s=lock_timeout_s,
            p_worker=worker,
            p_run_id=run_id,
            **(pacing.args() if pacing else {}),
            p_lookahead_s=max(lookahead_s, 0.0),
            **_lead_local(lead_local_window),
        )
        messages: list[ClaimedMessage] = []
        unworkable: list[UnworkableRow] = []
        for item in as_list(items):
            try:
                messages.append(ClaimedMessage.model_validate(item))
            except ValidationError as exc:
                unworkable.append(unworkable_row(item, exc))
        return Claim(messages, unworkable)

    async def next_start(
        self,
        *,
        one_hour_ago: datetime | None,
        lock_timeout_s: int,
        run_id: uuid.UUID | None = None,
        pacing: Pacing | None = None,
        lookahead_s: float = 0.0,
        lead_local_window: bool = False,
    ) -> float | None:
        """Seconds until a claim could next find a due message (each inbox's own gap, cap
        and turn, each run's window); None when nothing due is waiting."""
        function = "campaign_queue_next_start"
        data = await self._call(
            function,
            p_one_hour_ago=one_hour_ago,
            p_run_id=run_id,
            **(pacing.args() if pacing else {}),
            p_lookahead_s=max(lookahead_s, 0.0),
            p_lock_timeout_s=lock_timeout_s,
            **_lead_local(lead_local_window),
        )
        if data is None:
            return None
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise DatabaseError(f"{function} answered {type(data).__name__}, not a number")
        return max(float(data), 0.0)

    async def mark_old_as_skipped(
        self,
        one_hour_ago: datetime,
        *,
        run_id: uuid.UUID | None = None,
        limit: int = 5000,
        lead_local_window: bool = False,
    ) -> int:
        function = "mark_old_campaign_messages_as_skipped"
        data = await self._call(
            function,
            p_one_hour_ago=one_hour_ago,
            p_run_id=run_id,
            p_limit=limit,
            **_lead_local(lead_local_window),
        )
        return answer_int(function, data)

    async def lead_contexts(self, lead_ids: list[uuid.UUID]) -> LeadContexts:
        contexts, _ = await self.message_contexts(lead_ids, [], reply_stop_days=None)
        return contexts

    async def message_contexts(
        self,
        lead_ids: list[uuid.UUID],
        message_ids: list[uuid.UUID],
        *,
        reply_stop_days: int | None,
    ) -> tuple[LeadContexts, StopReasons]:
        """The leads' contexts and, in the same call, which of the messages may not be sent
        ('opted out', 'replied'; REPLY_STOP_DAYS, 0: stop-on-reply off)."""
        if not lead_ids and not message_ids:
            return {}, {}
        function = "get_lead_contexts"
        args: dict[str, Any] = {"p_lead_ids": sorted(set(lead_ids), key=str)}
        if message_ids:
            args["p_message_ids"] = sorted(set(message_ids), key=str)
            args["p_reply_stop_days"] = reply_stop_days
        # an unreadable answer must not read as "every lead is gone"
        data = answer_object(function, await self._rpc.call(function, args))
        stops: StopReasons = {}
        stop_data = data.pop("stop_reasons", None)
        if isinstance(stop_data, dict):
            for key, reason in stop_data.items():
                try:
                    stops[uuid.UUID(str(key))] = str(reason)
                except ValueError:
                    continue
        contexts: LeadContexts = {}
        for key, value in data.items():
            try:
                lead_id = uuid.UUID(str(key))
            except ValueError:
                continue
            try:
                contexts[lead_id] = LeadContext.model_validate(value)
            except ValidationError as exc:
                contexts[lead_id] = UnreadableLead("lead context unreadable: " + fields_of(exc))
        return contexts, stops

    async def start(self, lease: Lease) -> Answer:
        data = await self._object("start_campaign_message", **_fence(lease))
        return Answer(bool(data.get("ok")), data.get("reason"))

    async def save_generated(
        self,
        lease: Lease,
        *,
        text: str,
        parts: list[str],
        ai_tokens_used: int | None,
        ai_generation_time_ms: int | None,
        split_time_ms: int | None,
        ai_cost_usd: float | None = None,
        text_hash: str | None = None,
    ) -> SaveAnswer:
        data = await self._object(
            "save_generated_message",
            **_fence(lease),
            p_generated_message=text,
            p_parts=parts,
            p_ai_tokens_used=ai_tokens_used,
            p_ai_generation_time_ms=ai_generation_time_ms,
            p_split_time_ms=split_time_ms,
            p_ai_cost_usd=ai_cost_usd,
            **({"p_text_hash": text_hash} if text_hash is not None else {}),
        )
        conversation = data.get("conversation_id")
        inbox_status = data.get("inbox_status")
        return SaveAnswer(
            bool(data.get("ok")),
            data.get("reason"),
            uuid.UUID(conversation) if conversation else None,
            str(inbox_status) if inbox_status is not None else None,
        )

    async def take_inbox_slot(
        self,
        lease: Lease,
        pacing: Pacing,
        lock_timeout_s: float | None = None,
        reply_stop_days: int | None = None,
    ) -> SlotAnswer:
        """The inbox's slot for this message's first part, or how long until there is one.

        lock_timeout_s: the service's lease, which tells a live send of the inbox's last first
        part from a worker that died (its first part is waited for only while it lives).
        reply_stop_days: REPLY_STOP_DAYS, for the contact's re-check (answers 'opted out' or
        'replied' when it may not be written to any more).
        """
        args = {**_fence(lease), **pacing.args(), "p_inbox_timezone": pacing.timezone}
        if lock_timeout_s is not None:
            args["p_lock_timeout_s"] = lock_timeout_s
        if reply_stop_days is not None:
            args["p_reply_stop_days"] = reply_stop_days
        data = await self._object("take_inbox_slot", **args)
        wait = data.get("wait_s")
        return SlotAnswer(
            bool(data.get("ok")),
            data.get("reason"),
            float(wait) if isinstance(wait, int | float) else None,
        )

    async def mark_part_sent(
        self, lease: Lease, part_index: int, provider_message_id: str | None
    ) -> PartAnswer:
        data = await self._object(
            "mark_message_part_sent",
            **_fence(lease),
            p_part_index=part_index,
            p_provider_message_id=provider_message_id,
        )
        return PartAnswer(bool(data.get("ok")), data.get("reason"), bool(data.get("completed")))

    async def fail(
        self,
        lease: Lease,
        error: str,
        *,
        retryable: bool,
        send_status: int | None = None,
        brake: FailureBrake | None = None,
    ) -> FailAnswer:
        """send_status: the send endpoint's HTTP status when it failed this attempt; it goes
        into the inbox's send record, which may trip the failure brake (`braked`)."""
        args: dict[str, Any] = {**_fence(lease), "p_error": error, "p_retryable": retryable}
        if send_status is not None:
            args |= {"p_send_status": send_status, **(brake or FailureBrake()).args()}
        data = await self._object("fail_campaign_message", **args)
        next_at = data.get("next_attempt_at")
        return FailAnswer(
            bool(data.get("ok")),
            data.get("reason"),
            data.get("status"),
            data.get("retry_count"),
            datetime.fromisoformat(next_at) if isinstance(next_at, str) else None,
            braked_inbox(data.get("brake")),
        )

    async def skip(self, lease: Lease, reason: str) -> Answer:
        data = await self._object("skip_campaign_message", **_fence(lease), p_reason=reason)
        return Answer(bool(data.get("ok")), data.get("reason"))

    async def release(
        self,
        leases: list[Lease],
        not_before: datetime | None = None,
        lead_timezone: str | None = None,
    ) -> int:
        """Back to pending untouched; `lead_timezone` (a message held back by its lead's own
        window) is kept on the messages, so the skip reads their lateness in that zone."""
        if not leases:
            return 0
        function = "release_campaign_messages"
        messages: list[dict[str, str]] = _lease_list(leases)
        if lead_timezone:
            messages = [{**x, "lead_timezone": lead_timezone} for x in messages]
        data = await self._call(function, p_messages=messages, p_not_before=not_before)
        return answer_int(function, data)

    async def renew_leases(self, leases: list[Lease]) -> set[uuid.UUID]:
        """The fenced heartbeat: the ids whose lease this worker still holds (now renewed)."""
        if not leases:
            return set()
        data = await self._call("renew_campaign_leases", p_messages=_lease_list(leases))
        return set(answer_ids("renew_campaign_leases", data))


def _fence(lease: Lease) -> dict[str, Any]:
    return {"p_message_id": lease.message_id, "p_lock_token": lease.lock_token}


def _lead_local(on: bool) -> dict[str, Any]:
    # Only when on: with it off, the calls are exactly the ones older databases answer.
    return {"p_lead_local_window": True} if on else {}


def _lease_list(leases: list[Lease]) -> list[dict[str, str]]:
    return [{"id": str(x.message_id), "lock_token": str(x.lock_token)} for x in leases]
