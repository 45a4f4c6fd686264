"""OpenRouter client over real loopback HTTP against the OpenRouter stub."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import pytest_asyncio

from app.ai.openrouter import OpenRouterClient
from app.ai.split import parse_split_response
from app.ai.validation import validate_message
from app.models import SplitterConfig
from app.outbound import AuthError, PermanentError, RetryableError
from app.sandbox.stubs import Fault, Latency
from tests.ai.conftest import RawAnswers
from tests.stubs import SettingsFactory, Stubs


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def generate(client: OpenRouterClient, deadline: float | None = None) -> tuple[str, int]:
    result = await client.generate(
        model="m/one", system="Be brief.", user="Name: Ana", deadline=deadline
    )
    return result.text, result.tokens


async def test_generate_sends_the_contract_payload_and_reads_tokens(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    result = await client.generate(model="m/one", system="Be brief.", user="Name: Ana")

    assert "Ana" in result.text
    assert result.tokens > 0
    assert result.elapsed_ms >= 0
    [request] = stubs.openrouter.seen
    assert request.body["model"] == "m/one"
    assert request.body["max_tokens"] == 500
    assert request.body["temperature"] == 0.7
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name: Ana"},
    ]


async def test_429_is_retried_honouring_retry_after(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.script = deque([Fault.RATE_LIMIT, Fault.RATE_LIMIT])
    stubs.openrouter.faults.retry_after = "0.3"
    client = OpenRouterClient(http, make_settings(retry_base_s=0.0))

    started = time.monotonic()
    text, _ = await generate(client)

    assert text
    assert stubs.openrouter.requests == 3
    assert time.monotonic() - started >= 0.6  # two waits of Retry-After 0.3 s


async def test_retry_after_as_an_http_date_is_honoured(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.script = deque([Fault.RATE_LIMIT])
    stubs.openrouter.faults.retry_after = format_datetime(
        datetime.now(UTC) + timedelta(seconds=2), usegmt=True
    )
    client = OpenRouterClient(http, make_settings(retry_base_s=0.0, retry_max_wait_s=5.0))

    started = time.monotonic()
    await generate(client)

    assert stubs.openrouter.requests == 2
    assert time.monotonic() - started >= 0.9  # the date has one-second resolution


async def test_retry_after_is_capped_by_the_maximum_wait(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.script = deque([Fault.RATE_LIMIT])
    stubs.openrouter.faults.retry_after = "60"
    client = OpenRouterClient(http, make_settings(retry_max_wait_s=0.2))

    started = time.monotonic()
    await generate(client)

    assert stubs.openrouter.requests == 2
    assert time.monotonic() - started < 5


async def test_retry_after_past_the_deadline_gives_up_at_once(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.script = deque([Fault.RATE_LIMIT, Fault.RATE_LIMIT])
    stubs.openrouter.faults.retry_after = "30"
    client = OpenRouterClient(http, make_settings(retry_max_wait_s=60.0))

    started = time.monotonic()
    with pytest.raises(RetryableError) as raised:
        await generate(client, deadline=time.monotonic() + 1.0)

    assert raised.value.status == 429
    assert stubs.openrouter.requests == 1
    assert time.monotonic() - started < 1.0


async def test_server_errors_are_retried_up_to_three_attempts(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.ratios = {Fault.SERVER_ERROR: 1.0}
    client = OpenRouterClient(http, make_settings())

    with pytest.raises(RetryableError) as raised:
        await generate(client)

    assert raised.value.status == 500
    assert stubs.openrouter.requests == 3


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_client_errors_are_never_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, status: int
) -> None:
    stubs.openrouter.faults.ratios = {Fault.STATUS: 1.0}
    stubs.openrouter.faults.status = status
    client = OpenRouterClient(http, make_settings())

    with pytest.raises(PermanentError) as raised:
        await generate(client)

    assert stubs.openrouter.requests == 1
    assert raised.value.status == status
    assert isinstance(raised.value, AuthError) == (status in (401, 402, 403))


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_then_success(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, status: int
) -> None:
    stubs.openrouter.faults.script = deque([Fault.STATUS])
    stubs.openrouter.faults.status = status
    client = OpenRouterClient(http, make_settings())
    assert (await generate(client))[0]
    assert stubs.openrouter.requests == 2


async def test_a_hanging_request_times_out_and_is_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.script = deque([Fault.HANG])
    client = OpenRouterClient(http, make_settings(generate_timeout_s=0.3))

    started = time.monotonic()
    text, _ = await generate(client)

    assert text
    assert stubs.openrouter.requests == 2
    assert 0.3 <= time.monotonic() - started < 5


async def test_timeouts_on_every_attempt_raise_a_retryable_error(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.ratios = {Fault.HANG: 1.0}
    client = OpenRouterClient(http, make_settings(generate_timeout_s=0.2))
    with pytest.raises(RetryableError, match="timed out"):
        await generate(client)
    assert stubs.openrouter.requests == 3


@pytest.mark.parametrize("fault", [Fault.MALFORMED, Fault.EMPTY])
async def test_malformed_or_empty_answers_are_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, fault: Fault
) -> None:
    stubs.openrouter.faults.script = deque([fault])
    client = OpenRouterClient(http, make_settings())
    text, _ = await generate(client)
    assert text
    assert stubs.openrouter.requests == 2


async def test_latency_is_waited_for(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.latency = Latency(fixed_ms=150)
    client = OpenRouterClient(http, make_settings())
    result = await client.generate(model="m", system="s", user="u")
    assert result.elapsed_ms >= 150


async def test_the_api_key_is_sent_as_a_bearer_token(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings(openrouter_api_key="wrong-key"))
    with pytest.raises(AuthError):
        await generate(client)


async def test_nul_and_lone_surrogates_in_an_answer_are_cleaned(
    raw_answers: RawAnswers, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    answers, url = raw_answers, raw_answers.url
    answers.answer(r'"Olá Ana!\u0000 Tudo bem \ud800 por aí? Vamos conversar \udfff?"')
    client = OpenRouterClient(http, make_settings(openrouter_base_url=url))

    text, tokens = await generate(client)

    assert text == "Olá Ana! Tudo bem \ufffd por aí? Vamos conversar \ufffd?"
    text.encode("utf-8")  # strict
    assert validate_message(text) == text
    assert tokens == 7


SPLIT_WITH_NUL_AND_SURROGATE = r'["Olá Ana!\u0000 Tudo bem?", "Vamos \ud800 conversar?"]'


@pytest.mark.parametrize(
    "content_json",
    [
        # Escaped once: the answer's content holds a real NUL and a real lone surrogate.
        json.dumps(SPLIT_WITH_NUL_AND_SURROGATE).replace(r"\\u", r"\u"),
        # Escaped twice: they appear only when the split's own JSON is read.
        json.dumps(SPLIT_WITH_NUL_AND_SURROGATE),
    ],
)
async def test_nul_and_lone_surrogates_in_a_split_answer_are_cleaned(
    raw_answers: RawAnswers,
    make_settings: SettingsFactory,
    http: httpx.AsyncClient,
    content_json: str,
) -> None:
    answers, url = raw_answers, raw_answers.url
    answers.answer(content_json)
    client = OpenRouterClient(http, make_settings(openrouter_base_url=url))

    answer = await client.request_split(
        model="m", text="whatever", max_parts=3, splitter=SplitterConfig()
    )

    assert parse_split_response(answer.content, max_parts=3) == [
        "Olá Ana! Tudo bem?",
        "Vamos \ufffd conversar?",
    ]


@pytest.mark.parametrize(
    ("total_tokens", "tokens"),
    [
        ("42", 42),
        ("2147483647", 2**31 - 1),
        ("2147483648", 2**31 - 1),
        ("123456789012345678901234567890", 2**31 - 1),
        ("-5", 0),
        ("12.5", 0),
        ("1e3", 0),
        ("true", 0),
        ('"100"', 0),
        ("null", 0),
        ("[1]", 0),
    ],
)
async def test_total_tokens_are_an_int4_count(
    raw_answers: RawAnswers,
    make_settings: SettingsFactory,
    http: httpx.AsyncClient,
    total_tokens: str,
    tokens: int,
) -> None:
    answers, url = raw_answers, raw_answers.url
    answers.answer('"Olá Ana, tudo bem por aí?"', total_tokens=total_tokens)
    client = OpenRouterClient(http, make_settings(openrouter_base_url=url))
    assert (await generate(client))[1] == tokens
