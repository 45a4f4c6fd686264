"""The console's page and sign-in (README, "Console"):

    GET  /console            the page (303 to the sign-in form when not signed in)
    GET  /console/part       its inner part, which the page's script swaps in every 5 s
    GET  /console/sign-in    the form; POST it with the token: 303 to /console with a cookie
    POST /console/sign-out   ends the session (CSRF token required)

Without OPERATOR_TOKEN every path answers 404 (app.console.session.operator_token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from app.console.data import load_view
from app.console.pages import html, listing_of, read_form, session_or_answer, take_flash, text
from app.console.session import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    Signer,
    cookie_flags,
    operator_token,
    signer,
    token_matches,
)
from app.console.view import STATUS_FILTERS
from app.logs import log
from app.operator_actions import PacingBody
from app.store.rpc import DatabaseError

router = APIRouter(include_in_schema=False, dependencies=[Depends(operator_token)])
PACING_INPUTS = tuple(PacingBody.model_fields)


@router.get("/console")
async def console_page(request: Request) -> Response:
    return await _render(request, "console.html", page=True)


@router.get("/console/part")
async def console_part(request: Request) -> Response:
    return await _render(request, "live.html", page=False)


async def _render(request: Request, template: str, *, page: bool) -> Response:
    session = session_or_answer(request, page=page)
    if isinstance(session, Response):
        return session
    listing = listing_of(request)
    services = request.app.state.services
    try:
        view = await load_view(services.rpc, services.settings, listing)
    except DatabaseError as exc:
        log.error("database unavailable", extra={"error": str(exc)})
        return text("The database is unavailable; this page tries again when reloaded.", 503)
    context: dict[str, Any] = {
        "view": view,
        "csrf": signer(request).csrf(session),
        "flash": take_flash(request) if page else None,
        "filters": STATUS_FILTERS,
        "pacing_inputs": PACING_INPUTS,
        "basic": session == "basic",
    }
    response = html(request, template, context)
    if page and request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, **_flags(request))
    return response


@router.get("/console/sign-in")
async def sign_in_form(request: Request) -> Response:
    return html(request, "sign_in.html", {"error": None})


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    token = operator_token(request)
    form = await read_form(request)
    if isinstance(form, Response):
        return form
    if not token_matches(token, form.get("token", "")):
        log.info("console sign-in refused")
        return html(request, "sign_in.html", {"error": "Wrong token."}, status_code=401)
    response = RedirectResponse("/console", 303)
    response.set_cookie(
        SESSION_COOKIE,
        Signer.for_token(token).new_session(),
        max_age=SESSION_MAX_AGE_S,
        **_flags(request),
    )
    log.info("console sign-in")
    return response


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    session = session_or_answer(request, page=False)
    if isinstance(session, Response):
        return session
    form = await read_form(request)
    if isinstance(form, Response):
        return form
    if not signer(request).csrf_ok(session, form.get("csrf")):
        return text("The form's CSRF token is missing or wrong: nothing changed.", 403)
    response = RedirectResponse("/console/sign-in", 303)
    response.delete_cookie(SESSION_COOKIE, **_flags(request))
    return response


def _flags(request: Request) -> Any:
    return cookie_flags(request)
