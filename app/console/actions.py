"""The console's buttons: each a POST form carrying the session's CSRF token, calling the
operator action of app.operator_actions, then 303 back to /console (the same filter and page)
with `#flash` saying what changed or why nothing did.

    POST /console/runs/{run_id}/{pause|resume|cancel|requeue}   requeue: reason ("" = all)
    POST /console/inboxes/{inbox_id}/pacing                      the overrides to set
    POST /console/inboxes/{inbox_id}/clear-pacing
    POST /console/inboxes/{inbox_id}/lift-brake
    POST /console/contacts/{suppress|unsuppress}                workspace_id, phone (, reason)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.console.flash import contact_flash, inbox_flash, refused, run_flash
from app.console.pages import back_to_console, read_form, session_or_answer, text
from app.console.session import operator_token, signer
from app.logs import log
from app.operator_actions import (
    CONTACT_ACTIONS,
    RUN_ACTIONS,
    PacingBody,
    RunActionBody,
    SuppressBody,
    clear_inbox_pacing,
    lift_inbox_brake,
    run_action,
    set_inbox_pacing,
    suppress_contact,
    unsuppress_contact,
)
from app.store.rpc import DatabaseError, Rpc

router = APIRouter(include_in_schema=False, dependencies=[Depends(operator_token)])

Form = dict[str, str]


async def _checked_form(request: Request) -> Form | Response:
    """The form when the request is signed in and carries its session's CSRF token; else the
    answer (401, 403, 413), and nothing is done."""
    session = session_or_answer(request, page=False)
    if isinstance(session, Response):
        return session
    form = await read_form(request)
    if isinstance(form, Response):
        return form
    if not signer(request).csrf_ok(session, form.get("csrf")):
        log.info("console form refused: CSRF token missing or wrong")
        return text("The form's CSRF token is missing or wrong: nothing changed.", 403)
    return form


async def _act(
    request: Request, action: Callable[[Rpc], Awaitable[dict[str, Any]]], say: Callable[..., str]
) -> Response:
    """Runs the action and answers the 303 with its flash."""
    try:
        answer = await action(request.app.state.services.rpc)
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return back_to_console(request, "The database did not answer: reload to see the state.")
    log.info(
        "console action" if answer.get("ok") else "console action refused",
        extra={k: v for k, v in answer.items() if k in ("run_id", "inbox_id", "status_after")},
    )
    return back_to_console(request, say(answer))


@router.post("/console/runs/{run_id}/{action}")
async def run_button(request: Request, run_id: str, action: str) -> Response:
    if action not in RUN_ACTIONS:
        raise HTTPException(404)
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    what = f"{action} run {run_id[:8]}…"
    try:  # the requeue's reason group ("": all); the other buttons send none
        body = RunActionBody.model_validate(
            {"reason": form.get("reason") or None} if action == "requeue" else {}
        )
    except ValidationError as exc:
        return back_to_console(request, f"Refused: {what}: {_problems(exc)}. Nothing changed.")
    group = body.reason
    target = _uuid(run_id)
    if target is None:
        return back_to_console(request, refused(what, {"reason": "run_not_found"}))
    return await _act(
        request,
        lambda rpc: run_action(rpc, action, target, group),
        lambda answer: run_flash(action, answer, group),
    )


@router.post("/console/inboxes/{inbox_id}/pacing")
async def pacing_button(request: Request, inbox_id: str) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    target = _uuid(inbox_id)
    if target is None:
        return back_to_console(
            request, refused(f"set pacing of inbox {inbox_id[:8]}…", {"reason": "inbox_not_found"})
        )
    values = {k: v.strip() for k, v in form.items() if k in PacingBody.model_fields and v.strip()}
    try:
        body = PacingBody.model_validate(values)
    except ValidationError as exc:
        return back_to_console(
            request,
            f"Refused: set pacing of inbox {inbox_id[:8]}…: {_problems(exc)}. Nothing changed.",
        )
    return await _act(
        request,
        lambda rpc: set_inbox_pacing(rpc, target, body),
        lambda answer: inbox_flash("set pacing", answer),
    )


@router.post("/console/inboxes/{inbox_id}/clear-pacing")
async def clear_pacing_button(request: Request, inbox_id: str) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    target = _uuid(inbox_id)
    if target is None:
        return back_to_console(
            request,
            refused(f"clear pacing of inbox {inbox_id[:8]}…", {"reason": "inbox_not_found"}),
        )
    return await _act(
        request,
        lambda rpc: clear_inbox_pacing(rpc, target),
        lambda answer: inbox_flash("clear pacing", answer),
    )


@router.post("/console/inboxes/{inbox_id}/lift-brake")
async def lift_brake_button(request: Request, inbox_id: str) -> Response:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    target = _uuid(inbox_id)
    if target is None:
        what = f"lift brake of inbox {inbox_id[:8]}…"
        return back_to_console(request, refused(what, {"reason": "inbox_not_found"}))
    return await _act(
        request,
        lambda rpc: lift_inbox_brake(rpc, target),
        lambda answer: inbox_flash("lift brake", answer),
    )


@router.post("/console/contacts/{action}")
async def contact_button(request: Request, action: str) -> Response:
    if action not in CONTACT_ACTIONS:
        raise HTTPException(404)
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    fields = {k: v.strip() for k, v in form.items() if k in SuppressBody.model_fields}
    if action == "unsuppress" or not fields.get("reason"):
        fields.pop("reason", None)
    try:
        body = SuppressBody.model_validate(fields)
    except ValidationError as exc:
        return back_to_console(request, f"Refused: {action}: {_problems(exc)}. Nothing changed.")
    workspace, phone, reason = body.workspace_id, body.phone, body.reason

    async def call(rpc: Rpc) -> dict[str, Any]:
        if action == "suppress":
            return await suppress_contact(rpc, workspace, phone, reason)
        return await unsuppress_contact(rpc, workspace, phone)

    return await _act(request, call, lambda answer: contact_flash(action, answer))


def _problems(exc: ValidationError) -> str:
    """Which fields were wrong and why, never their values (a phone)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
