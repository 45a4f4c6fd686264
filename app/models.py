"""Pydantic models shared across modules: what a claim returns, a lead's context, a result."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SplitterConfig(BaseModel):
    """A workspace's ai_message_splitter_config; defaults where it has none."""

    model_config = ConfigDict(extra="ignore")

    min_chars_to_split: int = 150
    delay_between_messages: int = 500  # milliseconds between the parts of one message
    temperature: float = 0.1
    max_tokens: int = 1000


class InboxStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    connected: bool = False
    status: str | None = None
    instance_name: str | None = None


class CampaignConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    workspace_id: uuid.UUID
    inbox_id: uuid.UUID
    ai_instructions: str | None = None
    split_messages: bool = False
    max_split_parts: int = Field(default=3, ge=1, le=5)
    target_column_id: uuid.UUID | None = None
    start_time: time | None = None
    end_time: time | None = None
    timezone: str = "America/Sao_Paulo"
    model: str | None = None
    inbox_status: InboxStatus = Field(default_factory=InboxStatus)
    splitter: SplitterConfig = Field(default_factory=SplitterConfig)

    def __init__(self, **data: Any) -> None:
        # The claim sends JSON null for "no splitter row"; that means the defaults.
        if data.get("splitter") is None:
            data.pop("splitter", None)
        if data.get("inbox_status") is None:
            data.pop("inbox_status", None)
        super().__init__(**data)


class RunRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    status: str
    config_id: uuid.UUID


class ClaimedMessage(BaseModel):
    """One element of get_and_lock_campaign_messages: the message, its lease, run and config."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    run_id: uuid.UUID
    lead_id: uuid.UUID
    lock_token: uuid.UUID
    phone_number: str
    scheduled_at: datetime
    retry_count: int = 0
    generated_message: str | None = None
    message_parts: list[str] | None = None
    parts_sent: int = 0
    conversation_id: uuid.UUID | None = None
    run: RunRef
    config: CampaignConfig

    @property
    def has_generated_parts(self) -> bool:
        return bool(self.generated_message and self.message_parts)


class LeadContext(BaseModel):
    """What get_lead_contexts returns for one lead: everything the prompt needs."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    client_name: str | None = None
    company: str | None = None
    deal_value: float | None = None
    priority: str | None = None
    tags: list[str] | None = None
    custom_fields: dict[str, Any] | None = None


class ProcessQueueResult(BaseModel):
    """The JSON answer of POST /process-queue."""

    success: bool = True
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    paused: int = 0
    skipped: int = 0
    released: int = 0
    old_skipped: int = 0
    duration_ms: int = 0
