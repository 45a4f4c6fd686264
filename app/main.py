"""The HTTP service: POST /process-queue and GET /healthz. Clients are built in the lifespan."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ai.openrouter import OpenRouterClient
from app.delivery.sender import Sender
from app.logs import configure_logging, log
from app.models import ProcessQueueResult
from app.processing.pipeline import MessagePipeline
from app.processing.processor import QueueProcessor
from app.settings import Settings, SettingsError, load_settings
from app.store.rpc import DatabaseError, Rpc
from app.store.store import Pacing, Store


class ProcessQueueBody(BaseModel):
    """Every field optional; an empty body takes the settings' defaults."""

    model_config = ConfigDict(extra="forbid")

    batch_size: Annotated[int | None, Field(strict=True, ge=1, le=100)] = None
    concurrency: Annotated[int | None, Field(strict=True, ge=1, le=50)] = None
    max_messages: Annotated[int | None, Field(strict=True, ge=1, le=10000)] = None
    time_budget_s: Annotated[float | None, Field(ge=1, le=3600)] = None
    run_id: uuid.UUID | None = None
    requeue_failed: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _requeue_needs_a_run(self) -> ProcessQueueBody:
        if self.requeue_failed and self.run_id is None:
            raise ValueError("requeue_failed needs run_id")
        return self


@dataclass
class Services:
    settings: Settings
    rpc: Rpc
    store: Store
    http_clients: list[httpx.AsyncClient]
    processor: QueueProcessor
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
    pipeline = MessagePipeline(
        store,
        OpenRouterClient(openrouter_http, settings),
        Sender(send_http, settings),
        default_model=settings.default_model,
        send_timeout_s=settings.send_timeout_s,
        pacing=Pacing(settings.inbox_min_gap_s, settings.inbox_max_gap_s, settings.inbox_daily_cap),
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    processor = QueueProcessor(store, pipeline, settings, worker)
    return Services(settings, rpc, store, [openrouter_http, send_http], processor)


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
        configure_logging(resolved.log_level, _secrets(resolved))
        services = await build_services(resolved)
        app.state.services = services
        try:
            yield
        finally:
            if services.running:  # calls whose caller hung up: let them record their work
                await asyncio.wait(services.running, timeout=resolved.time_budget_s + 30)
            for client in services.http_clients:
                await client.aclose()
            await services.rpc.close()

    app = FastAPI(title="campaign-queue", lifespan=lifespan)
    app.add_middleware(_NoTracebackForRefusedStartup)
    app.post(
        "/process-queue",
        response_model=ProcessQueueResult,
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": ProcessQueueBody.model_json_schema()}},
                "required": False,
            }
        },
        dependencies=[Depends(_require_cron_secret)],
    )(process_queue)
    app.get("/healthz")(healthz)
    app.get("/status", dependencies=[Depends(_require_cron_secret)])(status)
    app.add_exception_handler(_Unauthorized, _unauthorized)
    return app


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


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


class _Unauthorized(Exception):
    pass


async def _require_cron_secret(request: Request) -> None:
    expected = _services(request).settings.cron_secret
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode())
    ):
        raise _Unauthorized


async def process_queue(request: Request) -> JSONResponse:
    """Claims and sends due messages; answers the counts."""
    services = _services(request)
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _unprocessable(
            [{"loc": ["body"], "msg": "body is not valid JSON", "type": "json_invalid"}]
        )
    except RecursionError:  # json.loads recurses once per nesting level
        return _unprocessable(
            [{"loc": ["body"], "msg": "body is nested too deeply", "type": "json_invalid"}]
        )
    if data is None:
        data = {}
    try:
        body = ProcessQueueBody.model_validate(data)
    except ValidationError as exc:
        return _unprocessable(
            exc.errors(include_url=False, include_context=False, include_input=False)
        )
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
    # The call finishes its work when the caller hangs up (pg_net gives up after 5 s): the
    # task goes on, shielded, and is kept referenced until it ends.
    services.running.add(work)
    work.add_done_callback(services.running.discard)
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


async def status(request: Request, run_id: uuid.UUID | None = None) -> JSONResponse:
    """Queue depth and lag, each run's progress, cost and ETA, inboxes' pace, failures by
    reason, throughput (DESIGN section 9); `?run_id=` answers about that run only."""
    services = _services(request)
    settings = services.settings
    pacing = Pacing(settings.inbox_min_gap_s, settings.inbox_max_gap_s, settings.inbox_daily_cap)
    try:
        return JSONResponse(await services.store.queue_status(run_id, pacing))
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"success": False, "error": "database unavailable"}, 503)


async def healthz(request: Request) -> JSONResponse:
    try:
        await _services(request).store.ping()
    except DatabaseError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    return JSONResponse({"status": "ok"})


def _unprocessable(errors: list[Any]) -> JSONResponse:
    detail = [
        {"loc": ["body", *[p for p in e["loc"] if p != "body"]], "msg": e["msg"], "type": e["type"]}
        for e in errors
    ]
    return JSONResponse({"success": False, "detail": detail}, 422)


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.openrouter_api_key,
        settings.supabase_service_role_key,
        settings.cron_secret,
        settings.database_url,
    ]
    secrets = [v.get_secret_value() for v in values if v is not None]
    if settings.database_url is not None:
        password = urlsplit(settings.database_url.get_secret_value()).password
        if password:
            secrets.append(password)
    return secrets


async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"}
    )


app = create_app()  # no I/O here: settings and clients come in the lifespan
