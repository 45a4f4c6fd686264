"""The HTTP service: create_app wires the routes, the lifespan and the docs; `app` is what
uvicorn serves.

Routes take what they need as dependencies (ServicesDep, built in the lifespan by
app.services), so a new one is a function and one registration line: the scheduler's and the
reader's in app.queue_routes, the operator's in app.operator_routes, the console in
app.console. The request and answer models are in app.api_models; the secrets in app.auth.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import Depends, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api_models import ProcessQueueBody
from app.auth import ForbiddenError, UnauthorizedError
from app.console import router as console_router
from app.error_answers import forbidden, invalid_request, method_not_allowed, unauthorized
from app.logs import configure_logging
from app.operator_routes import add_operator_routes
from app.queue_routes import add_queue_routes, healthz, process_queue
from app.services import (
    Services,
    ServicesDep,
    build_services,
    close_services,
    get_services,
    start_invocation,
)
from app.settings import Settings, SettingsError, load_settings
from app.shutdown import on_sigterm
from app.startup import log_start_up, package_version, secrets_of

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
    add_queue_routes(app)
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


app = create_app()  # no I/O here: settings and clients come in the lifespan
