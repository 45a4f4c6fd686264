"""The CRON_SECRET check: `Authorization: Bearer <secret>` or `X-Cron-Secret: <secret>`.

X-Cron-Secret is for deployments behind Cloud Run IAM, where Authorization carries Google's
OIDC token: a correct X-Cron-Secret passes whatever Authorization says. Both are compared in
constant time. The two security classes give the OpenAPI document its two schemes, so /docs'
"Authorize" and "Try it out" send either.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.settings import Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="CronSecretBearer",
    description="`Authorization: Bearer <CRON_SECRET>`.",
)
header_scheme = APIKeyHeader(
    name="X-Cron-Secret",
    auto_error=False,
    scheme_name="CronSecretHeader",
    description=(
        "`X-Cron-Secret: <CRON_SECRET>`, for callers whose Authorization header carries "
        "something else (Cloud Scheduler's OIDC token behind Cloud Run IAM)."
    ),
)


class UnauthorizedError(Exception):
    """No CRON_SECRET, or a wrong one: the app answers 401 (see app.main)."""


def secret_matches(settings: Settings, *candidates: str | None) -> bool:
    """True when any candidate is the CRON_SECRET. Every candidate is compared, each in
    constant time, so the time taken says nothing about which one (or how much) matched."""
    if settings.cron_secret is None:
        return False
    expected = settings.cron_secret.get_secret_value().encode()
    matched = False
    for candidate in candidates:
        if candidate is not None:
            matched |= hmac.compare_digest(candidate.strip().encode(), expected)
    return matched


def status_reader_secrets(settings: Settings) -> list[str]:
    """The secrets that may read the status and the metrics: CRON_SECRET. (An operator's
    token, when the service has one, belongs here too: readers, unlike the scheduler, never
    run the queue.)"""
    return [settings.cron_secret.get_secret_value()] if settings.cron_secret is not None else []


def any_secret_matches(expected: list[str], *candidates: str | None) -> bool:
    """True when a candidate is one of the expected secrets; every pair is compared, each in
    constant time."""
    matched = False
    for secret in expected:
        for candidate in candidates:
            if candidate is not None:
                matched |= hmac.compare_digest(candidate.strip().encode(), secret.encode())
    return matched


async def require_status_reader(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    header: Annotated[str | None, Security(header_scheme)],
) -> None:
    """A route dependency for GET /status and GET /metrics: raises UnauthorizedError unless
    `Authorization: Bearer` or `X-Cron-Secret` carries one of status_reader_secrets."""
    settings: Settings = request.app.state.services.settings
    token = bearer.credentials if bearer is not None else None
    if not any_secret_matches(status_reader_secrets(settings), token, header):
        raise UnauthorizedError


async def require_cron_secret(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    header: Annotated[str | None, Security(header_scheme)],
) -> None:
    """A route dependency: raises UnauthorizedError unless either header has the secret."""
    settings: Settings = request.app.state.services.settings
    token = bearer.credentials if bearer is not None else None
    if not secret_matches(settings, token, header):
        raise UnauthorizedError


class ForbiddenError(Exception):
    """The CRON_SECRET on an operator route: it runs the queue, it never acts on campaigns
    (the app answers 403, see app.error_answers)."""


operator_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="OperatorTokenBearer",
    description="`Authorization: Bearer <OPERATOR_TOKEN>`.",
)


def _matches(candidate: str | None, secret: SecretStr | None) -> bool:
    if candidate is None or secret is None:
        return False
    return hmac.compare_digest(candidate.strip().encode(), secret.get_secret_value().encode())


async def require_operator_token(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(operator_scheme)],
) -> None:
    """A route dependency for /operator/: 404 without OPERATOR_TOKEN set (the routes do not
    exist), 403 for the CRON_SECRET (as Bearer or X-Cron-Secret), else 401 unless the
    Bearer token is the OPERATOR_TOKEN. Compared in constant time."""
    settings: Settings = request.app.state.services.settings
    if settings.operator_token is None:
        raise HTTPException(404)
    token = bearer.credentials if bearer is not None else None
    if _matches(token, settings.operator_token):
        return
    if secret_matches(settings, token, request.headers.get("x-cron-secret")):
        raise ForbiddenError
    raise UnauthorizedError
