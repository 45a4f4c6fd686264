"""What ai/ and delivery/ share about outbound HTTP: typed errors and the retry policy.

Errors tell the caller what to do with a message:
- RetryableError: try again later (408, 409, 429, 5xx, timeout, connection error, malformed
  answer); a 409 is how many idempotent APIs answer a replay whose first request is still in
  flight, and the retry carries the same Idempotency-Key;
- PermanentError: this message will never succeed as it is (400, 404, 422, invalid number);
- AuthError: a key, a credit balance or a permission is wrong (401, 402, 403); every other
  message would fail the same way, so the whole invocation stops.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import backoff
import httpx
from backoff.types import Details

from app.settings import Settings

T = TypeVar("T")

AUTH_STATUSES = frozenset({401, 402, 403})
# 408 Request Timeout, 409 Conflict (a replay in progress), 429 Too Many Requests.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})


class OutboundError(Exception):
    retryable: bool = False
    # Set by the pipeline on an error of the send endpoint (not the model's): its status goes
    # into the inbox's send record, which the failure brake counts.
    at_send_endpoint: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(OutboundError):
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(OutboundError):
    pass


class AuthError(PermanentError):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    """Up to max_tries attempts; waits base * 2**n with full jitter, or Retry-After (capped)."""

    max_tries: int = 3
    base_s: float = 1.0
    max_wait_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_max_tries, settings.retry_base_s, settings.retry_max_wait_s)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def error_for_status(response: httpx.Response, what: str) -> OutboundError:
    """The typed error for a non-2xx answer. The body is not echoed: it may hold personal data."""
    status = response.status_code
    message = f"{what}: HTTP {status}"
    if status in RETRYABLE_CLIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RetryableError(message, status=status, retry_after=retry_after)
    if status >= 500:
        return RetryableError(message, status=status)
    if status in AUTH_STATUSES:
        return AuthError(message, status=status)
    return PermanentError(message, status=status)


def error_for_transport(exc: httpx.HTTPError, what: str) -> RetryableError:
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{what}: timed out ({type(exc).__name__})")
    return RetryableError(f"{what}: connection failed ({type(exc).__name__})")


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    timeout_s: float,
    what: str,
) -> httpx.Response:
    """One POST; a transport failure or a non-2xx answer comes back as a typed error."""
    try:
        response = await http.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise error_for_transport(exc, what) from exc
    if response.status_code >= 300:
        raise error_for_status(response, what)
    return response


def _waits(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """backoff wait generator: it is sent the exception that failed the last attempt."""
    attempt = 0
    exc = yield 0.0  # priming: backoff sends None first and ignores this value
    while True:
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        if retry_after is not None:
            wait = min(retry_after, policy.max_wait_s)
        else:
            wait = random.uniform(0, policy.base_s * 2**attempt)  # full jitter
        attempt += 1
        exc = yield wait


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    on_retry: Callable[[OutboundError, float], None] | None = None,
) -> T:
    """Runs attempt() until it succeeds, fails permanently, runs out of tries or of time.

    deadline is a time.monotonic() value: no wait goes past it, and a Retry-After longer than
    what is left gives up at once rather than knock again too early.
    """

    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    def give_up(exc: Exception) -> bool:
        if not isinstance(exc, OutboundError) or not exc.retryable:
            return True
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        wait = min(retry_after, policy.max_wait_s) if retry_after is not None else 0.0
        return remaining() <= wait

    def backing_off(details: Details) -> None:
        if on_retry is not None:
            exc = details.get("exception")
            wait = details.get("wait")
            if isinstance(exc, OutboundError) and isinstance(wait, float):
                on_retry(exc, wait)

    max_time = remaining()
    decorated = backoff.on_exception(
        _waits,
        OutboundError,
        max_tries=policy.max_tries,
        max_time=None if math.isinf(max_time) else max(max_time, 0.0),
        jitter=None,
        giveup=give_up,
        on_backoff=backing_off,
        raise_on_giveup=True,
        logger=None,
        policy=policy,
    )(attempt)
    return await decorated()
