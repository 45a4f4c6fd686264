"""Keeping the leases of one invocation alive while its worker is.

A claim is a lease of LOCK_TIMEOUT_S: a message not renewed for that long is claimable again.
A message may wait in the pool or generate for longer than a short lease, so a heartbeat
renews every held lease each LOCK_TIMEOUT_S / 3, fenced on (id, lock_token). Every fenced
write renews the lease too. The sender asks `time_to_send` before a part goes out: a part is
sent only while the lease surely lasts, so a stale worker never sends what a new owner sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from app.store.rpc import DatabaseError
from app.store.store import Lease, Store

log = logging.getLogger("campaign_queue")


class LeaseKeeper:
    """The leases of one invocation, each known by (message id, lock token): a message the
    same call claims again after losing it has a new lease, and the first attempt's end or
    sends never touch it."""

    def __init__(self, store: Store, lock_timeout_s: float, worker: str) -> None:
        self._store = store
        self._lock_timeout_s = lock_timeout_s
        self._worker = worker
        self._held: dict[uuid.UUID, Lease] = {}  # the current lease of each message
        # time.monotonic() at which the last renewal that the database confirmed was asked:
        # the lease lasts at least LOCK_TIMEOUT_S from then, whatever the clocks say.
        self._renewed_at: dict[uuid.UUID, float] = {}

    @property
    def lock_timeout_s(self) -> float:
        return self._lock_timeout_s

    @property
    def renew_every_s(self) -> float:
        return self._lock_timeout_s / 3

    @property
    def margin_s(self) -> float:
        return max(0.2, self._lock_timeout_s * 0.05)

    def hold(self, leases: list[Lease], claimed_at: float) -> None:
        for lease in leases:  # a message claimed again: the new lease replaces the old one
            self._held[lease.message_id] = lease
            self._renewed_at[lease.message_id] = claimed_at

    def holds(self, lease: Lease) -> bool:
        return self._held.get(lease.message_id) == lease

    def release(self, lease: Lease) -> None:
        """The lease ended (sent, failed, released) or went to another worker. A newer lease
        of the same message (claimed again by this call) is kept."""
        if self.holds(lease):
            del self._held[lease.message_id]
            self._renewed_at.pop(lease.message_id, None)

    def renewed(self, lease: Lease, asked_at: float) -> None:
        """A fenced write asked at `asked_at` succeeded: it renewed the lease."""
        if self.holds(lease):
            self._renewed_at[lease.message_id] = max(
                self._renewed_at.get(lease.message_id, 0.0), asked_at
            )

    @property
    def held(self) -> list[Lease]:
        return list(self._held.values())

    def remaining_s(self, lease: Lease) -> float:
        renewed_at = self._renewed_at.get(lease.message_id)
        if renewed_at is None or not self.holds(lease):
            return 0.0
        return renewed_at + self._lock_timeout_s - time.monotonic()

    async def time_to_send(self, lease: Lease, wanted_s: float) -> float | None:
        """Seconds a send may take before the lease could expire; None when it was lost.

        Renews first (one fenced round trip) when less than `wanted_s` is left.
        """
        if not self.holds(lease):
            return None
        wanted_s = min(wanted_s, self._lock_timeout_s / 2)
        if self.remaining_s(lease) - self.margin_s < wanted_s:
            await self.renew([lease])
        left = self.remaining_s(lease) - self.margin_s
        return left if left > 0 else None

    async def renew(self, leases: list[Lease]) -> None:
        if not leases:
            return
        asked_at = time.monotonic()
        kept = await self._store.renew_leases(leases)
        for lease in leases:
            if lease.message_id in kept:
                self.renewed(lease, asked_at)
            else:  # another worker's now (a newer lease of this call's is kept)
                self.release(lease)

    async def heartbeat(self) -> None:
        """Runs until cancelled: renews every held lease each LOCK_TIMEOUT_S / 3."""
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                await self.renew(self.held)
            except DatabaseError as exc:
                log.warning(
                    "lease renewal failed; trying again at the next beat",
                    extra={"worker": self._worker, "error": str(exc)},
                )
            except Exception:  # a bug must not end the renewals, nor the call's wrap-up
                log.exception("lease renewal failed", extra={"worker": self._worker})
