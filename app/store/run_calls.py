"""The run- and queue-level calls of the Store: pause, resume, finalize, housekeeping, the
call record, the status and the logs, over the one RPC seam."""

from __future__ import annotations

import uuid
from typing import Any

from app.status_page import STATUS_RUNS_DEFAULT
from app.store.answers import Pacing
from app.store.rpc import DatabaseError, Rpc, answer_ids, answer_int, answer_object


class RunCalls:
    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    async def _call(self, function: str, **args: Any) -> Any:
        return await self._rpc.call(function, args)

    async def _object(self, function: str, **args: Any) -> dict[str, Any]:
        return answer_object(function, await self._rpc.call(function, args))

    async def pause_run(self, run_id: uuid.UUID, reason: str) -> bool:
        return bool(await self._call("pause_campaign_run", p_run_id=run_id, p_reason=reason))

    async def resume_run(self, run_id: uuid.UUID) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("resume_campaign_run", p_run_id=run_id)
        return data

    async def finalize_runs(self, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if not run_ids:
            return []
        data = await self._call("finalize_campaign_runs", p_run_ids=sorted(set(run_ids), key=str))
        return answer_ids("finalize_campaign_runs", data)

    async def tidy(self) -> dict[str, Any]:
        """The end-of-call housekeeping: status counts folded, turns of ended runs forgotten."""
        return answer_object("tidy_campaign_queue", await self._call("tidy_campaign_queue"))

    async def resume_reconnected_runs(self) -> list[uuid.UUID]:
        """Runs paused because their inbox was down, resumed now that it is connected."""
        return answer_ids(
            "resume_reconnected_campaign_runs", await self._call("resume_reconnected_campaign_runs")
        )

    async def record_call(
        self,
        worker: str,
        counts: dict[str, int],
        circuit_open: str | None,
        answered_502: bool,
    ) -> bool:
        """A call's end, for the status: the worker's last call (counts: claimed, processed,
        failed, retried, as the call answers them), its circuit opening if any, and the
        provider outage (opened by an opening, ended by a sent message). Returns whether an
        outage is open."""
        data = await self._call(
            "record_campaign_queue_call",
            p_worker=worker,
            **{f"p_{k}": counts.get(k, 0) for k in ("claimed", "processed", "failed", "retried")},
            p_circuit_open=circuit_open,
            p_answered_502=answered_502,
        )
        return bool(data)

    async def requeue_failed(self, run_id: uuid.UUID) -> int:
        function = "requeue_failed_campaign_messages"
        return answer_int(function, await self._call(function, p_run_id=run_id))

    async def log_steps(self, entries: list[dict[str, Any]]) -> int:
        if not entries:
            return 0
        return answer_int(
            "log_campaign_steps", await self._call("log_campaign_steps", p_entries=entries)
        )

    async def queue_status(
        self,
        run_id: uuid.UUID | None = None,
        pacing: Pacing | None = None,
        limit: int = STATUS_RUNS_DEFAULT,
        offset: int = 0,
        status: str | None = None,
    ) -> dict[str, Any]:
        """campaign_queue_status (README: "Seeing the queue"): queue, runs, inboxes, failures,
        retrying, throughput, circuit, last_call.

        pacing: the service's INBOX_* settings, for the ETAs of inboxes without overrides
        (without it the database assumes the defaults, 20 / 60 / 300). limit: the runs shown
        at most (app.status_page: 1 to 500); runs_total counts them all. offset: the runs
        passed over first; status: those of one status, or "all" (None: running and paused).
        """
        args: dict[str, Any] = {"p_run_id": run_id, "p_limit": limit}
        if offset or status is not None:  # the older call's arguments otherwise
            args.update(p_offset=offset, p_status=status)
        if pacing is not None:
            args.update(pacing.args(), p_inbox_timezone=pacing.timezone)
        data = await self._call("campaign_queue_status", **args)
        if not isinstance(data, dict):
            raise DatabaseError(f"expected a JSON object, got {type(data).__name__}")
        return data

    async def ping(self) -> None:
        await self._rpc.ping()
