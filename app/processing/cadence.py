"""When a call claims next: at once while the queue has work, then, with pacing on, every
poll while claims keep finding slots within a gap's reach; never once the queue is dry."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.store.store import Pacing

PACING_LOOKAHEAD_S = 3.0  # a slot opening this soon is claimed now; the worker waits for it
PACING_POLL_S = 0.5  # how often a paced call looks again for inboxes whose slot opened
PACING_POLL_MIN_S = 0.05  # ... and a quarter of the gap when the gap is short (bench/pacing.py)


@dataclass
class Cadence:
    """When the next claim may happen: at once until the queue runs dry, then (pacing on)
    every PACING_POLL_S while claims keep finding work within a gap's reach."""

    pacing: Pacing
    drained: bool = False
    stopped: bool = False  # the database failed after a claim: claim no more
    next_poll_at: float = 0.0
    last_found_at: float | None = None  # when a claim last found work

    def found(self, count: int, asked: int) -> None:
        now = time.monotonic()
        self.drained = count < asked
        self.next_poll_at = now + max(
            min(PACING_POLL_S, self.pacing.min_gap_s / 4), PACING_POLL_MIN_S
        )
        if count:
            self.last_found_at = now

    def poll_in_s(self) -> float | None:
        """None when no further claim will come; else seconds until the next one."""
        if self.stopped:
            return None
        if not self.drained:
            return 0.0
        if not self.pacing.on:
            return None
        now = time.monotonic()
        if self.last_found_at is None:
            return None  # nothing due at all: no reason to wait for a slot
        if now - self.last_found_at > self.pacing.max_gap_s + PACING_LOOKAHEAD_S:
            return None  # nothing paced found for a whole gap: the queue is dry
        return max(self.next_poll_at - now, 0.0)
