"""Who may see the console (README, "Console"): the OPERATOR_TOKEN, as HTTP Basic's password
or through the sign-in form's cookie; and the CSRF token every changing form carries.

The cookie is `<issued>.<nonce>.<mac>`: an HMAC-SHA256 under a key derived from the token,
so changing OPERATOR_TOKEN ends every session, and a session lasts SESSION_MAX_AGE_S. A
form's CSRF token is the HMAC of its session's nonce (of "basic" for a Basic sign-in), so it
is worth nothing without the session. Every comparison is constant-time (hmac.compare_digest).
The CRON_SECRET signs nobody in: it is not the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from app.settings import Settings

SESSION_COOKIE = "cq_console"
FLASH_COOKIE = "cq_flash"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_S = 12 * 3600
BASIC_SESSION = "basic"  # the session id of a request signed in with HTTP Basic


class NotSignedInError(Exception):
    """No valid session: a page redirects to the sign-in form, the rest answer 401."""


class WrongBasicError(Exception):
    """HTTP Basic with a password that is not the OPERATOR_TOKEN: 401."""


@dataclass(frozen=True)
class Signer:
    """Signs and checks the session cookie, the CSRF tokens and the flash message."""

    key: bytes

    @classmethod
    def for_token(cls, token: str) -> Signer:
        digest = hmac.new(token.encode(), b"campaign-queue console v1", hashlib.sha256)
        return cls(digest.digest())

    def mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self.key, f"{purpose}\0{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def verify(self, purpose: str, text: str, given: str) -> bool:
        return hmac.compare_digest(self.mac(purpose, text).encode(), given.encode())

    def new_session(self, now: float | None = None) -> str:
        body = f"{int(now if now is not None else time.time())}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self.mac('session', body)}"

    def session_id(self, cookie: str, now: float | None = None) -> str | None:
        """The session's nonce when the cookie is ours and not expired, else None."""
        issued, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isdigit() and nonce and mac):
            return None
        if not self.verify("session", f"{issued}.{nonce}", mac):
            return None
        age = (now if now is not None else time.time()) - int(issued)
        return nonce if -60 <= age <= SESSION_MAX_AGE_S else None

    def csrf(self, session: str) -> str:
        return self.mac("csrf", session)

    def csrf_ok(self, session: str, given: str | None) -> bool:
        return given is not None and self.verify("csrf", session, given)


def operator_token(request: Request) -> str:
    """The OPERATOR_TOKEN; without it every console path answers 404."""
    settings: Settings = request.app.state.services.settings
    if settings.operator_token is None:
        raise HTTPException(404)
    return settings.operator_token.get_secret_value()


def token_matches(token: str, given: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def signer(request: Request) -> Signer:
    return Signer.for_token(operator_token(request))


def current_session(request: Request) -> str:
    """The request's session id: BASIC_SESSION for HTTP Basic with the token as password (any
    user name), else the cookie's nonce. Raises WrongBasicError or NotSignedInError."""
    token = operator_token(request)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise WrongBasicError from None
        if token_matches(token, decoded.partition(":")[2]):
            return BASIC_SESSION
        raise WrongBasicError
    cookie = request.cookies.get(SESSION_COOKIE)
    session = Signer.for_token(token).session_id(cookie) if cookie else None
    if session is None:
        raise NotSignedInError
    return session


def cookie_flags(request: Request) -> dict[str, object]:
    """Secure when the request came over https: to this server, or to the proxy in front of it
    (X-Forwarded-Proto, as Cloud Run's and Fly's proxies set it; a client that claims https
    over plain http only gets a cookie its browser will not send back)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return {
        "path": COOKIE_PATH,
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https" or forwarded == "https",
    }
