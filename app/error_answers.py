"""The service's 401, 403 and 422 answers, one shape on every route, and their log lines.

422: `{"success": false, "detail": [{"loc", "msg", "type"}]}`, for a bad body (app.main) and
for a bad query parameter (FastAPI's own check, e.g. GET /status?run_id=nope) alike; the
input is never echoed. 401: `{"success": false, "error": "unauthorized"}`, and one WARNING
line naming the route, the caller's address and what was wrong, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from app.logs import log


def unprocessable(problems: Iterable[Mapping[str, Any]]) -> JSONResponse:
    detail = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
    return JSONResponse({"success": False, "detail": detail}, 422)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's checks of the query and path parameters, in the body's 422 shape."""
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[Mapping[str, Any]] = exc.errors()
    return unprocessable(errors)


async def unauthorized(request: Request, exc: Exception) -> JSONResponse:
    client = request.client.host if request.client else "an unknown address"
    log.warning(
        f"unauthorized: {request.method} {request.url.path} from {client}: "
        f"{_what_was_wrong(request)}"
    )
    return JSONResponse(
        {"success": False, "error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"}
    )


async def forbidden(request: Request, exc: Exception) -> JSONResponse:
    """The CRON_SECRET on an operator route: known, and never allowed to act on campaigns."""
    client = request.client.host if request.client else "an unknown address"
    log.warning(
        f"forbidden: {request.method} {request.url.path} from {client}: "
        "the CRON_SECRET cannot act on campaigns (use the OPERATOR_TOKEN)"
    )
    return JSONResponse(
        {"success": False, "error": "forbidden: the CRON_SECRET cannot act on campaigns"}, 403
    )


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """405, except under /console and /operator/ without OPERATOR_TOKEN: 404 there, as for
    the methods those routes take, so a prober cannot tell they exist."""
    path = request.url.path
    operator_path = path == "/console" or path.startswith(("/console/", "/operator/"))
    if operator_path and request.app.state.services.settings.operator_token is None:
        return JSONResponse({"detail": "Not Found"}, 404)
    return await http_exception_handler(request, cast(HTTPException, exc))


def _what_was_wrong(request: Request) -> str:
    operator = request.url.path.startswith("/operator/")
    authorization = request.headers.get("authorization", "").strip()
    header = "" if operator else request.headers.get("x-cron-secret", "").strip()
    scheme, _, token = authorization.partition(" ")
    if header:
        return "wrong secret"
    if not authorization:
        return "no secret"
    if scheme.lower() != "bearer":
        return f"Authorization is not `Bearer <{'OPERATOR_TOKEN' if operator else 'CRON_SECRET'}>`"
    return "wrong secret" if token.strip() else "empty secret"
