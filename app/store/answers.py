"""What the Store hands back: leases, claims, and the answers of the fenced SQL functions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.models import ClaimedMessage, LeadContext

if TYPE_CHECKING:
    from app.settings import Settings


@dataclass(frozen=True)
class Lease:
    """What fences every write of a claimed message."""

    message_id: uuid.UUID
    lock_token: uuid.UUID

    @classmethod
    def of(cls, message: ClaimedMessage) -> Lease:
        return cls(message.id, message.lock_token)


@dataclass(frozen=True)
class Pacing:
    """The service's per-inbox pacing settings, handed to the database
    (docs/architecture.md, "Pacing")."""

    min_gap_s: float = 0.0
    max_gap_s: float = 0.0
    daily_cap: int = 0
    # The zone of the cap's calendar day for inboxes without one of their own (INBOX_TIMEZONE);
    # handed to take_inbox_slot and the status only (the claim reads the zone the state kept).
    timezone: str = "America/Sao_Paulo"
    # Number health (README, "Number health"): the warm-up's days (0: none) and day 0's cap,
    # the hourly cap (0: none).
    warmup_days: int = 0
    warmup_start_cap: int = 20
    hourly_cap: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pacing:
        """Every INBOX_* setting the database's pacing functions take."""
        return cls(
            settings.inbox_min_gap_s,
            settings.inbox_max_gap_s,
            settings.inbox_daily_cap,
            settings.inbox_timezone,
            warmup_days=settings.inbox_warmup_days,
            warmup_start_cap=settings.inbox_warmup_start_cap,
            hourly_cap=settings.inbox_hourly_cap,
        )

    @property
    def on(self) -> bool:
        return self.min_gap_s > 0 or self.daily_cap > 0 or self.hourly_cap > 0

    def args(self) -> dict[str, Any]:
        return {
            "p_min_gap_s": self.min_gap_s,
            "p_max_gap_s": max(self.max_gap_s, self.min_gap_s),
            "p_daily_cap": self.daily_cap,
            "p_warmup_days": self.warmup_days,
            "p_warmup_start_cap": self.warmup_start_cap,
            "p_hourly_cap": self.hourly_cap,
        }


@dataclass(frozen=True)
class FailureBrake:
    """The failure brake's settings, handed to fail_campaign_message with a send endpoint's
    failure (README "Failure brake"): failures of the last 20 sends that brake the inbox
    (0: off), and for how long."""

    failures: int = 5
    hours: float = 6.0

    def args(self) -> dict[str, Any]:
        return {"p_brake_failures": self.failures, "p_brake_hours": self.hours}


@dataclass(frozen=True)
class InboxBraked:
    """The failure brake this failure tripped: the inbox waits until `until`."""

    inbox_id: uuid.UUID
    until: datetime
    reason: str


@dataclass(frozen=True)
class UnworkableRow:
    """A claimed row the service cannot work (say, a config without an inbox).

    It is failed on its own with `error`; its batch-mates are worked. Without a readable id
    and lock_token nothing can be written: its lease expires.
    """

    lease: Lease | None
    run_id: uuid.UUID | None
    error: str


@dataclass(frozen=True)
class Claim:
    messages: list[ClaimedMessage]
    unworkable: list[UnworkableRow]

    def __len__(self) -> int:
        return len(self.messages) + len(self.unworkable)


@dataclass(frozen=True)
class UnreadableLead:
    """A lead whose context cannot be read: its message fails alone, with `error`."""

    error: str


@dataclass(frozen=True)
class StoppedContact:
    """A message whose contact may not be written to ('opted out' or 'replied'): it is
    skipped with `reason` before any LLM call (README, "Number health")."""

    reason: str


LeadContexts = dict[uuid.UUID, LeadContext | UnreadableLead]
# Claimed message id -> why its contact may not be written to.
StopReasons = dict[uuid.UUID, str]


@dataclass(frozen=True)
class Answer:
    """What a fenced SQL function answered: ok, or the reason it refused."""

    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class SaveAnswer(Answer):
    conversation_id: uuid.UUID | None = None
    inbox_status: str | None = None  # what the database saw when it said inbox_disconnected


@dataclass(frozen=True)
class PartAnswer(Answer):
    completed: bool = False


@dataclass(frozen=True)
class SlotAnswer(Answer):
    # refused: seconds until the slot (gap), until asking again while the inbox's last first
    # part is being sent (in_flight), until the next day (daily_cap), until a first part leaves
    # the rolling hour (hourly_cap), until the brake ends (brake)
    wait_s: float | None = None


@dataclass(frozen=True)
class FailAnswer(Answer):
    status: str | None = None  # 'pending' (a retry is scheduled) or 'failed'
    retry_count: int | None = None
    next_attempt_at: datetime | None = None
    braked: InboxBraked | None = None  # this failure tripped its inbox's failure brake
