"""The service's 401 and 422 answers, one shape on every route, and the 401's log line.

422: `{"success": false, "detail": [{"loc", "msg", "type"}]}`, for a bad body (app.main) and
for a bad query parameter (FastAPI's own check, e.g. GET /status?run_id=nope) alike; the
input is never echoed. 401: `{"success": false, "error": "unauthorized"}`, and one WARNING
line naming the route, the caller's address and what was wrong, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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


def _what_was_wrong(request: Request) -> str:
    authorization = request.headers.get("authorization", "").strip()
    header = request.headers.get("x-cron-secret", "").strip()
    scheme, _, token = authorization.partition(" ")
    if header:
        return "wrong secret"
    if not authorization:
        return "no secret"
    if scheme.lower() != "bearer":
        return "Authorization is not `Bearer <CRON_SECRET>`"
    return "wrong secret" if token.strip() else "empty secret"
