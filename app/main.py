"""The HTTP service: POST /process-queue and GET /healthz. Clients are built in the lifespan.

Routes take what they need as dependencies (ServicesDep, require_cron_secret), so a new one is
a function and one registration line in create_app. The request and answer models, and the
OpenAPI text, are in app.api_models; the secret check in app.auth.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ai.openrouter import OpenRouterClient
from app.api_models import (
    HEALTHZ_RESPONSES,
    PROCESS_QUEUE_RESPONSES,
    STATUS_RESPONSES,
    Healthy,
    ProcessQueueAnswer,
    ProcessQueueBody,
)
from app.auth import (
    ForbiddenError,
    UnauthorizedError,
    require_cron_secret,
    require_status_reader,
)
from app.console import router as console_router
from app.delivery.sender import Sender
from app.error_answers import forbidden, invalid_request, method_not_allowed, unauthorized
from app.logs import configure_logging, log
from app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.metrics import ServiceMetrics
from app.models import ProcessQueueResult
from app.operator_routes import add_operator_routes
from app.processing.pipeline import MessagePipeline
from app.processing.processor import QueueProcessor
from app.request_body import parse_body
from app.settings import Settings, SettingsError, load_settings
from app.shutdown import on_sigterm
from app.startup import log_start_up, package_version, secrets_of
from app.status_page import (
    STATUS_OFFSET_MAX,
    STATUS_RUNS_DEFAULT,
    STATUS_RUNS_MAX,
    STATUS_RUNS_MIN,
    StatusFilter,
)
from app.store.rpc import DatabaseError, Rpc
from app.store.store import FailureBrake, Pacing, Store

__all__ = [
    "ProcessQueueBody",  # importable from here as before (it lives in app.api_models)
    "Services",
    "ServicesDep",
    "app",
    "build_services",
    "close_services",
    "create_app",
    "get_services",
    "healthz",
    "process_queue",
    "start_invocation",
]

DESCRIPTION = """\
Sends AI-written WhatsApp campaign messages from a Postgres queue.

A scheduler calls `POST /process-queue` (about once a minute). Each call claims due messages
with a lease, writes each one with OpenRouter (the campaign's instructions and the lead's
details), optionally splits it in parts, sends the parts through the WhatsApp send endpoint
with an idempotency key, and records the outcome. It answers the counts of what it did.
Overlapping calls are safe; a call finishes its work even when the caller hangs up.

