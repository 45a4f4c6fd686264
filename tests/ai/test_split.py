"""parse_split_response, the local splitter (property-based) and the fallback."""

from __future__ import annotations

import json
import random
import re
from collections import deque

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ai.openrouter import OpenRouterClient
from app.ai.split import (
    MAX_PART_CHARS,
    SplitRejectedError,
    parse_split_response,
    split_locally,
    split_message,
)
from app.models import SplitterConfig
from app.outbound import AuthError
from app.sandbox.stubs import Fault
from tests.ai.conftest import RawAnswers
from tests.stubs import SettingsFactory, Stubs


def no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    "content",
    [
        '["Oi Ana!", "Tudo bem?"]',
        '{"messages": ["Oi Ana!", "Tudo bem?"]}',
        '```json\n["Oi Ana!", "Tudo bem?"]\n```',
        '```\n{"messages": [" Oi Ana! ", "Tudo bem?"]}\n```',
    ],
)
def test_parse_accepts_arrays_objects_and_fences(content: str) -> None:
    assert parse_split_response(content, max_parts=3) == ["Oi Ana!", "Tudo bem?"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("Oi Ana! Tudo bem?", "not JSON"),
        ('{"parts": ["a"]}', "not a list"),
        ('"just a string"', "not a list"),
        ("[]", "no parts"),
        ('["ok", 3]', "not a string"),
        ('["ok", "   "]', "empty part"),
        (json.dumps(["x" * (MAX_PART_CHARS + 1)]), "over 1000"),
        ('["a", "b", "c", "d"]', "4 parts"),
    ],
)
def test_parse_rejects_what_cannot_be_sent(content: str, reason: str) -> None:
    with pytest.raises(SplitRejectedError, match=reason):
        parse_split_response(content, max_parts=3)


sentence = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    min_size=1,
    max_size=180,
).map(lambda s: s.strip() + ".")
texts = st.lists(sentence, min_size=1, max_size=40).flatmap(
    lambda sentences: st.lists(
        st.sampled_from([" ", "\n", "\n\n", "  "]), min_size=len(sentences), max_size=len(sentences)
    ).map(lambda seps: "".join(s + sep for s, sep in zip(sentences, seps, strict=True)))
)


@settings(max_examples=300, deadline=None)
@given(text=texts, max_parts=st.integers(min_value=1, max_value=5))
def test_local_splitter_keeps_every_character_in_order(text: str, max_parts: int) -> None:
    parts = split_locally(text, max_parts)
    if not text.strip():
        assert parts == []
        return
    assert 1 <= len(parts) <= max_parts
    assert all(part and part == part.strip() for part in parts)
    assert no_space("".join(parts)) == no_space(text)
    if len(text.strip()) <= max_parts * MAX_PART_CHARS:
        assert all(len(part) <= MAX_PART_CHARS for part in parts)


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=6000), max_parts=st.integers(min_value=1, max_value=5))
def test_local_splitter_on_any_text(text: str, max_parts: int) -> None:
    parts = split_locally(text, max_parts)
    assert len(parts) <= max_parts
    assert no_space("".join(parts)) == no_space(text)
    if len(text.strip()) <= max_parts * MAX_PART_CHARS:
        assert all(len(part) <= MAX_PART_CHARS for part in parts)


@st.composite
def message_texts(draw: st.DrawFn) -> str:
    """0..4096 characters: words or long runs without whitespace, newlines, punctuation."""
    length = draw(st.integers(0, 4096) | st.integers(1900, 4096))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))  # fast: one draw, not one per call
    longest_run = draw(st.sampled_from([3, 12, 40, 300, 999, 1001, 1800, 4096]))
    separators = draw(
        st.lists(
            st.sampled_from(
                [
                    " ",
                    "  ",
                    "\n",
                    "\n\n",
                    "\n\n\n\n",
                    ". ",
                    "! ",
                    "? ",
                    ".\n",
                    "…\n\n",
                    "\r\n",
                    "\t",
                ]
            ),
            min_size=1,
            max_size=6,
        )
    )
    alphabet = draw(st.sampled_from(["abcdefgh", "ÁéíõçÑ", "😀👍🏽", "a.!?”)", "x", "\u00a0b"]))
    separator_share = draw(st.sampled_from([0.0, 0.02, 0.2, 0.6]))
    chunks: list[str] = []
    size = 0
    while size < length:
        if rng.random() < separator_share:
            chunk = rng.choice(separators)
        else:
            chunk = "".join(rng.choices(alphabet, k=rng.randint(1, longest_run)))
        chunks.append(chunk)
        size += len(chunk)
    return "".join(chunks)[:length]


@settings(max_examples=400, deadline=None)
@given(text=message_texts(), max_parts=st.integers(min_value=1, max_value=5))
def test_local_splitter_never_raises_up_to_4096_characters(text: str, max_parts: int) -> None:
    parts = split_locally(text, max_parts)
    assert len(parts) <= max_parts
    assert all(part and part == part.strip() for part in parts)
    assert no_space("".join(parts)) == no_space(text)
    assert bool(parts) == bool(text.strip())
    if len(text.strip()) <= max_parts * MAX_PART_CHARS:
        assert all(len(part) <= MAX_PART_CHARS for part in parts)


@pytest.mark.parametrize(
    ("text", "max_parts"),
    [
        ("a" * 600 + " " + "b" * 600 + " " + "c" * 600, 2),  # no packing of words fits
        ("x" * 4096, 4),  # one run over max_parts * 1000
        (" ".join(["y" * 999] * 4), 3),
        ("Frase curta. " * 315, 3),  # 4095 characters of sentences
        ("\n" * 3000 + "z" * 1096, 2),
    ],
)
def test_local_splitter_edge_cases(text: str, max_parts: int) -> None:
    parts = split_locally(text, max_parts)
    assert 1 <= len(parts) <= max_parts
    assert no_space("".join(parts)) == no_space(text)
    if len(text.strip()) <= max_parts * MAX_PART_CHARS:
        assert all(len(part) <= MAX_PART_CHARS for part in parts)


