"""The typed Store: every SQL function of the queue, over one RPC seam."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.models import ClaimedMessage, LeadContext
from app.store.rpc import DatabaseError, Rpc


@dataclass(frozen=True)
class Lease:
    """What fences every write of a claimed message."""

    message_id: uuid.UUID
    lock_token: uuid.UUID

    @classmethod
    def of(cls, message: ClaimedMessage) -> Lease:
        return cls(message.id, message.lock_token)


@dataclass(frozen=True)
class Answer:
    """What a fenced SQL function answered: ok, or the reason it refused."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class SaveAnswer(Answer):
    conversation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PartAnswer(Answer):
    completed: bool = False


@dataclass(frozen=True)
class FailAnswer(Answer):
    status: str | None = None  # 'pending' (a retry is scheduled) or 'failed'
    retry_count: int | None = None
    next_attempt_at: datetime | None = None


class Store:
    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    async def _call(self, function: str, **args: Any) -> Any:
        return await self._rpc.call(function, args)

    async def claim(
        self,
        *,
        batch_size: int,
        one_hour_ago: datetime | None,
        lock_timeout_s: int,
        worker: str,
        run_id: uuid.UUID | None = None,
    ) -> list[ClaimedMessage]:
        items = await self._call(
            "get_and_lock_campaign_messages",
            p_batch_size=batch_size,
            p_one_hour_ago=one_hour_ago,
            p_lock_timeout_s=lock_timeout_s,
            p_worker=worker,
            p_run_id=run_id,
        )
        return [ClaimedMessage.model_validate(item) for item in _as_list(items)]

    async def mark_old_as_skipped(self, one_hour_ago: datetime) -> int:
        return int(
            await self._call("mark_old_campaign_messages_as_skipped", p_one_hour_ago=one_hour_ago)
        )

    async def lead_contexts(self, lead_ids: list[uuid.UUID]) -> dict[uuid.UUID, LeadContext]:
        if not lead_ids:
            return {}
        data = await self._call("get_lead_contexts", p_lead_ids=sorted(set(lead_ids), key=str))
        return {uuid.UUID(k): LeadContext.model_validate(v) for k, v in (data or {}).items()}

    async def start(self, lease: Lease) -> Answer:
        data = await self._call("start_campaign_message", **_fence(lease))
        return Answer(bool(data["ok"]), data.get("reason"))

    async def save_generated(
        self,
        lease: Lease,
        *,
        text: str,
        parts: list[str],
        ai_tokens_used: int | None,
        ai_generation_time_ms: int | None,
        split_time_ms: int | None,
    ) -> SaveAnswer:
        data = await self._call(
            "save_generated_message",
            **_fence(lease),
            p_generated_message=text,
            p_parts=parts,
            p_ai_tokens_used=ai_tokens_used,
            p_ai_generation_time_ms=ai_generation_time_ms,
            p_split_time_ms=split_time_ms,
        )
        conversation = data.get("conversation_id")
        return SaveAnswer(
            bool(data["ok"]), data.get("reason"), uuid.UUID(conversation) if conversation else None
        )

    async def mark_part_sent(
        self, lease: Lease, part_index: int, provider_message_id: str | None
    ) -> PartAnswer:
        data = await self._call(
            "mark_message_part_sent",
            **_fence(lease),
            p_part_index=part_index,
            p_provider_message_id=provider_message_id,
        )
        return PartAnswer(bool(data["ok"]), data.get("reason"), bool(data.get("completed")))

    async def fail(self, lease: Lease, error: str, *, retryable: bool) -> FailAnswer:
        data = await self._call(
            "fail_campaign_message", **_fence(lease), p_error=error, p_retryable=retryable
        )
        next_at = data.get("next_attempt_at")
        return FailAnswer(
            bool(data.get("ok")),
            data.get("reason"),
            data.get("status"),
            data.get("retry_count"),
            datetime.fromisoformat(next_at) if isinstance(next_at, str) else None,
        )

    async def skip(self, lease: Lease, reason: str) -> Answer:
        data = await self._call("skip_campaign_message", **_fence(lease), p_reason=reason)
        return Answer(bool(data["ok"]), data.get("reason"))

    async def release(self, leases: list[Lease], not_before: datetime | None = None) -> int:
        if not leases:
            return 0
        messages = [{"id": str(x.message_id), "lock_token": str(x.lock_token)} for x in leases]
        return int(
            await self._call(
                "release_campaign_messages", p_messages=messages, p_not_before=not_before
            )
        )

    async def pause_run(self, run_id: uuid.UUID, reason: str) -> bool:
        return bool(await self._call("pause_campaign_run", p_run_id=run_id, p_reason=reason))

    async def resume_run(self, run_id: uuid.UUID) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("resume_campaign_run", p_run_id=run_id)
        return data

    async def finalize_runs(self, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if not run_ids:
            return []
        data = await self._call("finalize_campaign_runs", p_run_ids=sorted(set(run_ids), key=str))
        return [uuid.UUID(str(i)) for i in _as_list(data)]

    async def requeue_failed(self, run_id: uuid.UUID) -> int:
        return int(await self._call("requeue_failed_campaign_messages", p_run_id=run_id))

    async def log_steps(self, entries: list[dict[str, Any]]) -> int:
        if not entries:
            return 0
        return int(await self._call("log_campaign_steps", p_entries=entries))

    async def ping(self) -> None:
        await self._rpc.ping()


def _fence(lease: Lease) -> dict[str, Any]:
    return {"p_message_id": lease.message_id, "p_lock_token": lease.lock_token}


def _as_list(data: Any) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise DatabaseError(f"expected a JSON array, got {type(data).__name__}")
    return data
