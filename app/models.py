"""Pydantic models shared across modules: what a claim returns, a lead's context, a result.

Rows come from a product database that other code writes too, so parsing is lenient where a
value is merely odd (a null flag, '24:00', a NaN, a null inside an array): it falls back to
the default the edge function used. Only a row that cannot be worked (no id, no inbox) is
rejected, and then for that message alone (see Store.claim).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_END_OF_DAY = time.max  # '24:00': the window runs to midnight


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _as_time(value: Any) -> Any:
    """'24:00[:00]' is valid in Postgres `time`; it means midnight at the end of the day."""
    if isinstance(value, str) and value.strip().startswith("24:"):
        return _END_OF_DAY
    return value


def _as_int(value: Any, default: int, low: int, high: int) -> int:
    if isinstance(value, bool) or value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if not math.isfinite(number):
        return default
    return min(max(int(number), low), high)


def _as_seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), 86_400.0)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


class SplitterConfig(BaseModel):
    """A workspace's ai_message_splitter_config; defaults where it has none."""

    model_config = ConfigDict(extra="ignore")

    min_chars_to_split: int = 150
    delay_between_messages: int = 500  # milliseconds between the parts of one message
    temperature: float = 0.1
    max_tokens: int = 1000

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        values = dict(data)
        values["min_chars_to_split"] = _as_int(data.get("min_chars_to_split"), 150, 0, 100_000)
        values["delay_between_messages"] = _as_int(
            data.get("delay_between_messages"), 500, 0, 3_600_000
        )
        values["max_tokens"] = _as_int(data.get("max_tokens"), 1000, 1, 100_000)
        temperature = data.get("temperature")
        try:
            number = float(temperature) if temperature is not None else 0.1
        except (TypeError, ValueError):
            number = 0.1
        values["temperature"] = min(max(number, 0.0), 2.0) if math.isfinite(number) else 0.1
        return values


class InboxStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    connected: bool = False
    status: str | None = None
    instance_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        connected = data.get("connected")
        if isinstance(connected, str):
            connected = connected.strip().lower() in ("true", "t", "1", "yes")
        return {
            "connected": connected is True,
            "status": _as_text(data.get("status")),
            "instance_name": _as_text(data.get("instance_name")),
        }


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
    slot_in_s: float | None = None  # seconds until the inbox's next slot at the claim

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        values["split_messages"] = data.get("split_messages") is True
        values["max_split_parts"] = _as_int(data.get("max_split_parts"), 3, 1, 5)
        values["timezone"] = _as_text(data.get("timezone")) or "America/Sao_Paulo"
        values["start_time"] = _as_time(data.get("start_time"))
        values["end_time"] = _as_time(data.get("end_time"))
        values["ai_instructions"] = _as_text(data.get("ai_instructions"))
        model = data.get("model")
        values["model"] = model.strip() if isinstance(model, str) and model.strip() else None
        values["inbox_status"] = _or_default(data.get("inbox_status"), {})
        values["splitter"] = _or_default(data.get("splitter"), {})
        values["slot_in_s"] = _as_seconds(data.get("slot_in_s"))
        return values


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
    phone_number: str = ""
    scheduled_at: datetime
    retry_count: int = 0
    generated_message: str | None = None
    message_parts: list[str] | None = None
    parts_sent: int = 0
    conversation_id: uuid.UUID | None = None
    run: RunRef
    config: CampaignConfig
    claimed_at: float = 0.0  # time.monotonic() when the claim was asked; set by the processor

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        values["phone_number"] = _as_text(data.get("phone_number")) or ""
        values["retry_count"] = _as_int(data.get("retry_count"), 0, 0, 1_000_000)
        values["parts_sent"] = _as_int(data.get("parts_sent"), 0, 0, 1_000_000)
        text = data.get("generated_message")
        values["generated_message"] = text if isinstance(text, str) else None
        parts = data.get("message_parts")
        usable = isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts)
        values["message_parts"] = parts if usable else None
        return values

    @property
    def has_generated_parts(self) -> bool:
        """Parts from an earlier attempt: reused, never rewritten (parts may be out already)."""
        return bool(self.message_parts) and (bool(self.generated_message) or self.parts_sent > 0)


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

    @field_validator("client_name", "company", "priority", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        return _as_text(value)

    @field_validator("deal_value", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> float | None:
        if value is None or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str] | None:
        if not isinstance(value, list):
            return None
        return [t if isinstance(t, str) else str(t) for t in value if t is not None]

    @field_validator("custom_fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        if isinstance(value, list) and value:  # keep what it says, under a neutral key
            return {"details": value}
        return None


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
    lease_lost: int = 0  # claimed, then taken over by another worker: that worker's now
    old_skipped: int = 0
    duration_ms: int = 0
    circuit_open: str | None = None  # why the provider circuit opened, if it did
