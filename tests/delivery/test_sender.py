"""The send client over real loopback HTTP against the send stub."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.delivery.sender import Sender
from app.outbound import AuthError, PermanentError, RetryableError
from app.sandbox.stubs import Fault
from tests.stubs import SettingsFactory, Stubs


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_send_returns_the_provider_id_and_sends_the_contract_headers(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    sender = Sender(http, make_settings())
    provider_id = await sender.send("conv-1", "Olá Ana!", "msg-1:0")

    assert provider_id == "wamid.000001"
    [request] = stubs.send.seen
    assert request.body == {"conversationId": "conv-1", "text": "Olá Ana!"}
    assert request.headers["idempotency-key"] == "msg-1:0"
    assert request.headers["x-service-role-key"] == stubs.send.service_role_key
    assert [d["text"] for d in stubs.send.deliveries] == ["Olá Ana!"]


async def test_a_send_that_timed_out_is_retried_with_the_same_key(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.script = deque([Fault.DELIVER_THEN_HANG])
    sender = Sender(http, make_settings(send_timeout_s=0.3))

    provider_id = await sender.send("conv-1", "Olá Ana!", "msg-1:0")

    assert stubs.send.requests == 2
    assert {r.headers["idempotency-key"] for r in stubs.send.seen} == {"msg-1:0"}
    assert len(stubs.send.deliveries) == 1  # the receiver deduplicated the retry
    assert stubs.send.duplicate_keys == 1
    assert provider_id == stubs.send.deliveries[0]["provider_id"]


async def test_a_retried_send_is_logged_with_its_message(
    stubs: Stubs,
    make_settings: SettingsFactory,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retried part may reach a receiver twice (its first try delivered, the answer lost):
    the log says which message's part was sent again, and why."""
    stubs.send.faults.script = deque([Fault.DELIVER_THEN_HANG])
    sender = Sender(http, make_settings(send_timeout_s=0.3))

    with caplog.at_level("INFO", logger="campaign_queue"):
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")

    [line] = [r for r in caplog.records if r.getMessage().startswith("send retrying")]
    said = line.__dict__  # the log's extra fields
    assert (said["step"], said["message_id"]) == ("send", "msg-1")
    assert "timed out" in said["error"]


async def test_invalid_number_is_permanent_and_not_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.ratios = {Fault.INVALID_NUMBER: 1.0}
    sender = Sender(http, make_settings())
    with pytest.raises(PermanentError) as raised:
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")
    assert not isinstance(raised.value, AuthError)
    assert raised.value.status == 400
    assert stubs.send.requests == 1
    assert stubs.send.deliveries == []


async def test_a_wrong_service_key_is_an_auth_error(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    sender = Sender(http, make_settings(supabase_service_role_key="wrong"))
    with pytest.raises(AuthError):
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")
    assert stubs.send.deliveries == []


async def test_server_errors_and_429_are_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.script = deque([Fault.SERVER_ERROR, Fault.RATE_LIMIT])
    stubs.send.faults.retry_after = "0.1"
    sender = Sender(http, make_settings())
    assert await sender.send("conv-1", "Olá Ana!", "msg-1:0")
    assert stubs.send.requests == 3
    assert len(stubs.send.deliveries) == 1


async def test_three_failures_give_up_with_a_retryable_error(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.ratios = {Fault.SERVER_ERROR: 1.0}
    sender = Sender(http, make_settings())
    with pytest.raises(RetryableError):
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")
    assert stubs.send.requests == 3


async def test_a_delivered_send_with_a_malformed_body_is_not_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.script = deque([Fault.MALFORMED])
    sender = Sender(http, make_settings())
    assert await sender.send("conv-1", "Olá Ana!", "msg-1:0") is None
    assert stubs.send.requests == 1


async def test_an_unreachable_endpoint_is_retryable(
    make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    sender = Sender(http, make_settings(send_url="http://127.0.0.1:9/nothing-listens-here"))
    with pytest.raises(RetryableError, match="connection failed"):
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")


async def test_a_200_that_says_success_false_is_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.send.faults.script = deque([Fault.REJECTED])
    sender = Sender(http, make_settings())
    assert await sender.send("conv-1", "Olá Ana!", "msg-1:0") == "wamid.000001"
    assert stubs.send.requests == 2
    assert len(stubs.send.deliveries) == 1


@pytest.mark.parametrize("status", [408, 409])
async def test_408_and_409_are_retried_with_the_same_key(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, status: int
) -> None:
    # 409: how many idempotent APIs answer a replay of a key whose first request is in flight.
    stubs.send.faults.script = deque([Fault.STATUS])
    stubs.send.faults.status = status
    sender = Sender(http, make_settings())

    assert await sender.send("conv-1", "Olá Ana!", "msg-1:0") == "wamid.000001"

    assert stubs.send.requests == 2
    assert [r.headers["idempotency-key"] for r in stubs.send.seen] == ["msg-1:0", "msg-1:0"]
    assert len(stubs.send.deliveries) == 1


@pytest.mark.parametrize("status", [408, 409])
async def test_408_and_409_on_every_attempt_stay_retryable(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, status: int
) -> None:
    stubs.send.faults.ratios = {Fault.STATUS: 1.0}
    stubs.send.faults.status = status
    sender = Sender(http, make_settings())
    with pytest.raises(RetryableError) as raised:
        await sender.send("conv-1", "Olá Ana!", "msg-1:0")
    assert raised.value.status == status
    assert stubs.send.requests == 3


async def test_no_request_outlives_the_deadline(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    """The pipeline's deadline is when the message's lease could expire: a send still in
    flight then could race the lease's next owner."""
    stubs.send.faults.ratios = {Fault.HANG: 1.0}
    stubs.send.faults.hang_s = 5.0
    sender = Sender(http, make_settings(send_timeout_s=10.0))

    started = time.monotonic()
    with pytest.raises(RetryableError):
        await sender.send("conv-1", "Olá Ana!", "msg-1:0", deadline=started + 0.4)

    assert time.monotonic() - started < 1.5
