"""OpenRouter chat completions: generate a message, ask for its split. One shared client."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.ai.prompts import split_system_prompt
from app.models import SplitterConfig
from app.outbound import (
    AUTH_STATUSES,
    AuthError,
    OutboundError,
    RetryableError,
    RetryPolicy,
    post_json,
    with_retries,
)
from app.settings import Settings
from app.text import clamp_int32, clean_text

GENERATE_MAX_TOKENS = 500
GENERATE_TEMPERATURE = 0.7


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    elapsed_ms: int


class OpenRouterClient:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._url = settings.openrouter_base_url.rstrip("/") + "/chat/completions"
        key = settings.openrouter_api_key
        self._headers = {
            "Authorization": f"Bearer {key.get_secret_value() if key else ''}",
            "X-Title": "campaign-queue",
        }
        self._generate_timeout = settings.generate_timeout_s
        self._split_timeout = settings.split_timeout_s
        self._policy = RetryPolicy.from_settings(settings)

    async def generate(
        self, *, model: str, system: str, user: str, deadline: float | None = None
    ) -> Generation:
        """The model's message (not yet validated), its total tokens and the time it took."""
        started = time.perf_counter()
        payload = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": GENERATE_MAX_TOKENS,
            "temperature": GENERATE_TEMPERATURE,
        }
        content, tokens = await self._complete(payload, self._generate_timeout, deadline)
        return Generation(content, tokens, int((time.perf_counter() - started) * 1000))

    async def request_split(
        self,
        *,
        model: str,
        text: str,
        max_parts: int,
        splitter: SplitterConfig,
        deadline: float | None = None,
    ) -> tuple[str, int]:
        """The model's raw split answer and its tokens; ai.split checks and falls back."""
        payload = {
            "model": model,
            "messages": [
                {"role": "system", "content": split_system_prompt(max_parts)},
                {"role": "user", "content": text},
            ],
            "max_tokens": splitter.max_tokens,
            "temperature": splitter.temperature,
        }
        return await self._complete(payload, self._split_timeout, deadline)

    async def _complete(
        self, payload: dict[str, Any], request_timeout_s: float, deadline: float | None
    ) -> tuple[str, int]:
        async def attempt() -> tuple[str, int]:
            response = await post_json(
                self._http,
                self._url,
                payload,
                headers=self._headers,
                timeout_s=request_timeout_s,
                what="openrouter",
            )
            return _parse_completion(response)

        return await with_retries(attempt, self._policy, deadline=deadline)


def _parse_completion(response: httpx.Response) -> tuple[str, int]:
    try:
        data = response.json()
    except ValueError as exc:
        raise RetryableError("openrouter: malformed JSON answer") from exc
    if not isinstance(data, dict):
        raise RetryableError("openrouter: answer is not a JSON object")
    error = data.get("error")
    if isinstance(error, dict):  # OpenRouter can report a provider error inside a 200
        raise _error_in_body(error)
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise RetryableError("openrouter: answer has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise RetryableError("openrouter: empty content")
    content = clean_text(content)  # no NUL, no lone surrogate: the database must store it
    if not content.strip():
        raise RetryableError("openrouter: empty content")
    usage = data.get("usage")
    return content, _total_tokens(usage.get("total_tokens") if isinstance(usage, dict) else None)


def _total_tokens(value: object) -> int:
    """usage.total_tokens as an int4 count: 0 unless a whole number (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return clamp_int32(value) or 0


def _error_in_body(error: dict[str, Any]) -> OutboundError:
    code = error.get("code")
    status = code if isinstance(code, int) else None
    message = f"openrouter: error in answer (code {code})"
    if status in AUTH_STATUSES:
        return AuthError(message, status=status)
    return RetryableError(message, status=status)
