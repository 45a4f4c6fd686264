"""The scheduler's and the reader's routes: POST /process-queue, GET /status, GET /metrics
(all behind CRON_SECRET: app.auth) and GET /healthz; add_queue_routes registers them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.api_models import (
    HEALTHZ_RESPONSES,
    PROCESS_QUEUE_RESPONSES,
    STATUS_RESPONSES,
    Healthy,
    ProcessQueueAnswer,
    ProcessQueueBody,
)
from app.auth import require_cron_secret, require_status_reader
from app.logs import log
from app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.request_body import parse_body
from app.services import Services, ServicesDep, start_invocation
from app.status_page import (
    STATUS_OFFSET_MAX,
    STATUS_RUNS_DEFAULT,
    STATUS_RUNS_MAX,
    STATUS_RUNS_MIN,
    StatusFilter,
)
from app.store.rpc import DatabaseError
from app.store.store import Pacing


def add_queue_routes(app: FastAPI) -> None:
    app.post(
        "/process-queue",
        operation_id="process_queue",
        summary="Claim and send due messages",
        response_model=ProcessQueueAnswer,
        responses=PROCESS_QUEUE_RESPONSES,
        openapi_extra={
            "requestBody": {
                "description": "Optional: an empty body or `{}` takes the settings' defaults.",
                "content": {"application/json": {"schema": ProcessQueueBody.model_json_schema()}},
                "required": False,
            }
        },
        dependencies=[Depends(require_cron_secret)],
    )(process_queue)
    app.get(
        "/healthz",
        operation_id="healthz",
        summary="Does the database answer?",
        response_model=Healthy,
        responses=HEALTHZ_RESPONSES,
    )(healthz)
    app.get(
        "/status",
        operation_id="status",
        summary="Queue depth, runs' progress, cost and ETA, inboxes' pace, failures by reason",
        responses=STATUS_RESPONSES,
        dependencies=[Depends(require_status_reader)],
    )(status)
    app.get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics: the queue's gauges and this process's counters",
        response_class=PlainTextResponse,
        dependencies=[Depends(require_status_reader)],
    )(metrics)


async def process_queue(request: Request, services: ServicesDep) -> JSONResponse:
    """Claims due messages, writes and sends them, and answers the counts of what it did."""
    body_or_error = await _parse_body(request)
    if isinstance(body_or_error, JSONResponse):
        return body_or_error
    work = start_invocation(services, body_or_error)
    # The call finishes its work when the caller hangs up (pg_net gives up after 5 s): the
    # task goes on, shielded, and is kept referenced until it ends.
    try:
        result = await asyncio.shield(work)
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"success": False, "error": "database unavailable"}, 503)
    except Exception:  # a bug: still a JSON answer, and the details in the log
        log.exception("process-queue failed")
        return JSONResponse({"success": False, "error": "internal error"}, 500)
    # A key or credit error is the operator's to fix: 502 makes the scheduler's alerting fire.
    return JSONResponse(result.model_dump(), 200 if result.success else 502)


async def status(
    services: ServicesDep,
    run_id: uuid.UUID | None = None,
    limit: Annotated[
        int,
        Query(
            ge=STATUS_RUNS_MIN,
            le=STATUS_RUNS_MAX,
            description="The runs shown at most (running first, the most recently active "
            "first); `runs_total` counts them all.",
        ),
    ] = STATUS_RUNS_DEFAULT,
    offset: Annotated[
        int, Query(ge=0, le=STATUS_OFFSET_MAX, description="The runs passed over first.")
    ] = 0,
    runs_status: Annotated[
        StatusFilter | None,
        Query(
            alias="status",
            description="The runs of one status, or `all`; unset: running and paused.",
        ),
    ] = None,
) -> JSONResponse:
    """Queue depth and lag, each run's progress, cost and ETA, inboxes' pace, failures by
    reason, throughput (docs/architecture.md, "Status"); `?run_id=` answers about that run only,
    `?limit=` and `?offset=` page the runs (default 50, 1 to 500), `?status=` filters them."""
    try:
        answer = await services.store.queue_status(
            run_id, _pacing(services), limit, offset, runs_status
        )
        return JSONResponse(answer)
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"success": False, "error": "database unavailable"}, 503)


async def metrics(services: ServicesDep) -> Response:
    """The Prometheus text format (README: "Metrics"): the queue's gauges from
    campaign_queue_status (its largest page of runs), and this process's messages by outcome,
    LLM and send latency and AI cost."""
    try:
        answer = await services.store.queue_status(None, _pacing(services), STATUS_RUNS_MAX)
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"success": False, "error": "database unavailable"}, 503)
    return Response(services.metrics.exposition(answer), media_type=METRICS_CONTENT_TYPE)


def _pacing(services: Services) -> Pacing:
    return Pacing.from_settings(services.settings)


async def _parse_body(request: Request) -> ProcessQueueBody | JSONResponse:
    """The body as ProcessQueueBody, or the 422 answer. Empty means `{}`; `null` is 422."""
    return await parse_body(request, ProcessQueueBody)


async def healthz(services: ServicesDep) -> Healthy | JSONResponse:
    """200 when the database answers a trivial call, else 503. Needs no secret."""
    try:
        await services.store.ping()
    except DatabaseError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    return Healthy(status="ok")
