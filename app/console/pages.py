"""Rendering for the console's routes: the templates, the security headers every answer
carries, the signed flash cookie, and the sign-in checks as answers."""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.console.session import (
    FLASH_COOKIE,
    NotSignedInError,
    WrongBasicError,
    cookie_flags,
    current_session,
    signer,
)
from app.console.view import Listing

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
MAX_FORM_BYTES = 16_384


def html(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """The template, with a script nonce and headers that keep the page to itself."""
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {**context, "nonce": nonce}, status_code=status_code
    )
    response.headers.update(
        {
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "Cache-Control": "no-store",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        }
    )
    return response


def text(body: str, status_code: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    page = f"<!doctype html><meta charset=utf-8><title>console</title><p>{body}</p>"
    return HTMLResponse(page, status_code, headers={"Cache-Control": "no-store", **(headers or {})})


def session_or_answer(request: Request, *, page: bool) -> str | Response:
    """The session id, or what to answer instead: a page redirects to the sign-in form, a part
    or a form answers 401; a wrong HTTP Basic password is 401 either way."""
    try:
        return current_session(request)
    except WrongBasicError:
        return text(
            "Wrong token.", 401, {"WWW-Authenticate": 'Basic realm="campaign-queue console"'}
        )
    except NotSignedInError:
        if page:
            return RedirectResponse("/console/sign-in", 303)
        return text('Not signed in: <a href="/console/sign-in">sign in</a>.', 401)


async def read_form(request: Request) -> dict[str, str] | Response:
    """An application/x-www-form-urlencoded body as {name: first value}."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return text("The form is too large.", 413)
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def back_to_console(request: Request, flash: str) -> RedirectResponse:
    """303 to /console with the listing the form came from, and the flash in a signed cookie
    the page reads once."""
    response = RedirectResponse(f"/console?{listing_of(request).query()}#flash", 303)
    encoded = base64.urlsafe_b64encode(flash.encode()).decode()
    value = f"{encoded}.{signer(request).mac('flash', encoded)}"
    response.set_cookie(FLASH_COOKIE, value, max_age=120, **cookie_flags(request))  # type: ignore[arg-type]
    return response


def listing_of(request: Request) -> Listing:
    """The filter and page in the request's query (a bad one reads as the default)."""
    query = request.query_params
    return Listing.from_query(query.get("status"), query.get("page"))


def take_flash(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    encoded, _, mac = value.rpartition(".")
    if not signer(request).verify("flash", encoded, mac):
        return None
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
