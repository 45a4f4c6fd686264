"""The operators' JSON actions under /operator/ (README, "Operator actions").

    POST   /operator/runs/{run_id}/pause     {"reason": "..."} optional
    POST   /operator/runs/{run_id}/resume
    POST   /operator/runs/{run_id}/cancel    {"reason": "..."} optional
    POST   /operator/runs/{run_id}/requeue   {"reason": "<failure group>"} optional: all
    POST   /operator/inboxes/{inbox_id}/pacing   {min_gap_s, max_gap_s, daily_cap, timezone,
                                                  warmup_days, warmup_start_cap, hourly_cap,
                                                  first_sent_day}
    DELETE /operator/inboxes/{inbox_id}/pacing
    POST   /operator/inboxes/{inbox_id}/lift-brake
    POST   /operator/contacts/suppress     {"workspace_id", "phone", "reason"} (reason optional)
    POST   /operator/contacts/unsuppress   {"workspace_id", "phone"}

`Authorization: Bearer <OPERATOR_TOKEN>` (app.auth.require_operator_token): without the
setting every route answers 404; the CRON_SECRET 403. 200 with what changed; a bad id 404, a
wrong state 409, a bad body or a refused value 422 (POST /process-queue's shape); the
database unavailable 503.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from app.auth import require_operator_token
from app.error_answers import unprocessable
from app.logs import log
from app.operator_actions import (
    ContactBody,
    NoBody,
    PacingBody,
    RunActionBody,
    SuppressBody,
    clear_inbox_pacing,
    lift_inbox_brake,
    refusal_status,
    run_action,
    set_inbox_pacing,
    suppress_contact,
    unsuppress_contact,
)
from app.request_body import parse_body
from app.store.rpc import DatabaseError, Rpc

OPERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Done: `success: true` and what changed (status, overrides, brake or "
        "suppression before and after, `messages_changed`)."
    },
    401: {"description": "No OPERATOR_TOKEN, or a wrong one."},
    403: {"description": "The CRON_SECRET: it never acts on campaigns."},
    404: {"description": "OPERATOR_TOKEN is not set, or no such run, inbox or workspace."},
    409: {"description": "A wrong state (`error` names it); nothing changed."},
    422: {"description": "A bad body or id, or a value the table refuses (the field named)."},
    503: {"description": "The database is unavailable."},
}


# What an action's log line carries: ids and states, never a phone (masked or not).
_LOGGED = ("run_id", "inbox_id", "workspace_id", "status_after")


def add_operator_routes(app: FastAPI) -> None:
    guard = [Depends(require_operator_token)]
    for action in ("pause", "resume", "cancel", "requeue"):
        app.post(
            f"/operator/runs/{{run_id}}/{action}",
            operation_id=f"operator_{action}_run",
            summary=f"{action.capitalize()} a run (operator)",
            responses=OPERATOR_RESPONSES,
            dependencies=guard,
        )(_run_route(action))
    app.post(
        "/operator/inboxes/{inbox_id}/pacing",
        operation_id="operator_set_inbox_pacing",
        summary="Set an inbox's pacing overrides (operator)",
        responses=OPERATOR_RESPONSES,
        dependencies=guard,
    )(set_pacing)
    app.delete(
        "/operator/inboxes/{inbox_id}/pacing",
        operation_id="operator_clear_inbox_pacing",
        summary="Clear an inbox's pacing overrides (operator)",
        responses=OPERATOR_RESPONSES,
        dependencies=guard,
    )(clear_pacing)
    app.post(
        "/operator/inboxes/{inbox_id}/lift-brake",
        operation_id="operator_lift_inbox_brake",
        summary="Lift an inbox's failure brake (operator)",
        responses=OPERATOR_RESPONSES,
        dependencies=guard,
    )(lift_brake)
    app.post(
        "/operator/contacts/suppress",
        operation_id="operator_suppress_contact",
        summary="Put a contact on the suppression list (operator)",
        responses=OPERATOR_RESPONSES,
        dependencies=guard,
    )(suppress)
    app.post(
        "/operator/contacts/unsuppress",
        operation_id="operator_unsuppress_contact",
        summary="Take a contact off the suppression list (operator)",
        responses=OPERATOR_RESPONSES,
        dependencies=guard,
    )(unsuppress)


def _run_route(action: str) -> Any:
    async def route(request: Request, run_id: uuid.UUID) -> JSONResponse:
        body = await parse_body(request, RunActionBody)
        if isinstance(body, JSONResponse):
            return body
        if action == "resume" and body.reason is not None:
            return unprocessable(
                [{"loc": ["body", "reason"], "msg": "resume takes no reason", "type": "extra"}]
            )
        return await _answer(run_action(_rpc(request), action, run_id, body.reason))

    route.__name__ = f"operator_{action}_run"
    return route


async def set_pacing(request: Request, inbox_id: uuid.UUID) -> JSONResponse:
    body = await parse_body(request, PacingBody)
    if isinstance(body, JSONResponse):
        return body
    return await _answer(set_inbox_pacing(_rpc(request), inbox_id, body))


async def clear_pacing(request: Request, inbox_id: uuid.UUID) -> JSONResponse:
    return await _answer(clear_inbox_pacing(_rpc(request), inbox_id))


async def lift_brake(request: Request, inbox_id: uuid.UUID) -> JSONResponse:
    body = await parse_body(request, NoBody)
    if isinstance(body, JSONResponse):
        return body
    return await _answer(lift_inbox_brake(_rpc(request), inbox_id))


async def suppress(request: Request) -> JSONResponse:
    body = await parse_body(request, SuppressBody)
    if isinstance(body, JSONResponse):
        return body
    rpc = _rpc(request)
    return await _answer(suppress_contact(rpc, body.workspace_id, body.phone, body.reason))


async def unsuppress(request: Request) -> JSONResponse:
    body = await parse_body(request, ContactBody)
    if isinstance(body, JSONResponse):
        return body
    return await _answer(unsuppress_contact(_rpc(request), body.workspace_id, body.phone))


def _rpc(request: Request) -> Rpc:
    rpc: Rpc = request.app.state.services.rpc
    return rpc


async def _answer(action: Awaitable[dict[str, Any]]) -> JSONResponse:
    try:
        answer = await action
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"success": False, "error": "database unavailable"}, 503)
    status = refusal_status(answer)
    if status == 422:  # a value the table refuses: named as a bad body field is
        field, why = answer.get("field") or "body", answer.get("error") or "refused"
        return unprocessable([{"loc": ["body", field], "msg": why, "type": "value_error"}])
    if status != 200:
        log.info(
            "operator action refused",
            extra={
                "error": answer.get("reason"),
                **{k: v for k, v in answer.items() if k in _LOGGED},
            },
        )
        return JSONResponse({"success": False, "error": answer.get("reason"), **answer}, status)
    log.info(
        "operator action",
        extra={k: v for k, v in answer.items() if k in _LOGGED},
    )
    return JSONResponse({"success": True, **answer}, status)
