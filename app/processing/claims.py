"""One claim round: claim, fetch the leads' contexts, fail what cannot be worked.

Whatever the database does, a message claimed here is handed on to be worked, failed alone,
or released: never left under a lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from datetime import datetime

from app.models import ClaimedMessage, LeadContext
from app.processing.endings import Outcome
from app.processing.invocation import Invocation
from app.settings import Settings
from app.store.rpc import DatabaseError
from app.store.store import Claim, Lease, Pacing, StoppedContact, Store, UnreadableLead

log = logging.getLogger("campaign_queue")

_RELEASE_TRIES = 3

# Each claimed message with its lead's context, or why it cannot be written (StoppedContact).
Context = LeadContext | UnreadableLead | StoppedContact | None
Waiting = deque[tuple[ClaimedMessage, Context]]


class Claimer:
    def __init__(self, store: Store, settings: Settings, worker: str, pacing: Pacing) -> None:
        self._store = store
        self._settings = settings
        self._worker = worker
        self._pacing = pacing

    async def claim(
        self,
        invocation: Invocation,
        *,
        size: int,
        horizon: datetime,
        run_id: uuid.UUID | None,
        lookahead_s: float,
        claimed_so_far: int,
    ) -> Claim:
        """Raises DatabaseError only when nothing was claimed before in this invocation."""
        asked_at = time.monotonic()
        try:
            batch = await self._store.claim(
                batch_size=size,
                one_hour_ago=horizon,
                lock_timeout_s=self._settings.lock_timeout_s,
                worker=self._worker,
                run_id=run_id,
                pacing=self._pacing,
                lookahead_s=lookahead_s,
                lead_local_window=self._settings.lead_local_window,
            )
        except DatabaseError:
            if claimed_so_far == 0:
                raise
            log.exception(
                "claim failed mid-invocation; finishing what was started",
                extra={"worker": self._worker},
            )
            return Claim([], [])
        for message in batch.messages:
            message.claimed_at = asked_at
        invocation.leases.hold([Lease.of(m) for m in batch.messages], asked_at)
        return batch

    async def with_contexts(
        self, messages: list[ClaimedMessage], invocation: Invocation
    ) -> Waiting | None:
        """Each message with its lead's context, or StoppedContact when its contact may not be
        written to (in the same call); None (batch released) if the database failed."""
        if not messages:
            return deque()
        try:
            contexts, stops = await self._store.message_contexts(
                [m.lead_id for m in messages],
                [m.id for m in messages],
                reply_stop_days=self._settings.reply_stop_days,
            )
        except DatabaseError as exc:
            log.error(
                "lead contexts failed after a claim; releasing the batch",
                extra={"worker": self._worker, "error": str(exc)},
            )
            await self.release(messages, invocation)
            return None
        return deque(
            (m, StoppedContact(stops[m.id]) if m.id in stops else contexts.get(m.lead_id))
            for m in messages
        )

    async def fail_unworkable(self, batch: Claim, invocation: Invocation) -> Counter[Outcome]:
        """A row the service cannot read fails alone; its batch-mates are worked."""
        outcomes: Counter[Outcome] = Counter()
        for row in batch.unworkable:
            log.error(
                "claimed row cannot be worked",
                extra={"worker": self._worker, "error": row.error, "run_id": str(row.run_id)},
            )
            if row.lease is None:
                outcomes[Outcome.ERROR] += 1  # no id or token to write with: the lease expires
                continue
            try:
                answer = await self._store.fail(row.lease, row.error, retryable=False)
            except DatabaseError:
                outcomes[Outcome.ERROR] += 1
                continue
            outcomes[Outcome.FAILED if answer.ok else Outcome.LEASE_LOST] += 1
            invocation.logs.add(
                row.run_id, "failed", row.error, level="error", message_id=row.lease.message_id
            )
        return outcomes

    async def release(self, messages: list[ClaimedMessage], invocation: Invocation) -> int:
        """Gives unstarted claims back (no retry spent); a blip gets a couple more tries."""
        leases = [Lease.of(m) for m in messages]
        for attempt in range(_RELEASE_TRIES):
            try:
                await self._store.release(leases)
                break
            except DatabaseError as exc:
                if attempt == _RELEASE_TRIES - 1:
                    log.error(
                        "release failed; the leases will expire and bring them back",
                        extra={"worker": self._worker, "error": str(exc)},
                    )
                else:
                    await asyncio.sleep(0.2 * (attempt + 1))
        for message in messages:
            invocation.leases.release(Lease.of(message))
        return len(messages)
