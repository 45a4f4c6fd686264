"""A /chat/completions that answers exactly what a test scripts, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from app.sandbox.server import LoopbackServer


class RawAnswers:
    """Answers every POST /chat/completions with the JSON text last given to answer()."""

    def __init__(self) -> None:
        self.body = "{}"
        self.url = ""
        self.app = FastAPI()
        self.app.post("/chat/completions")(self._completions)

    async def _completions(self) -> Response:
        return Response(self.body, media_type="application/json")

    def answer(self, content_json: str, total_tokens: str = "7", cost: str | None = None) -> None:
        """content_json: the JSON spelling of message.content, escapes and all; cost: the JSON
        spelling of usage.cost (left out when None)."""
        self.body = (
            '{"choices": [{"message": {"role": "assistant", "content": '
            + content_json
            + '}}], "usage": {"total_tokens": '
            + total_tokens
            + ("" if cost is None else ', "cost": ' + cost)
            + "}}"
        )


@pytest.fixture(scope="module")
def raw_answers() -> Iterator[RawAnswers]:
    answers = RawAnswers()
    with LoopbackServer(answers.app) as server:
        answers.url = server.url
        yield answers
