"""What the HTTP surface takes and answers, as models the OpenAPI document is built from.

The body is parsed by hand (see app.main.process_queue) and validated with ProcessQueueBody,
so the schema published for it is this model's, and the two cannot drift apart:
- an empty body or `{}` takes the settings' defaults; a `null` body (or any other JSON that
  is not an object) is 422, as the schema's `type: object` says;
- integer fields take JSON integers and integral numbers (5 and 5.0, which JSON Schema
  counts as integers too), never 5.5, "5" or true;
- `requeue_failed: true` needs a `run_id` (the schema's `if`/`then`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from app.models import ProcessQueueResult


def _integral_float_as_int(value: Any) -> Any:
    """5.0 -> 5 (JSON Schema's `integer` includes it); 5.5, "5" and true stay what they are
    and fail the strict integer check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_AsInt = BeforeValidator(_integral_float_as_int)

REQUEUE_NEEDS_RUN_ID = "requeue_needs_run_id"  # the 422's error type

# `requeue_failed: true` -> `run_id` present and a uuid. Draft 2020-12 (OpenAPI 3.1).
_REQUEUE_RULE: dict[str, Any] = {
    "if": {"properties": {"requeue_failed": {"const": True}}, "required": ["requeue_failed"]},
    "then": {
        "properties": {"run_id": {"type": "string", "format": "uuid"}},
        "required": ["run_id"],
    },
}


class ProcessQueueBody(BaseModel):
    """One invocation's limits; every field optional. An empty body or `{}` takes the
    settings' defaults; `null` is not an object and answers 422. `requeue_failed: true`
    needs `run_id`. Unknown fields answer 422."""

    model_config = ConfigDict(
        extra="forbid",
        title="ProcessQueueBody",
        json_schema_extra=_REQUEUE_RULE,
    )

    batch_size: Annotated[int, Field(strict=True, ge=1, le=100), _AsInt] | None = Field(
        default=None,
        description="Messages per claim (default: BATCH_SIZE). 5.0 counts as 5; 5.5 is rejected.",
    )
    concurrency: Annotated[int, Field(strict=True, ge=1, le=50), _AsInt] | None = Field(
        default=None, description="Messages worked at once (default: MAX_CONCURRENCY)."
    )
    max_messages: Annotated[int, Field(strict=True, ge=1, le=10000), _AsInt] | None = Field(
        default=None, description="Most messages this call claims (default: MAX_MESSAGES)."
    )
    time_budget_s: Annotated[float, Field(strict=True, ge=1, le=3600)] | None = Field(
        default=None,
        description=(
            "Seconds after which this call starts no new message (default: TIME_BUDGET_S); "
            "claimed messages not started by then are released for the next call."
        ),
    )
    run_id: uuid.UUID | None = Field(
        default=None, description="Only this campaign run's messages (a uuid)."
    )
    requeue_failed: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description=(
            "Before working, put this run's failed messages back in the queue. Needs run_id."
        ),
    )

    @model_validator(mode="after")
    def _requeue_needs_a_run(self) -> ProcessQueueBody:
        if self.requeue_failed and self.run_id is None:
            raise PydanticCustomError(REQUEUE_NEEDS_RUN_ID, "requeue_failed needs run_id")
        return self


class ProcessQueueAnswer(ProcessQueueResult):
    """The answer of POST /process-queue (200 and 502): what this call did."""

    model_config = ConfigDict(title="ProcessQueueAnswer")

    success: bool = Field(
        default=True,
        description=(
            "false when the provider circuit opened on a key or credit error (the answer is "
            "then 502, so the scheduler's failure alerting fires)."
        ),
    )
    claimed: int = Field(default=0, description="Messages this call claimed.")
    processed: int = Field(default=0, description="Messages sent in full.")
    failed: int = Field(default=0, description="Attempts that failed, the retried ones included.")
    retried: int = Field(
        default=0,
        description="Of the failed attempts, those requeued for a later try (+5/+15/+30 min).",
    )
    paused: int = Field(
        default=0,
        description=(
            "Not sent because the run is paused, the inbox is not connected, the send window "
            "is closed or the inbox's pacing says wait: given back untouched."
        ),
    )
    skipped: int = Field(
        default=0,
        description="Claimed messages skipped: lead gone, or a row that cannot be worked.",
    )
    released: int = Field(
        default=0,
        description=(
            "Claimed messages left unstarted when the time budget ran out or the provider "
            "circuit opened; they go back to the queue, untouched (an auth/credit error "
            "counts here, not in failed)."
        ),
    )
    lease_lost: int = Field(
        default=0,
        description=(
            "Claimed, then taken over by another worker (this call's lease expired while it "
            "worked the message): that worker records it. claimed = processed + failed + "
            "paused + skipped + released + lease_lost."
        ),
    )
    old_skipped: int = Field(
        default=0,
        description=(
            "Pending messages skipped as more than SKIP_AFTER_MINUTES late (at most 5,000 a call)."
        ),
    )
    duration_ms: int = Field(default=0, description="How long the call took, in milliseconds.")
    circuit_open: str | None = Field(
        default=None,
        description=(
            "null, or why the provider circuit opened (an auth/credit error, or "
            "CIRCUIT_FAILURE_THRESHOLD outbound failures in a row) and stopped new work."
        ),
    )


