"""Retry-After parsing and the error for each status (pure functions, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from app.outbound import (
    AuthError,
    OutboundError,
    PermanentError,
    RetryableError,
    error_for_status,
    parse_retry_after,
)


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("0.5", now=now) == 0.5
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-3", now=now) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad, now=now) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentError),
        (401, AuthError),
        (402, AuthError),
        (403, AuthError),
        (404, PermanentError),
        (408, RetryableError),
        (409, RetryableError),
        (422, PermanentError),
        (429, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
    ],
)
def test_error_for_status(status: int, kind: type[OutboundError]) -> None:
    error = error_for_status(httpx.Response(status), "send")
    assert type(error) is kind
    assert error.retryable == (kind is RetryableError)
    assert error.status == status
    assert str(error) == f"send: HTTP {status}"


@pytest.mark.parametrize("status", [408, 409, 429])
def test_a_retryable_4xx_honours_retry_after(status: int) -> None:
    error = error_for_status(httpx.Response(status, headers={"Retry-After": "3"}), "send")
    assert isinstance(error, RetryableError)
    assert error.retry_after == 3.0
