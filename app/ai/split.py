"""Splitting a message into chat-sized parts: the model's answer, checked, or a local splitter."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Protocol

from app.ai.openrouter import Completion
from app.models import SplitterConfig
from app.outbound import AuthError, OutboundError
from app.text import clean_text

MAX_PART_CHARS = 1000

_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
# Boundaries, coarsest first; each match ends a piece (the whitespace stays with it).
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
_WORD = re.compile(r"\s+")


class SplitRejectedError(ValueError):
    """The model's split answer cannot be used as it is."""


def parse_split_response(content: str, max_parts: int) -> list[str]:
    """Parts from a JSON array of strings or {"messages": [...]}, also inside ``` fences."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SplitRejectedError("split answer is not JSON") from exc
    if isinstance(data, dict):
        data = data.get("messages")
    if not isinstance(data, list):
        raise SplitRejectedError("split answer is not a list of messages")
    if not data:
        raise SplitRejectedError("split answer has no parts")
    if len(data) > max_parts:
        raise SplitRejectedError(f"split answer has {len(data)} parts (maximum {max_parts})")
    parts = []
    for item in data:
        if not isinstance(item, str):
            raise SplitRejectedError("split answer has a part that is not a string")
        part = clean_text(item).strip()
        if not part:
            raise SplitRejectedError("split answer has an empty part")
        if len(part) > MAX_PART_CHARS:
            raise SplitRejectedError(f"split answer has a part over {MAX_PART_CHARS} characters")
        parts.append(part)
    return parts


def split_locally(text: str, max_parts: int, max_part_chars: int = MAX_PART_CHARS) -> list[str]:
    """At most max_parts parts at paragraph, then sentence, then word boundaries. Never raises.

    Nothing is lost or reordered: the parts joined give back the text, whitespace aside.
    It aims for max_parts parts, as even as the boundaries allow; a word is cut only when no
    packing of whole words fits. A text longer than max_parts * max_part_chars cannot honour
    both bounds; then the parts grow past max_part_chars (to about an even share, with a
    little room to end at a boundary) rather than lose text.
    """
    text = text.strip()
    if not text:
        return []
    max_parts = max(1, max_parts)
    if max_parts == 1:
        return [text]
    limit = max_part_chars
    if len(text) > max_parts * max_part_chars:
        limit = math.ceil(len(text) / max_parts) + max_part_chars // 10
    for level in range(3):
        pieces = _pieces(text, level)
        if len(pieces) == 1 and len(text) <= limit:
            if level == 0:
                continue  # one paragraph: look for sentences
            return [text]  # one sentence that fits: nothing natural to cut at
        parts = _pack(pieces, max_parts, limit, len(text))
        if parts is not None:
            return parts
    return _fill(text, max_parts, limit)


def _pieces(text: str, level: int) -> list[str]:
    """Pieces that concatenate to text, cut at boundaries up to `level`."""
    pieces = [text]
    for depth, pattern in enumerate((_PARAGRAPH, _SENTENCE, _WORD)):
        if depth > level:
            break
        pieces = [p for piece in pieces for p in _cut_after(piece, pattern)]
    return pieces


def _fill(text: str, max_parts: int, limit: int) -> list[str]:
    """Parts of <= limit characters, cut at whitespace near an even share where the bounds
    allow, else inside a word. Needs len(text) <= max_parts * limit, which always holds here.
    """
    parts: list[str] = []
    start, end = 0, len(text)
    for remaining in range(max_parts, 0, -1):
        if end - start <= limit or remaining == 1:
            parts.append(text[start:])
            break
        # The cut leaves what the other parts can hold, and this part within the limit.
        lowest = max(start + 1, end - (remaining - 1) * limit)
        highest = start + limit
        ideal = start + math.ceil((end - start) / remaining)
        cut = _whitespace_near(text, ideal, lowest, highest)
        parts.append(text[start:cut])
        start = cut
    return [part for part in (p.strip() for p in parts) if part]


def _whitespace_near(text: str, ideal: int, lowest: int, highest: int) -> int:
    """The cut in lowest..highest nearest ideal that touches whitespace, else ideal."""
    for distance in range(max(ideal - lowest, highest - ideal) + 1):
        for cut in (ideal - distance, ideal + distance):
            if lowest <= cut <= highest and (text[cut - 1].isspace() or text[cut].isspace()):
                return cut
    return ideal


def _cut_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if start < match.end() < len(text):
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [p for p in pieces if p]


def _pack(pieces: list[str], max_parts: int, limit: int, total: int) -> list[str] | None:
    """The most even packing of pieces, in order, into <= max_parts parts of <= limit chars."""
    if not pieces or max(len(p) for p in pieces) > limit:
        return None
    fitted = _greedy(pieces, limit)
    if fitted is None or len(fitted) > max_parts:
        return None
    low = max(max(len(p) for p in pieces), math.ceil(total / max_parts))
    high = limit
    while low < high:  # smallest capacity that still fits in max_parts
        middle = (low + high) // 2
        packed = _greedy(pieces, middle)
        if packed is not None and len(packed) <= max_parts:
            high = middle
        else:
            low = middle + 1
    packed = _greedy(pieces, low)
    assert packed is not None
    return [part for part in (p.strip() for p in packed) if part]


def _greedy(pieces: list[str], capacity: int) -> list[str] | None:
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if len(piece) > capacity:
            return None
        if len(current) + len(piece) > capacity:
            parts.append(current)
            current = piece
        else:
            current += piece
    if current:
        parts.append(current)
    return parts


class SplitAsker(Protocol):
    async def request_split(
        self,
        *,
        model: str,
        text: str,
        max_parts: int,
        splitter: SplitterConfig,
        deadline: float | None = None,
        session_id: str | None = None,
    ) -> Completion: ...


@dataclass(frozen=True)
class SplitResult:
    parts: list[str]
    tokens: int
    elapsed_ms: int
    fallback_reason: str | None = None  # set when the local splitter was used
    cost_usd: float | None = None  # what the split call cost, when the model was asked
    # The model was asked (elapsed_ms cannot say: a call answered in under 1 ms is 0 too).
    asked: bool = False


async def split_message(
    asker: SplitAsker,
    text: str,
    *,
    model: str,
    max_parts: int,
    splitter: SplitterConfig,
    deadline: float | None = None,
    session_id: str | None = None,
) -> SplitResult:
    """The model's split when it is usable, else the local splitter; never a lost message.

    Usable means at most max_parts non-empty parts of <= 1000 characters that give back the
    text word for word (whitespace aside): what is delivered is always the generated message.

    An AuthError is raised: it stops the whole invocation, not just this split. The tokens and
    cost of an answer that was not used still count: they were spent.
    """
    started = time.perf_counter()
    if len(text) < splitter.min_chars_to_split or max_parts <= 1:
        return SplitResult(parts=[text], tokens=0, elapsed_ms=0)
    tokens, cost = 0, None
    try:
        answer = await asker.request_split(
            model=model,
            text=text,
            max_parts=max_parts,
            splitter=splitter,
            deadline=deadline,
            session_id=session_id,
        )
        tokens, cost = answer.tokens, answer.cost_usd
        parts = parse_split_response(answer.content, max_parts)
        if _without_whitespace("".join(parts)) != _without_whitespace(text):
            raise SplitRejectedError(
                "split answer does not reproduce the message (words changed, added, dropped "
                "or reordered)"
            )
        return SplitResult(
            parts=parts, tokens=tokens, elapsed_ms=_ms_since(started), cost_usd=cost, asked=True
        )
    except AuthError:
        raise
    except (OutboundError, SplitRejectedError) as exc:
        return SplitResult(
            parts=split_locally(text, max_parts),
            tokens=tokens,
            elapsed_ms=_ms_since(started),
            fallback_reason=str(exc),
            cost_usd=cost,
            asked=True,
        )


def _without_whitespace(text: str) -> str:
    return _WORD.sub("", text)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