class ErrorAnswer(BaseModel):
    """The answer when the call did no work: no or wrong secret, the database unavailable."""

    model_config = ConfigDict(title="ErrorAnswer")

    success: Literal[False] = Field(description="Always false.")
    error: str = Field(
        description="What went wrong: `unauthorized`, `database unavailable`, `internal error`."
    )


class ValidationProblem(BaseModel):
    """One problem with the body."""

    model_config = ConfigDict(title="ValidationProblem")

    loc: list[str | int] = Field(
        description='Where: `["body"]` for the whole body, `["body", "<field>"]` for a field.'
    )
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="pydantic's error type, e.g. `less_than_equal`.")


class ValidationAnswer(BaseModel):
    """422: the body is not valid JSON, not an object, or a field is wrong or unknown."""

    model_config = ConfigDict(title="ValidationAnswer")

    success: Literal[False] = Field(description="Always false.")
    detail: list[ValidationProblem] = Field(description="Every problem found, each named.")


class Healthy(BaseModel):
    """GET /healthz: the database answers."""

    model_config = ConfigDict(title="Healthy")

    status: Literal["ok"] = Field(description="Always `ok`.")


class Unhealthy(BaseModel):
    """GET /healthz: the database does not answer."""

    model_config = ConfigDict(title="Unhealthy")

    status: Literal["unavailable"] = Field(description="Always `unavailable`.")
    database: Literal["unreachable"] = Field(description="Always `unreachable`.")


_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`: send the CRON_SECRET as a bearer token or as X-Cron-Secret.",
        "schema": {"type": "string"},
    }
}

PROCESS_QUEUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The call ran; the counts of what it did."},
    401: {
        "model": ErrorAnswer,
        "headers": _WWW_AUTHENTICATE,
        "description": (
            "No CRON_SECRET, or a wrong one, in `Authorization: Bearer` or `X-Cron-Secret`. "
            "Nothing changed."
        ),
    },
    422: {
        "model": ValidationAnswer,
        "description": (
            "The body is not valid JSON, not an object (`null` included), a field is out of "
            "range or unknown, or requeue_failed is true without run_id. Nothing changed."
        ),
    },
    500: {
        "model": ErrorAnswer,
        "description": "A bug: the details are in the service's log, never in the answer.",
    },
    502: {
        "model": ProcessQueueAnswer,
        "description": (
            "The provider circuit opened on a key or credit error (401/402/403 from "
            "OpenRouter or the send endpoint): the same counts with `success: false` and "
            "`circuit_open` saying why. Unstarted messages were released. Fix the key or the "
            "credit; the next call picks the work up."
        ),
    },
    503: {
        "model": ErrorAnswer,
        "description": (
            "The database is unavailable before any message was claimed: nothing was done. "
            "The service's log names the host and what to check."
        ),
    },
}

STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "campaign_queue_status: queue {due, scheduled, in_flight, oldest_due_s}, runs "
            "[{run_id, status, total, sent, failed, skipped, pending, ai_tokens, ai_cost_usd, "
            "started_at, eta_s}], inboxes [{inbox_id, sent_today, daily_cap, timezone, "
            "next_slot_at}], "
            "failures [{reason, count}] (last 24 h), throughput {sent_5m, sent_60m}."
        )
    },
    401: PROCESS_QUEUE_RESPONSES[401],
    422: {"description": "run_id is not a uuid."},
    503: {"model": ErrorAnswer, "description": "The database is unavailable."},
}

HEALTHZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The database answers."},
    503: {"model": Unhealthy, "description": "The database does not answer."},
}
