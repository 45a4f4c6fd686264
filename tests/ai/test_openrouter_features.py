"""OpenRouter used fully: usage.cost, FALLBACK_MODELS, session_id, errors in a 200, moderation.

Over real loopback HTTP against the OpenRouter stub (or raw scripted answers).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.ai.openrouter import ModerationError, OpenRouterClient
from app.ai.split import split_message
from app.main import create_app
from app.models import SplitterConfig
from app.outbound import AuthError, PermanentError, RetryableError
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Fault, stub_cost
from tests.ai.conftest import RawAnswers
from tests.sql.helpers import message_row
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs

RUN_ID = "0b5c3f6e-4a51-4a47-9c7e-2d7a1d7f0e11"
LONG = (
    "Olá Ana! Vi o trabalho de vocês na Acme e fiquei curioso. Ajudamos equipes comerciais "
    "a responder clientes no WhatsApp em minutos. Faz sentido conversarmos esta semana? "
    "Posso mandar um resumo rápido."
)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# --- usage.cost -------------------------------------------------------------------------------


async def test_the_cost_of_a_generation_is_read_from_usage(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    result = await client.generate(model="m", system="Be brief.", user="Name: Ana")

    [cost] = stubs.openrouter.costs
    assert cost > 0
    assert result.cost_usd == cost


HUGE_INT = "1" + "0" * 400  # 10**400 spelled as JSON digits
OVER_PYTHONS_INT_DIGITS = "9" * 5000  # sys.get_int_max_str_digits() is 4300


@pytest.mark.parametrize(
    ("cost_json", "cost"),
    [
        ("0.0123", 0.0123),
        ("0", 0.0),
        ("2", 2.0),
        ("1.5e-7", 1.5e-7),
        (None, None),  # no usage.cost: unknown, not free
        ("null", None),
        ("-0.01", None),
        ('"0.01"', None),
        ("true", None),
        ("1e400", None),  # infinity once parsed
        (HUGE_INT, None),  # a whole number too large for a float
        (OVER_PYTHONS_INT_DIGITS, None),  # too long for Python's int(): the cost, not the answer
        ("-" + HUGE_INT, None),
        ("NaN", None),  # what Python's json reads, though JSON has no such literal
        ("-Infinity", None),
        ("5000000", None),  # over any plausible call: not a cost
        ("[0.1]", None),
    ],
)
async def test_usage_cost_is_a_finite_amount_or_unknown(
    raw_answers: RawAnswers,
    make_settings: SettingsFactory,
    http: httpx.AsyncClient,
    cost_json: str | None,
    cost: float | None,
) -> None:
    raw_answers.answer('"Olá Ana, tudo bem por aí?"', cost=cost_json)
    client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
    result = await client.generate(model="m", system="s", user="u")
    assert result.cost_usd == cost


@pytest.mark.parametrize(
    "cost_json", [HUGE_INT, OVER_PYTHONS_INT_DIGITS, '"0.01"', "-0.5", "NaN", "Infinity"]
)
async def test_a_message_whose_cost_is_unusable_is_sent_with_its_cost_unknown(
    raw_answers: RawAnswers,
    make_settings: SettingsFactory,
    db_dsn: str,
    conn: asyncpg.Connection,
    http: httpx.AsyncClient,
    cost_json: str,
) -> None:
    """End to end: an odd usage.cost is the answer's detail, never a reason to retry it."""
    raw_answers.answer('"Olá Ana, tudo bem por aí?"', cost=cost_json)
    seeded = await seed_campaign(conn, leads=1, split_messages=False)
    settings = make_settings(database_url=db_dsn, openrouter_base_url=raw_answers.url)
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        response = await http.post(
            server.url + "/process-queue",
            headers={"Authorization": f"Bearer {CRON_SECRET}"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert (response.json()["processed"], response.json()["failed"]) == (1, 0)
    row = await message_row(conn, seeded.message_ids[0])
    assert (row["status"], row["retry_count"], row["ai_cost_usd"]) == ("sent", 0, None)


async def test_a_split_counts_its_cost_even_when_its_answer_is_not_used(
    raw_answers: RawAnswers, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    raw_answers.answer(json.dumps("not json at all"), cost="0.0004")
    client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
    result = await split_message(client, LONG, model="m", max_parts=3, splitter=SplitterConfig())
    assert result.fallback_reason is not None
    assert result.cost_usd == 0.0004


async def test_a_used_split_carries_its_cost(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    result = await split_message(client, LONG, model="m", max_parts=2, splitter=SplitterConfig())
    assert result.fallback_reason is None
    assert result.cost_usd == stubs.openrouter.costs[0] > 0


async def test_a_split_not_asked_for_costs_nothing_known(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    result = await split_message(
        client, "Oi Ana!", model="m", max_parts=3, splitter=SplitterConfig()
    )
    assert (result.parts, result.cost_usd, stubs.openrouter.requests) == (["Oi Ana!"], None, 0)


def test_the_stub_charges_from_the_tokens() -> None:
    assert stub_cost(1000, 1000) == pytest.approx(0.00075)


# --- FALLBACK_MODELS and session_id ------------------------------------------------------------


async def test_fallback_models_follow_the_main_model_in_the_models_list(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    settings = make_settings(fallback_models="b/two, m/one ,c/three")
    client = OpenRouterClient(http, settings)
    await client.generate(model="m/one", system="s", user="u")
    await client.request_split(model="m/one", text=LONG, max_parts=2, splitter=SplitterConfig())

    for request in stubs.openrouter.seen:
        assert request.body["model"] == "m/one"
        assert request.body["models"] == ["m/one", "b/two", "c/three"]  # main first, once


async def test_without_fallback_models_no_models_list_is_sent(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    await client.generate(model="m/one", system="s", user="u")
    [request] = stubs.openrouter.seen
    assert "models" not in request.body


@pytest.mark.parametrize(
    ("raw", "models"),
    [("", []), (" , ", []), ("a/b", ["a/b"]), ("a/b,c/d,a/b", ["a/b", "c/d"])],
)
def test_fallback_models_setting_is_comma_separated(
    make_settings: SettingsFactory, raw: str, models: list[str]
) -> None:
    assert make_settings(fallback_models=raw).fallback_models == models


async def test_the_run_id_is_sent_as_the_session_id_of_generation_and_split(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    await client.generate(model="m", system="s", user="u", session_id=RUN_ID)
    await split_message(
        client, LONG, model="m", max_parts=2, splitter=SplitterConfig(), session_id=RUN_ID
    )
    assert [r.body.get("session_id") for r in stubs.openrouter.seen] == [RUN_ID, RUN_ID]


async def test_no_session_id_is_sent_without_one_and_a_long_one_is_cut(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    client = OpenRouterClient(http, make_settings())
    await client.generate(model="m", system="s", user="u")
    await client.generate(model="m", system="s", user="u", session_id="x" * 300)
    first, second = stubs.openrouter.seen
    assert "session_id" not in first.body
    assert second.body["session_id"] == "x" * 128


# --- errors inside a 200, and 403 ---------------------------------------------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503])
async def test_an_error_in_a_200_with_a_retryable_code_is_retried(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient, code: int
) -> None:
    stubs.openrouter.faults.script = deque([Fault.ERROR_IN_BODY])
    stubs.openrouter.faults.status = code
    client = OpenRouterClient(http, make_settings())
    result = await client.generate(model="m", system="s", user="u")
    assert result.text
    assert stubs.openrouter.requests == 2


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, AuthError),
        (402, AuthError),
        (403, ModerationError),
        (400, PermanentError),
        (404, PermanentError),
        (413, PermanentError),
    ],
)
async def test_an_error_in_a_200_with_a_client_code_fails_at_once_like_that_status(
    stubs: Stubs,
    make_settings: SettingsFactory,
    http: httpx.AsyncClient,
    code: int,
    error: type[Exception],
) -> None:
    stubs.openrouter.faults.ratios = {Fault.ERROR_IN_BODY: 1.0}
    stubs.openrouter.faults.status = code
    client = OpenRouterClient(http, make_settings())
    with pytest.raises(PermanentError) as raised:
        await client.generate(model="m", system="s", user="u")
    assert type(raised.value) is error
    assert raised.value.status == code
    assert not raised.value.retryable
    assert stubs.openrouter.requests == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"error": {"message": "upstream failed"}}',  # no code: an unnamed provider failure
        '{"error": {"code": "oops"}}',
        '{"error": {"code": "\u00b2"}}',  # a digit to str.isdigit, not to int()
        '{"choices": [{"error": {"code": 502, "message": "x"}, "finish_reason": "error"}]}',
    ],
)
async def test_an_error_without_a_usable_code_or_in_a_choice_is_retried(
    raw_answers: RawAnswers, make_settings: SettingsFactory, http: httpx.AsyncClient, body: str
) -> None:
    raw_answers.body = body
    client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
    with pytest.raises(RetryableError, match="error in answer"):
        await client.generate(model="m", system="s", user="u")


async def test_an_error_in_a_choice_with_a_client_code_fails_like_it(
    raw_answers: RawAnswers, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    raw_answers.body = '{"choices": [{"error": {"code": "400"}, "finish_reason": "error"}]}'
    client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
    with pytest.raises(PermanentError) as raised:
        await client.generate(model="m", system="s", user="u")
    assert raised.value.status == 400


async def test_a_moderation_403_is_not_a_key_problem_and_names_no_flagged_input(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    stubs.openrouter.faults.ratios = {Fault.MODERATION: 1.0}
    client = OpenRouterClient(http, make_settings())
    with pytest.raises(ModerationError) as raised:
        await client.generate(model="m", system="s", user="u")
    assert not isinstance(raised.value, AuthError)
    assert raised.value.status == 403
    assert not raised.value.retryable
    assert stubs.openrouter.requests == 1
    assert "moderation" in str(raised.value)
    assert "harassment" in str(raised.value)
    assert "lead" not in str(raised.value)  # the flagged input is the lead's: never repeated


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": 403, "message": "Forbidden"}},
        {"error": {"code": 403, "message": "This model is not available in your region"}},
        {"detail": "blocked"},
    ],
)
async def test_a_403_that_does_not_say_moderation_stays_a_key_problem(
    make_settings: SettingsFactory, http: httpx.AsyncClient, body: dict[str, object]
) -> None:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from app.sandbox.server import LoopbackServer

    app = FastAPI()

    @app.post("/chat/completions")
    async def forbidden() -> JSONResponse:
        return JSONResponse(body, 403)

    with LoopbackServer(app) as server:
        client = OpenRouterClient(http, make_settings(openrouter_base_url=server.url))
        with pytest.raises(AuthError) as raised:
            await client.generate(model="m", system="s", user="u")
    assert raised.value.status == 403


async def test_a_moderation_refusal_of_a_split_falls_back_to_the_local_splitter(
    stubs: Stubs, make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    # The message itself passed moderation when it was written: it is still delivered.
    stubs.openrouter.faults.ratios = {Fault.MODERATION: 1.0}
    client = OpenRouterClient(http, make_settings())
    result = await split_message(client, LONG, model="m", max_parts=3, splitter=SplitterConfig())
    assert result.fallback_reason is not None
    assert "moderation" in result.fallback_reason
    assert len(result.parts) > 1
