"""Values the database can store: text without NUL or lone surrogates, int4-sized counts.

Postgres rejects a NUL character in text (SQLSTATE 22021) and the UTF-8 encoder rejects a
lone surrogate, which JSON can spell ("\\ud800") and a model can answer; an int4 column
rejects a count past 2**31 - 1. Anything a model answers goes through these first.
"""

from __future__ import annotations

INT32_MAX = 2**31 - 1


def clean_text(text: str) -> str:
    """The text without NUL characters, each lone surrogate replaced by U+FFFD.

    The result always encodes as strict UTF-8. A surrogate pair that is still split in two
    code points becomes the one character it stands for.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 joins what pairs up; the decoder replaces what is left alone.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def clamp_int32(value: int | None) -> int | None:
    """value clamped into 0..2**31 - 1 (an int4 column's non-negative range); None stays None."""
    if value is None:
        return None
    return min(max(value, 0), INT32_MAX)