Authenticate with the service's CRON_SECRET, as `Authorization: Bearer <secret>` or as
`X-Cron-Secret: <secret>` (use the latter behind Cloud Run IAM, where Authorization carries
Google's OIDC token). `GET /status` and `GET /metrics` (Prometheus) take the same secret;
`GET /healthz` needs no secret.

Alerting: a key or credit error from OpenRouter or the send endpoint answers **502** with
`success: false`, so the scheduler records a failure; a database outage answers **503**.
"""


@dataclass
class Services:
    settings: Settings
    rpc: Rpc
    store: Store
    http_clients: list[httpx.AsyncClient]
    processor: QueueProcessor
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    running: set[asyncio.Future[ProcessQueueResult]] = field(default_factory=set)


async def build_services(settings: Settings) -> Services:
    rpc: Rpc
    if settings.database_url is not None:
        from app.store.postgres import PostgresRpc

        rpc = PostgresRpc(
            settings.database_url.get_secret_value(),
            statement_cache_size=settings.statement_cache_size,
            max_size=settings.database_pool_max_size,
        )
    else:
        from app.store.supabase import SupabaseRpc

        assert settings.supabase_url
        assert settings.supabase_service_role_key
        rpc = await SupabaseRpc.connect(
            settings.supabase_url, settings.supabase_service_role_key.get_secret_value()
        )
    store = Store(rpc)
    # One client per far end: httpcore scans its whole pool on every request, so two small
    # pools cost less CPU than one shared one (bench/overhead.py).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    openrouter_http, send_http = httpx.AsyncClient(limits=limits), httpx.AsyncClient(limits=limits)
    metrics = ServiceMetrics()
    pipeline = MessagePipeline(
        store,
        OpenRouterClient(openrouter_http, settings),
        Sender(send_http, settings),
        default_model=settings.default_model,
        send_timeout_s=settings.send_timeout_s,
        pacing=Pacing.from_settings(settings),
        brake=FailureBrake(settings.inbox_brake_failures, settings.inbox_brake_hours),
        reply_stop_days=settings.reply_stop_days,
        repetition_guard=settings.repetition_guard,
        lead_local_window=settings.lead_local_window,
        metrics=metrics,
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    processor = QueueProcessor(store, pipeline, settings, worker)
    return Services(settings, rpc, store, [openrouter_http, send_http], processor, metrics=metrics)


async def close_services(services: Services) -> None:
    """Lets calls whose caller hung up record their work, then closes every client."""
    if services.running:
        await asyncio.wait(services.running, timeout=services.settings.time_budget_s + 30)
    for client in services.http_clients:
        await client.aclose()
    await services.rpc.close()


def start_invocation(
    services: Services, body: ProcessQueueBody
) -> asyncio.Task[ProcessQueueResult]:
    """One invocation as a task, kept referenced in services.running until it ends."""
    processor = services.processor
    work = asyncio.ensure_future(
        processor.process(
            processor.request(
                batch_size=body.batch_size,
                concurrency=body.concurrency,
                max_messages=body.max_messages,
                time_budget_s=body.time_budget_s,
                run_id=body.run_id,
                requeue_failed=body.requeue_failed,
            )
        )
    )
    services.running.add(work)
    work.add_done_callback(services.running.discard)
    work.add_done_callback(lambda done: _count_call(services.metrics, done))
    return work


def _count_call(metrics: ServiceMetrics, work: asyncio.Future[ProcessQueueResult]) -> None:
    if not work.cancelled() and work.exception() is None:
        metrics.call_ended(work.result())


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            resolved = settings or load_settings()
        except SettingsError as exc:
            # One clear line; the server then exits non-zero (uvicorn: "startup failed").
            print(f"error: {exc}", file=sys.stderr, flush=True)
            app.state.startup_refused = True
            raise _StartupRefusedError(str(exc)) from None
        configure_logging(resolved.log_level, secrets_of(resolved))
        services = await build_services(resolved)
        app.state.services = services
        log_start_up(resolved)
        undo_drain = on_sigterm(services.processor.drain)
        try:
            yield
        finally:
            undo_drain()
            await close_services(services)

    # The docs routes are ours (below): settings come in the lifespan, not at import.
    app = FastAPI(
        title="campaign-queue",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(_NoTracebackForRefusedStartup)
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
    add_operator_routes(app)
    app.include_router(console_router)
    app.add_exception_handler(UnauthorizedError, unauthorized)
    app.add_exception_handler(ForbiddenError, forbidden)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(405, method_not_allowed)
    _add_docs(app)
    return app


def _docs_enabled(services: ServicesDep) -> None:
    if not services.settings.docs_enabled:
        raise HTTPException(404)


def _add_docs(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc, answering 404 unless DOCS_ENABLED."""
    guard = [Depends(_docs_enabled)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: docs")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title}: ReDoc")


class _StartupRefusedError(Exception):
    """Settings are missing or invalid: the one line is already on stderr."""


class _NoTracebackForRefusedStartup:
    """Keeps the server from printing a traceback when start-up was refused on settings.

    Starlette reports a failed lifespan with the formatted traceback, which uvicorn logs;
    for settings the line the lifespan printed says it all.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            refused = getattr(scope["app"].state, "startup_refused", False)
            if message["type"] == "lifespan.startup.failed" and refused:
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        # The server saw startup.failed and exits; nothing more to say.
        with suppress(_StartupRefusedError):
            await self._app(scope, receive, quiet_send)


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
    settings = services.settings
    pacing = Pacing.from_settings(settings)
    try:
        answer = await services.store.queue_status(run_id, pacing, limit, offset, runs_status)
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
    settings = services.settings
    return Pacing.from_settings(settings)


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


app = create_app()  # no I/O here: settings and clients come in the lifespan
