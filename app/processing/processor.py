"""One invocation of POST /process-queue: skip the late, claim in rounds, work a pool.

The pool is a sliding window: `concurrency` messages in flight, and a slot is refilled the
moment one frees, so no message waits for the slowest of a chunk. Claims happen only when a
slot is free and nothing claimed is waiting, so leases are held for work about to start;
a heartbeat keeps them alive meanwhile (leases.py). A claim that comes back short asks the
database when a due message could next start (cadence.py): the call waits for that while its
budget lasts, so each inbox keeps its pace between scheduler calls, and ends early only when
nothing due can start within its budget. Whatever happens, a call never returns holding a
lease it could have given back: each claimed message is worked, failed alone, or released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.models import ProcessQueueResult
from app.processing import cadence as cadence_rules
from app.processing.cadence import Cadence
from app.processing.claims import Claimer, Waiting
from app.processing.endings import Outcome
from app.processing.invocation import CircuitBreaker, Invocation
from app.processing.leases import LeaseKeeper
from app.processing.pipeline import MessagePipeline
from app.processing.window import utc_now
from app.settings import Settings
from app.store.rpc import DatabaseError
from app.store.store import Pacing, Store

log = logging.getLogger("campaign_queue")

SKIP_LATE_LIMIT = 5000  # late messages skipped per call: a backlog shrinks over a few calls


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
        self._pacing = Pacing.from_settings(settings)
        self._claimer = Claimer(store, settings, worker, self._pacing)
        self._running: dict[int, Invocation] = {}  # by id(): the calls in progress
        self._draining = False

    def drain(self) -> None:
        """A shutdown is coming (SIGTERM): every call in progress acts as if its time budget
        ran out now (it starts no message, finishes those it started, gives the rest back, and
        a message waiting for its inbox's slot stops waiting), and a call that begins from now
        on claims nothing."""
        self._draining = True
        for invocation in self._running.values():
            invocation.stop()

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
            deadline=started if self._draining else started + request.time_budget_s,
            circuit=CircuitBreaker(self._settings.circuit_failure_threshold),
            leases=LeaseKeeper(self._store, self._settings.lock_timeout_s, self._worker),
        )
        self._running[id(invocation)] = invocation
        try:
            return await self._process(request, invocation, started)
        finally:
            del self._running[id(invocation)]

    async def _process(
        self, request: ProcessRequest, invocation: Invocation, started: float
    ) -> ProcessQueueResult:
        result = ProcessQueueResult()
        if request.requeue_failed and request.run_id is not None:
            requeued = await self._store.requeue_failed(request.run_id)
            invocation.logs.add(request.run_id, "requeue", f"{requeued} failed message(s) requeued")
        await self._resume_reconnected(invocation)
        horizon = utc_now() - timedelta(minutes=self._settings.skip_after_minutes)
        result.old_skipped = await self._skip_late(horizon, request.run_id)

        outcomes: Counter[Outcome] = Counter()
        run_ids: set[uuid.UUID] = set()
        heartbeat = asyncio.create_task(invocation.leases.heartbeat())
        try:
            result.claimed = await self._work(request, invocation, horizon, outcomes, run_ids)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._wrap_up(invocation, run_ids, outcomes)
        result.processed = outcomes[Outcome.SENT]
        result.retried = outcomes[Outcome.RETRIED]
        result.failed = _failed_attempts(outcomes)
        result.paused = outcomes[Outcome.PAUSED]
        result.skipped = outcomes[Outcome.SKIPPED]
        result.released = outcomes[Outcome.RELEASED]
        result.lease_lost = outcomes[Outcome.LEASE_LOST]
        result.circuit_open = invocation.circuit.reason
        result.success = not invocation.circuit.on_auth_error
        result.duration_ms = int((time.monotonic() - started) * 1000)
        log.info(
            "invocation done",
            extra={
                "worker": self._worker,
                "ms": result.duration_ms,
                "counts": result.model_dump(exclude={"success", "circuit_open"}),
            },
        )
        if invocation.circuit.open:
            log.error(
                "circuit open: " + (invocation.circuit.reason or ""),
                extra={"worker": self._worker, "error": invocation.circuit.reason},
            )
        return result

    async def _resume_reconnected(self, invocation: Invocation) -> None:
        try:
            resumed = await self._store.resume_reconnected_runs()
        except DatabaseError as exc:
            log.warning(
                "could not resume runs whose inbox reconnected",
                extra={"worker": self._worker, "error": str(exc)},
            )
            return
        for run_id in resumed:
            invocation.logs.add(run_id, "resume", "run resumed: its inbox is connected again")

    async def _skip_late(self, horizon: datetime, run_id: uuid.UUID | None) -> int:
        """A failure here must not stop sending: the next call skips what this one could not."""
        try:
            return await self._store.mark_old_as_skipped(
                horizon,
                run_id=run_id,
                limit=SKIP_LATE_LIMIT,
                lead_local_window=self._settings.lead_local_window,
            )
        except DatabaseError as exc:
            log.warning(
                "could not skip late messages", extra={"worker": self._worker, "error": str(exc)}
            )
            return 0

    async def _work(
        self,
        request: ProcessRequest,
        invocation: Invocation,
        horizon: datetime,
        outcomes: Counter[Outcome],
        run_ids: set[uuid.UUID],
    ) -> int:
        waiting: Waiting = deque()
        in_flight: set[asyncio.Task[Outcome]] = set()
        claimed = 0
        cadence = Cadence(invocation.deadline)
        try:
            while True:
                while len(in_flight) < request.concurrency and not invocation.should_stop:
                    if not waiting:
                        size = min(request.batch_size, request.max_messages - claimed)
                        if size <= 0 or cadence.poll_in_s() != 0.0:
                            break
                        claimed += await self._claim_round(
                            request, invocation, horizon, size, claimed, cadence, waiting,
                            outcomes, run_ids,
                        )  # fmt: skip
                        if not waiting:
                            continue
                    message, lead = waiting.popleft()
                    in_flight.add(
                        asyncio.create_task(self._pipeline.run(message, lead, invocation))
                    )
                poll_s = cadence.poll_in_s()
                if invocation.should_stop or claimed >= request.max_messages:
                    poll_s = None
                if not in_flight:
                    if poll_s is None:
                        break
                    # In steps, so a shutdown (drain) is seen within one.
                    await asyncio.sleep(min(poll_s, cadence_rules.PACING_POLL_S))
                    continue
                done, in_flight = await asyncio.wait(
                    in_flight,
                    timeout=poll_s if len(in_flight) < request.concurrency else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                outcomes.update(_outcome(task) for task in done)
        finally:
            if in_flight:  # only on an error: let started messages finish their writes
                done, _ = await asyncio.wait(in_flight)
                outcomes.update(_outcome(task) for task in done)
            if waiting:
                outcomes[Outcome.RELEASED] += await self._claimer.release(
                    [m for m, _ in waiting], invocation
                )
        return claimed

    async def _claim_round(
        self,
        request: ProcessRequest,
        invocation: Invocation,
        horizon: datetime,
        size: int,
        claimed_so_far: int,
        cadence: Cadence,
        waiting: Waiting,
        outcomes: Counter[Outcome],
        run_ids: set[uuid.UUID],
    ) -> int:
        """Claims one batch into `waiting`; returns how many were claimed."""
        await self._flush_logs(invocation)
        batch = await self._claimer.claim(
            invocation,
            size=size,
            horizon=horizon,
            run_id=request.run_id,
            lookahead_s=min(
                cadence_rules.PACING_LOOKAHEAD_S, max(invocation.deadline - time.monotonic(), 0)
            ),
            claimed_so_far=claimed_so_far,
        )
        cadence.found(len(batch), size)
        if cadence.drained:
            cadence.expect(await self._next_start(request, horizon))
        run_ids.update(m.run_id for m in batch.messages)
        run_ids.update(r.run_id for r in batch.unworkable if r.run_id)
        try:
            outcomes.update(await self._claimer.fail_unworkable(batch, invocation))
            ready = await self._claimer.with_contexts(batch.messages, invocation)
        except Exception:  # a bug: the batch goes back rather than wait out its lease
            log.exception("claim round failed; releasing its batch", extra={"worker": self._worker})
            ready = None
            await self._claimer.release(batch.messages, invocation)
        if ready is None:  # the database failed (or a bug): released; claim no more
            outcomes[Outcome.RELEASED] += len(batch.messages)
            cadence.stopped = True
        else:
            waiting.extend(ready)
        return len(batch)

    async def _next_start(self, request: ProcessRequest, horizon: datetime) -> float | None:
        """Seconds until a claim could find work again; None (the call ends) if unknown."""
        try:
            return await self._store.next_start(
                one_hour_ago=horizon,
                lock_timeout_s=self._settings.lock_timeout_s,
                run_id=request.run_id,
                pacing=self._pacing,
                lookahead_s=cadence_rules.PACING_LOOKAHEAD_S,
                lead_local_window=self._settings.lead_local_window,
            )
        except DatabaseError as exc:
            log.warning(
                "could not ask when work is next due; ending the call",
                extra={"worker": self._worker, "error": str(exc)},
            )
            return None

    async def _flush_logs(self, invocation: Invocation) -> None:
        """campaign_logs per claim round, so a killed process loses at most one round's."""
        entries = invocation.logs.take()
        if not entries:
            return
        try:
            await self._store.log_steps(entries)
        except DatabaseError as exc:
            log.warning(
                "could not write campaign logs", extra={"worker": self._worker, "error": str(exc)}
            )

    async def _wrap_up(
        self, invocation: Invocation, run_ids: set[uuid.UUID], outcomes: Counter[Outcome]
    ) -> None:
        try:  # finalize logs each run it completes (so do the other paths that complete runs)
            await self._store.finalize_runs(list(run_ids))
        except DatabaseError as exc:
            log.error("could not finalize runs", extra={"worker": self._worker, "error": str(exc)})
        await self._flush_logs(invocation)
        if run_ids:  # worked messages: the status's counts and the turns want tidying
            try:
                await self._store.tidy()
            except DatabaseError as exc:
                log.warning("could not tidy", extra={"worker": self._worker, "error": str(exc)})
        # The call's end, for the status (a scheduler that hung up never reads the answer). A
        # circuit opening also opens the provider outage that holds lateness back (the
        # service, not the scheduler, held messages up); a sent message ends it.
        counts = {
            "claimed": sum(outcomes.values()),
            "processed": outcomes[Outcome.SENT],
            "failed": _failed_attempts(outcomes),
            "retried": outcomes[Outcome.RETRIED],
        }
        circuit = invocation.circuit
        try:
            await self._store.record_call(
                self._worker, counts, circuit.reason, circuit.on_auth_error
            )
        except DatabaseError as exc:
            log.warning(
                "could not record the call's end and the provider's state",
                extra={"worker": self._worker, "error": str(exc)},
            )


def _failed_attempts(outcomes: Counter[Outcome]) -> int:
    """The answer's `failed`: attempts that failed, the retried ones included."""
    return sum(outcomes[o] for o in (Outcome.RETRIED, Outcome.FAILED, Outcome.ERROR))


def _outcome(task: asyncio.Task[Outcome]) -> Outcome:
    """The pipeline records its own failures; an exception escaping it is a bug, counted."""
    exc = task.exception()
    if exc is None:
        return task.result()
    log.error("message task failed", exc_info=exc)
    return Outcome.ERROR
