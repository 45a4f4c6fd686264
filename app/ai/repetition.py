"""The repetition guard's fingerprint of a message's text (README, "Number health").

Two texts that differ only in the lead's name and company, digits, case, accents,
punctuation, emoji or whitespace get the same hash: a template filled in for many leads is
the same text to WhatsApp's spam filters. Accents are folded ("Olá" = "Ola"), so a model that
drops one is not a new text either. The hash is stored on the message and compared in Postgres
(047_repetition_guard.sql), so it must never change for a given text: sha256 of the letters
left, lowercase hex.
"""

from __future__ import annotations

import hashlib
import unicodedata

# A word of the name or company shorter than this is only taken out as part of the whole name
# ("Banco do Brasil": "do" stays elsewhere in the text).
MIN_WORD_CHARS = 3


def letter_words(text: str) -> list[str]:
    """The text's words: case folded, accents folded, letters only."""
    # Compatibility forms first, then case ("℠" is "SM", then "sm"), then again: case
    # folding can make characters that decompose further.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    # Runs of letters (any script): anything else (digits of every script, underscores,
    # punctuation, symbols, spaces) splits them.
    return "".join(
        c if c.isalpha() else " " for c in decomposed if not unicodedata.combining(c)
    ).split()


def normalize_text(text: str, *, name: str | None = None, company: str | None = None) -> str:
    """The letters that make the text this text, the lead's own words taken out."""
    words = letter_words(text)
    phrases = [p for p in (letter_words(name or ""), letter_words(company or "")) if p]
    for phrase in sorted(phrases, key=len, reverse=True):
        words = _without_phrase(words, phrase)
    own = {w for phrase in phrases for w in phrase if len(w) >= MIN_WORD_CHARS}
    return "".join(w for w in words if w not in own)


def text_hash(text: str, *, name: str | None = None, company: str | None = None) -> str:
    normalized = normalize_text(text, name=name, company=company)
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _without_phrase(words: list[str], phrase: list[str]) -> list[str]:
    kept: list[str] = []
    i, n = 0, len(phrase)
    while i < len(words):
        if words[i : i + n] == phrase:
            i += n
        else:
            kept.append(words[i])
            i += 1
    return kept
