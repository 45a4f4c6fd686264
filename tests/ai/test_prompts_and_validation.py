"""The user prompt from a lead's context, and the checks on a generated message."""

from __future__ import annotations

import uuid

import pytest

from app.ai.prompts import (
    DEFAULT_INSTRUCTIONS,
    MAX_CUSTOM_FIELDS_CHARS,
    system_prompt,
    user_prompt,
)
from app.ai.validation import InvalidMessageError, validate_message
from app.models import LeadContext


def test_prompt_carries_the_leads_context() -> None:
    lead = LeadContext(
        id=uuid.uuid4(),
        client_name="Ana Souza",
        company="Padaria Pão Quente",
        deal_value=12500.5,
        priority="high",
        tags=["vip", "sp"],
        custom_fields={"city": "São Paulo"},
    )
    prompt = user_prompt(lead)
    assert "Name: Ana Souza" in prompt
    assert "Company: Padaria Pão Quente" in prompt
    assert "Deal value: 12,500.50" in prompt
    assert "Priority: high" in prompt
    assert "Tags: vip, sp" in prompt
    assert '"city": "São Paulo"' in prompt


def test_missing_fields_are_left_out() -> None:
    prompt = user_prompt(LeadContext(id=uuid.uuid4()))
    assert "None" not in prompt
    assert "Name:" not in prompt
    assert user_prompt(None)


def test_any_unicode_and_control_characters() -> None:
    lead = LeadContext(id=uuid.uuid4(), client_name="Żółw 北京 🚀\x00\x07", company="  ")
    prompt = user_prompt(lead)
    assert "Name: Żółw 北京 🚀" in prompt
    assert "\x00" not in prompt
    assert "\x07" not in prompt
    assert "Company:" not in prompt


def test_huge_custom_fields_are_truncated() -> None:
    lead = LeadContext(
        id=uuid.uuid4(), client_name="Ana", custom_fields={f"k{i}": "x" * 1000 for i in range(500)}
    )
    prompt = user_prompt(lead)
    assert len(prompt) < MAX_CUSTOM_FIELDS_CHARS + 200
    assert prompt.endswith("…")


def test_instructions_are_the_system_prompt() -> None:
    assert system_prompt("  Seja breve.  ") == "Seja breve."
    assert system_prompt(None) == DEFAULT_INSTRUCTIONS
    assert system_prompt("   ") == DEFAULT_INSTRUCTIONS


def test_validation_trims_and_bounds_the_message() -> None:
    assert validate_message("  Olá Ana, tudo bem?  ") == "Olá Ana, tudo bem?"
    for bad in (None, "", "   ", "Oi Ana", "x" * 4097):
        with pytest.raises(InvalidMessageError) as raised:
            validate_message(bad)
        assert raised.value.retryable
    assert validate_message("x" * 4096) == "x" * 4096


def test_validation_returns_text_the_database_can_store() -> None:
    # The OpenRouter client already cleans; a message from any other writer is cleaned here.
    assert validate_message("Olá\x00 Ana, tudo \ud800 bem?") == "Olá Ana, tudo \ufffd bem?"
    with pytest.raises(InvalidMessageError):
        validate_message("\x00" * 20 + "Oi")  # too short once the NULs are gone
