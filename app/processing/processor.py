"""One invocation of POST /process-queue: skip the late, claim in rounds, work a pool.

The pool is a sliding window: `concurrency` messages in flight, and a slot is refilled the
moment one frees, so no message waits for the slowest of a chunk. Claims happen only when a
slot is free and nothing claimed is waiting, so leases are held for work about to start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.models import ClaimedMessage, LeadContext, ProcessQueueResult
from app.processing.invocation import CircuitBreaker, Invocation
from app.processing.pipeline import MessagePipeline, Outcome
from app.settings import Settings
from app.store.rpc import DatabaseError
from app.store.store import Lease, Store

log = logging.getLogger("campaign_queue")


@dataclass(frozen=True)
class ProcessRequest:
    batch_size: int
    concurrency: int
    max_messages: int
    time_budget_s: float
    run_id: uuid.UUID | None = None
    requeue_failed: bool = False


class QueueProcessor:
    def __init__(
        self, store: Store, pipeline: MessagePipeline, settings: Settings, worker: str
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._settings = settings
        self._worker = worker

    def request(self, **overrides: object) -> ProcessRequest:
        """The settings' defaults, with the fields a caller gave."""
        values: dict[str, object] = {
            "batch_size": self._settings.batch_size,
            "concurrency": self._settings.max_concurrency,
            "max_messages": self._settings.max_messages,
            "time_budget_s": self._settings.time_budget_s,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return ProcessRequest(**values)  # type: ignore[arg-type]

    async def process(self, request: ProcessRequest) -> ProcessQueueResult:
        """Raises DatabaseError only when the database fails before any message was claimed."""
        started = time.monotonic()
        invocation = Invocation(
            worker=self._worker,
            deadline=started + request.time_budget_s,
            circuit=CircuitBreaker(self._settings.circuit_failure_threshold),
        )
        result = ProcessQueueResult()
        if request.requeue_failed and request.run_id is not None:
            requeued = await self._store.requeue_failed(request.run_id)
            invocation.logs.add(request.run_id, "requeue", f"{requeued} failed message(s) requeued")
        horizon = datetime.now(UTC) - timedelta(minutes=self._settings.skip_after_minutes)
        result.old_skipped = await self._store.mark_old_as_skipped(horizon)

        outcomes: Counter[Outcome] = Counter()
        run_ids: set[uuid.UUID] = set()
        try:
            result.claimed = await self._work(request, invocation, horizon, outcomes, run_ids)
        finally:
            await self._wrap_up(invocation, run_ids)
        result.processed = outcomes[Outcome.SENT]
        result.retried = outcomes[Outcome.RETRIED]
        result.failed = (
            outcomes[Outcome.RETRIED]
            + outcomes[Outcome.FAILED]
            + outcomes[Outcome.AUTH_FAILED]
            + outcomes[Outcome.ERROR]
        )
        result.paused = outcomes[Outcome.PAUSED]
        result.skipped = outcomes[Outcome.SKIPPED]
        result.released = outcomes[Outcome.RELEASED]
        result.duration_ms = int((time.monotonic() - started) * 1000)
        log.info(
            "invocation done",
            extra={
                "worker": self._worker,
                "ms": result.duration_ms,
                "counts": result.model_dump(exclude={"success"}),
            },
        )
        if invocation.circuit.open:
            log.error(
                "circuit open: " + (invocation.circuit.reason or ""), extra={"worker": self._worker}
            )
        return result

    async def _work(
        self,
        request: ProcessRequest,
        invocation: Invocation,
        horizon: datetime,
        outcomes: Counter[Outcome],
        run_ids: set[uuid.UUID],
    ) -> int:
        waiting: deque[tuple[ClaimedMessage, LeadContext | None]] = deque()
        in_flight: set[asyncio.Task[Outcome]] = set()
        claimed = 0
        drained = False
        try:
            while True:
                while len(in_flight) < request.concurrency and not invocation.should_stop:
                    if not waiting:
                        room = request.max_messages - claimed
                        if drained or room <= 0:
                            break
                        size = min(request.batch_size, room)
                        batch = await self._claim(request, size, horizon, claimed)
                        claimed += len(batch)
                        drained = len(batch) < size
                        if not batch:
                            break
                        contexts = await self._store.lead_contexts([m.lead_id for m in batch])
                        run_ids.update(m.run_id for m in batch)
                        waiting.extend((m, contexts.get(m.lead_id)) for m in batch)
                    message, lead = waiting.popleft()
                    in_flight.add(
                        asyncio.create_task(self._pipeline.run(message, lead, invocation))
                    )
                if not in_flight:
                    break
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                outcomes.update(_outcome(task) for task in done)
        finally:
            if in_flight:  # only on an error: let started messages finish their writes
                done, _ = await asyncio.wait(in_flight)
                outcomes.update(_outcome(task) for task in done)
            if waiting:
                released = await self._release_unstarted([m for m, _ in waiting])
                outcomes[Outcome.RELEASED] += released
        return claimed

    async def _claim(
        self, request: ProcessRequest, size: int, horizon: datetime, claimed_so_far: int
    ) -> list[ClaimedMessage]:
        try:
            return await self._store.claim(
                batch_size=size,
                one_hour_ago=horizon,
                lock_timeout_s=self._settings.lock_timeout_s,
                worker=self._worker,
                run_id=request.run_id,
            )
        except DatabaseError:
            if claimed_so_far == 0:
                raise
            log.exception(
                "claim failed mid-invocation; finishing what was started",
                extra={"worker": self._worker},
            )
            return []

    async def _release_unstarted(self, messages: list[ClaimedMessage]) -> int:
        try:
            await self._store.release([Lease.of(m) for m in messages])
        except DatabaseError:
            log.exception(
                "release failed; the leases will expire and bring them back",
                extra={"worker": self._worker},
            )
        return len(messages)

    async def _wrap_up(self, invocation: Invocation, run_ids: set[uuid.UUID]) -> None:
        try:
            finished = await self._store.finalize_runs(list(run_ids))
            for run_id in finished:
                invocation.logs.add(run_id, "completed", "run completed: nothing left to send")
            await self._store.log_steps(invocation.logs.entries)
        except DatabaseError:
            log.exception(
                "could not finalize runs or write campaign logs", extra={"worker": self._worker}
            )


def _outcome(task: asyncio.Task[Outcome]) -> Outcome:
    """The pipeline records its own failures; an exception escaping it is a bug, counted."""
    exc = task.exception()
    if exc is None:
        return task.result()
    log.error("message task failed", exc_info=exc)
    return Outcome.ERROR
