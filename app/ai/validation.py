"""Checks on a generated message before anything is saved or sent."""

from __future__ import annotations

from app.outbound import RetryableError
from app.text import clean_text

MIN_MESSAGE_CHARS = 10
MAX_MESSAGE_CHARS = 4096  # WhatsApp's limit for one text message


class InvalidMessageError(RetryableError):
    """The model answered, but not with a sendable message; a later attempt may do better."""


def validate_message(text: str | None) -> str:
    """The trimmed message, or InvalidMessageError saying why it cannot be sent.

    NULs are dropped and lone surrogates replaced first (app.text.clean_text): the message
    is saved before it is sent, and the database stores neither.
    """
    message = clean_text(text or "").strip()
    if len(message) < MIN_MESSAGE_CHARS:
        raise InvalidMessageError(
            f"generated message too short: {len(message)} characters (minimum {MIN_MESSAGE_CHARS})"
        )
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidMessageError(
            f"generated message too long: {len(message)} characters (maximum {MAX_MESSAGE_CHARS})"
        )
    return message
