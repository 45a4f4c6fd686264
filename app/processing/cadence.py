"""When a call claims next: at once while claims come back full; after a short claim, when
the database says a due message could next be taken (each inbox's own gap, cap and turn, each
run's send window: campaign_queue_next_start), if that is within the call's budget; else never.

So a call that starts while every inbox is inside its gap waits for the first slot instead of
ending with nothing, and it ends early only when nothing due can start within its budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PACING_LOOKAHEAD_S = 3.0  # a slot opening this soon is claimed now; the worker waits for it
PACING_POLL_S = 0.5  # the longest pause between two claims the database said could find work
PACING_POLL_MIN_S = 0.05  # ... the first such pause: it doubles while those claims find nothing


@dataclass
class Cadence:
    """When the next claim may happen: at once until a claim comes back short, then at the
    instant the database named (`expect`), never once it named none within the budget."""

    deadline: float  # monotonic: no claim for work that cannot start before it
    drained: bool = False
    stopped: bool = False  # the database failed after a claim: claim no more
    wake_at: float | None = None  # when a claim may find work again; None: no work is coming
    misses: int = 0  # claims in a row that found nothing

    def found(self, count: int, asked: int) -> None:
        self.drained = count < asked
        self.misses = 0 if count else self.misses + 1

    def expect(self, in_s: float | None) -> None:
        """What the database said after a short claim: seconds until a claim could find work,
        or None. Work it expects now that a claim just missed (another instance took it, a
        turn is about to be freed) is looked for again after a pause that doubles while claims
        keep missing, up to PACING_POLL_S."""
        if in_s is None:
            self.wake_at = None
            return
        pause = min(PACING_POLL_MIN_S * 2 ** max(self.misses - 1, 0), PACING_POLL_S)
        self.wake_at = time.monotonic() + max(in_s, pause if self.misses else 0.0)

    def poll_in_s(self) -> float | None:
        """None when no further claim will come; else seconds until the next one."""
        if self.stopped:
            return None
        if not self.drained:
            return 0.0
        if self.wake_at is None or self.wake_at > self.deadline:
            return None
        return max(self.wake_at - time.monotonic(), 0.0)
