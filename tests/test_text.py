"""clean_text and clamp_int32: what the database can store (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.text import INT32_MAX, clamp_int32, clean_text

# Every code point, lone surrogates and NUL included.
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Olá Ana!", "Olá Ana!"),
        ("Olá\x00 Ana!", "Olá Ana!"),
        ("\x00\x00", ""),
        ("Oi \ud800 Ana", "Oi \ufffd Ana"),
        ("fim\udfff", "fim\ufffd"),
        ("\ud83d\ude00 ok", "😀 ok"),  # a pair split in two code points is rejoined
        ("\ud83d\x00\ude00", "😀"),
        ("😀 emoji", "😀 emoji"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@settings(max_examples=300, deadline=None)
@given(text=any_text)
def test_clean_text_always_encodes_and_never_holds_nul(text: str) -> None:
    cleaned = clean_text(text)
    cleaned.encode("utf-8")  # strict: raises on a lone surrogate
    assert "\x00" not in cleaned
    assert len(cleaned) <= len(text)
    assert clean_text(cleaned) == cleaned


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200))
def test_clean_text_keeps_clean_text_as_it_is(text: str) -> None:
    assert clean_text(text) == text


@pytest.mark.parametrize(
    ("value", "clamped"),
    [
        (None, None),
        (0, 0),
        (1234, 1234),
        (INT32_MAX, INT32_MAX),
        (INT32_MAX + 1, INT32_MAX),
        (10**30, INT32_MAX),
        (-1, 0),
        (-(10**30), 0),
    ],
)
def test_clamp_int32(value: int | None, clamped: int | None) -> None:
    assert clamp_int32(value) == clamped
    assert INT32_MAX == 2**31 - 1
