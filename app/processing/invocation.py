"""State shared by the messages of one invocation: deadline, circuit breaker, log batch."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.processing.leases import LeaseKeeper


@dataclass
class CircuitBreaker:
    """Opens on an auth/credit error, or after `threshold` outbound failures in a row."""

    threshold: int
    failures_in_a_row: int = 0
    reason: str | None = None
    on_auth_error: bool = False  # a key or credit problem: the call answers 502 for alerting

    @property
    def open(self) -> bool:
        return self.reason is not None

    def success(self) -> None:
        self.failures_in_a_row = 0

    def failure(self, error: str) -> None:
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.threshold and self.reason is None:
            self.reason = f"{self.failures_in_a_row} outbound failures in a row, last: {error}"

    def trip(self, reason: str) -> None:
        """An auth/credit error: every other message would fail the same way."""
        if self.reason is None:
            self.reason = reason
            self.on_auth_error = True


@dataclass
class StepLog:
    """campaign_logs entries, written in one log_campaign_steps call per claim round."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def take(self) -> list[dict[str, Any]]:
        taken, self.entries = self.entries, []
        return taken

    def add(
        self,
        run_id: uuid.UUID | None,
        step: str,
        message: str,
        *,
        level: str = "info",
        lead_id: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.entries.append(
            {
                "run_id": str(run_id) if run_id else None,
                "step_name": step,
                "level": level,
                "message": message,
                "details": details or {},
                "lead_id": str(lead_id) if lead_id else None,
                "message_id": str(message_id) if message_id else None,
            }
        )


@dataclass
class Invocation:
    """Built inside the event loop of the call it belongs to."""

    worker: str
    deadline: float  # time.monotonic(): no new message starts after it
    circuit: CircuitBreaker
    leases: LeaseKeeper
    logs: StepLog = field(default_factory=StepLog)
    _loop: asyncio.AbstractEventLoop = field(
        default_factory=asyncio.get_running_loop, init=False, repr=False
    )
    _stopped: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def stop(self) -> None:
        """A shutdown: the call acts as if its budget ran out now, and its waits end at once.

        Safe in a signal handler, which runs between two steps of the event loop: the event
        is set by the loop, woken through its self-pipe (as asyncio.run wakes it on SIGINT);
        without that the loop may sleep on until its next timer.
        """
        self.deadline = min(self.deadline, time.monotonic())
        self._loop.call_soon_threadsafe(self._stopped.set)

    async def wait(self, seconds: float) -> bool:
        """Sleeps `seconds`; False, at once, when the call is stopped meanwhile (or was)."""
        try:
            await asyncio.wait_for(self._stopped.wait(), seconds)
        except TimeoutError:
            return True
        return False

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    @property
    def should_stop(self) -> bool:
        return self.out_of_time or self.circuit.open