def test_local_splitter_prefers_paragraphs_then_sentences() -> None:
    text = "Oi Ana, tudo bem?\n\nVi que a Acme está crescendo. Posso ajudar.\n\nAbraço!"
    assert split_locally(text, 3) == [
        "Oi Ana, tudo bem?",
        "Vi que a Acme está crescendo. Posso ajudar.",
        "Abraço!",
    ]
    long_sentences = " ".join(f"Frase número {i} com algum conteúdo." for i in range(60))
    parts = split_locally(long_sentences, 3)
    assert len(parts) == 3
    assert all(part.endswith(".") for part in parts)  # cut at sentence ends


async def test_short_messages_are_not_split(stubs: Stubs, make_settings: SettingsFactory) -> None:
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings())
        result = await split_message(
            client,
            "Oi Ana, tudo bem?",
            model="m",
            max_parts=3,
            splitter=SplitterConfig(min_chars_to_split=150),
        )
    assert result.parts == ["Oi Ana, tudo bem?"]
    assert stubs.openrouter.requests == 0


LONG = (
    "Olá Ana! Vi o trabalho de vocês na Acme e fiquei curioso. Ajudamos equipes comerciais "
    "a responder clientes no WhatsApp em minutos. Faz sentido conversarmos esta semana? "
    "Posso mandar um resumo rápido."
)


async def test_the_models_split_is_used_with_the_splitter_settings(
    stubs: Stubs, make_settings: SettingsFactory
) -> None:
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings())
        result = await split_message(
            client,
            LONG,
            model="m",
            max_parts=2,
            splitter=SplitterConfig(temperature=0.1, max_tokens=1000),
        )
    assert result.fallback_reason is None
    assert len(result.parts) == 2
    assert result.tokens > 0
    [request] = stubs.openrouter.seen
    assert request.body["temperature"] == 0.1
    assert request.body["max_tokens"] == 1000


@pytest.mark.parametrize("fault", [Fault.MALFORMED, Fault.EMPTY, Fault.SERVER_ERROR])
async def test_a_bad_split_answer_falls_back_to_the_local_splitter(
    stubs: Stubs, make_settings: SettingsFactory, fault: Fault
) -> None:
    stubs.openrouter.faults.ratios = {fault: 1.0}
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings())
        result = await split_message(
            client, LONG, model="m", max_parts=3, splitter=SplitterConfig()
        )
    assert result.fallback_reason
    assert 1 < len(result.parts) <= 3
    assert no_space("".join(result.parts)) == no_space(LONG)


async def test_too_many_parts_from_the_model_fall_back(
    stubs: Stubs, make_settings: SettingsFactory
) -> None:
    # The stub splits per the prompt's "at most N"; asking the local check for fewer rejects it.
    stubs.openrouter.faults.script = deque([None])
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings())
        answer = await client.request_split(
            model="m", text=LONG, max_parts=4, splitter=SplitterConfig()
        )
    with pytest.raises(SplitRejectedError):
        parse_split_response(answer.content, max_parts=2)


async def test_an_auth_error_during_split_is_raised(
    stubs: Stubs, make_settings: SettingsFactory
) -> None:
    stubs.openrouter.faults.ratios = {Fault.UNAUTHORIZED: 1.0}
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings())
        with pytest.raises(AuthError):
            await split_message(client, LONG, model="m", max_parts=3, splitter=SplitterConfig())


@pytest.mark.parametrize(
    "answer",
    [
        # A paraphrase: shorter, reworded.
        ["Olá Ana! Vimos a Acme crescer.", "Ajudamos no WhatsApp. Vamos falar esta semana?"],
        # One sentence dropped.
        [
            "Olá Ana! Vi o trabalho de vocês na Acme e fiquei curioso.",
            "Faz sentido conversarmos esta semana? Posso mandar um resumo rápido.",
        ],
        # Every word kept, one added.
        [LONG[:100], LONG[100:] + " Abraço!"],
        # Reordered.
        [LONG[100:], LONG[:100]],
    ],
)
async def test_a_split_that_does_not_reproduce_the_message_is_rejected(
    raw_answers: RawAnswers, make_settings: SettingsFactory, answer: list[str]
) -> None:
    raw_answers.answer(json.dumps(json.dumps(answer, ensure_ascii=False)))
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
        result = await split_message(
            client, LONG, model="m", max_parts=3, splitter=SplitterConfig()
        )
    assert result.fallback_reason is not None
    assert "does not reproduce the message" in result.fallback_reason
    assert result.parts == split_locally(LONG, 3)
    assert no_space("".join(result.parts)) == no_space(LONG)
    assert result.tokens == 7  # the rejected answer's tokens still count


async def test_a_split_that_only_moves_whitespace_is_used(
    raw_answers: RawAnswers, make_settings: SettingsFactory
) -> None:
    answer = [LONG[:58], "  " + LONG[58:140].replace(" ", "\n", 2), LONG[140:]]
    raw_answers.answer(json.dumps(json.dumps(answer, ensure_ascii=False)))
    async with httpx.AsyncClient() as http:
        client = OpenRouterClient(http, make_settings(openrouter_base_url=raw_answers.url))
        result = await split_message(
            client, LONG, model="m", max_parts=3, splitter=SplitterConfig()
        )
    assert result.fallback_reason is None
    assert result.parts == [part.strip() for part in answer]
