"""Prompts: ai_instructions as the system prompt, the lead's context as the user prompt."""

from __future__ import annotations

import json
import re

from app.models import LeadContext

DEFAULT_INSTRUCTIONS = (
    "You write short, friendly, personal WhatsApp sales messages. Write one message to the "
    "lead below, in the lead's language, without placeholders."
)
# The repetition guard's second try (app/ai/repetition.py): the first text was one the inbox
# sent to someone else today.
VARY_INSTRUCTION = (
    "This inbox already sent a message like your usual one today. Write this one differently: "
    "another opening, other words and another structure, same meaning and language."
)
MAX_FIELD_CHARS = 300
MAX_CUSTOM_FIELDS_CHARS = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def system_prompt(ai_instructions: str | None) -> str:
    text = (ai_instructions or "").strip()
    return text or DEFAULT_INSTRUCTIONS


def user_prompt(lead: LeadContext | None, *, vary: bool = False) -> str:
    """The lead's context as plain lines; missing fields are left out, long ones truncated.

    vary: the inbox already sent the text written before, so ask for a different one.
    """
    prompt = _lead_prompt(lead)
    return f"{prompt}\n\n{VARY_INSTRUCTION}" if vary else prompt


def _lead_prompt(lead: LeadContext | None) -> str:
    if lead is None:
        return "Write the campaign message. No details about this lead are known."
    lines = ["Write the campaign message for this lead."]
    fields: list[tuple[str, object]] = [
        ("Name", lead.client_name),
        ("Company", lead.company),
        ("Deal value", _format_number(lead.deal_value)),
        ("Priority", lead.priority),
        ("Tags", ", ".join(t for t in (lead.tags or []) if t)),
    ]
    for label, value in fields:
        text = _clean(value)
        if text:
            lines.append(f"{label}: {text}")
    if lead.custom_fields:
        details = json.dumps(lead.custom_fields, ensure_ascii=False, default=str, sort_keys=True)
        lines.append(
            "Other details: " + _truncate(_CONTROL.sub("", details), MAX_CUSTOM_FIELDS_CHARS)
        )
    return "\n".join(lines)


def split_system_prompt(max_parts: int) -> str:
    return (
        "Split the WhatsApp message the user sends into at most "
        f"{max_parts} shorter chat messages, in order, without changing, adding or dropping "
        "any words. Each part at most 1000 characters. Answer only with a JSON array of "
        'strings, for example ["first part", "second part"].'
    )


def _clean(value: object) -> str:
    if value is None:
        return ""
    return _truncate(_CONTROL.sub("", str(value)).strip(), MAX_FIELD_CHARS)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format_number(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:,.2f}" if value != int(value) else f"{int(value):,}"
