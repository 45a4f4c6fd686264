"""Operators' actions on runs, inboxes and contacts: one RPC each
(sql/052_operator_runs.sql, 053_operator_inboxes.sql, 054_operator_contacts.sql), shared by
the HTTP routes (app.operator_routes), the CLI (app.operator_cli) and the console. Each
answers what it changed, or `ok: false` with a reason and nothing changed; REFUSAL_STATUS
says which HTTP status each reason gets."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.store.rpc import Rpc

RUN_ACTIONS = ("pause", "resume", "cancel", "requeue")
PACING_FIELDS = (
    "min_gap_s",
    "max_gap_s",
    "daily_cap",
    "timezone",
    "warmup_days",
    "warmup_start_cap",
    "hourly_cap",
    "first_sent_day",
)
CONTACT_ACTIONS = ("suppress", "unsuppress")

REFUSAL_STATUS = {
    "run_not_found": 404,
    "inbox_not_found": 404,
    "workspace_not_found": 404,
    "not_running": 409,
    "not_paused": 409,
    "not_cancellable": 409,
    "run_cancelled": 409,
    "inbox_disconnected": 409,
    "nothing_to_requeue": 409,
    "no_overrides": 409,
    "not_braked": 409,
    "already_suppressed": 409,
    "not_suppressed": 409,
    "invalid_value": 422,
}


def _without_nul(value: str) -> str:
    if "\x00" in value:  # Postgres text cannot hold it: bad input, not a database outage
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_without_nul)]


class NoBody(BaseModel):
    """An action that takes no body: empty or `{}`."""

    model_config = ConfigDict(extra="forbid")


class ContactBody(BaseModel):
    """unsuppress: the contact; suppress also takes the reason kept on the list."""

    model_config = ConfigDict(extra="forbid")
    workspace_id: uuid.UUID
    phone: Text = Field(min_length=1, max_length=64)


class SuppressBody(ContactBody):
    reason: Text | None = Field(default=None, min_length=1, max_length=500)


class RunActionBody(BaseModel):
    """pause and cancel: the reason kept on the run; requeue: the failure reason group
    (as the status groups failures); resume takes none."""

    model_config = ConfigDict(extra="forbid")
    reason: Text | None = Field(default=None, min_length=1, max_length=2000)


class PacingBody(BaseModel):
    """The overrides to set; a field left out keeps its value. At least one. first_sent_day
    is the warm-up's day 0 (a number in use before this service sent from it), not an
    override: clearing the overrides keeps it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    min_gap_s: float | None = Field(default=None, ge=0, le=86400)
    max_gap_s: float | None = Field(default=None, ge=0, le=86400)
    daily_cap: int | None = Field(default=None, ge=0, le=2_147_483_647)
    timezone: Text | None = Field(default=None, min_length=1, max_length=64)
    warmup_days: int | None = Field(default=None, ge=0, le=3650)
    warmup_start_cap: int | None = Field(default=None, ge=1, le=2_147_483_647)
    hourly_cap: int | None = Field(default=None, ge=0, le=3600)
    first_sent_day: date | None = None

    @model_validator(mode="after")
    def _something_to_set(self) -> PacingBody:
        if all(getattr(self, name) is None for name in PACING_FIELDS):
            raise ValueError("give at least one of " + ", ".join(PACING_FIELDS))
        return self


async def run_action(
    rpc: Rpc, action: str, run_id: uuid.UUID, reason: str | None = None
) -> dict[str, Any]:
    run = str(run_id)
    if action == "pause":
        answer = await rpc.call(
            "operator_pause_campaign_run", {"p_run_id": run, "p_reason": reason}
        )
    elif action == "resume":
        answer = await rpc.call("operator_resume_campaign_run", {"p_run_id": run})
    elif action == "cancel":
        answer = await rpc.call("cancel_campaign_run", {"p_run_id": run, "p_reason": reason})
    elif action == "requeue":
        answer = await rpc.call(
            "requeue_campaign_run_failures", {"p_run_id": run, "p_reason": reason}
        )
    else:
        raise ValueError(f"unknown run action: {action}")
    return dict(answer)


async def set_inbox_pacing(rpc: Rpc, inbox_id: uuid.UUID, body: PacingBody) -> dict[str, Any]:
    args: dict[str, Any] = {"p_inbox_id": str(inbox_id)}
    args.update({f"p_{name}": getattr(body, name) for name in PACING_FIELDS})
    return dict(await rpc.call("set_inbox_pacing", args))


async def clear_inbox_pacing(rpc: Rpc, inbox_id: uuid.UUID) -> dict[str, Any]:
    return dict(await rpc.call("clear_inbox_pacing", {"p_inbox_id": str(inbox_id)}))


async def lift_inbox_brake(rpc: Rpc, inbox_id: uuid.UUID) -> dict[str, Any]:
    """{ok, reason, inbox_id, brake_until_before, brake_reason_before, brake_until_after,
    brake_reason_after}; refused: inbox_not_found, not_braked."""
    return dict(await rpc.call("operator_lift_inbox_brake", {"p_inbox_id": str(inbox_id)}))


async def suppress_contact(
    rpc: Rpc, workspace_id: uuid.UUID, phone: str, reason: str | None = None
) -> dict[str, Any]:
    """{ok, reason, workspace_id, phone (masked: its last 4 digits), suppressed_before,
    suppressed_after, suppression_reason, suppressed_at}; refused: invalid_value (field
    `phone` or `workspace_id`), workspace_not_found, already_suppressed."""
    args = {"p_workspace_id": str(workspace_id), "p_phone": phone, "p_reason": reason}
    return dict(await rpc.call("operator_suppress_campaign_contact", args))


async def unsuppress_contact(rpc: Rpc, workspace_id: uuid.UUID, phone: str) -> dict[str, Any]:
    """suppress_contact's answer; refused: invalid_value, workspace_not_found, not_suppressed."""
    args = {"p_workspace_id": str(workspace_id), "p_phone": phone}
    return dict(await rpc.call("operator_unsuppress_campaign_contact", args))


def refusal_status(answer: dict[str, Any]) -> int:
    """200 for a done action, else the 4xx its reason gets (409 for one not listed)."""
    if answer.get("ok"):
        return 200
    return REFUSAL_STATUS.get(str(answer.get("reason")), 409)
