"""OpenRouter chat completions: generate a message, ask for its split. One shared client.

What OpenRouter offers beyond a plain completion, used here:
- `models`: FALLBACK_MODELS after the main model; OpenRouter tries them in order when the
  main one is down, rate-limited or refuses;
- `session_id`: the run id, so a campaign's calls stick to one provider and reuse its prompt
  cache (the system prompt, ai_instructions, comes first and is the same for the whole run);
- `usage.cost`: what the call cost in USD, saved per message and summed per run;
- errors: a 200 whose body carries `error` fails like the status it names; a 403 is a
  moderation refusal of this input (ModerationError: the message fails for good, the
  invocation goes on), told apart from a key problem by its body.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.ai.prompts import split_system_prompt
from app.models import SplitterConfig
from app.outbound import (
    AUTH_STATUSES,
    RETRYABLE_CLIENT_STATUSES,
    AuthError,
    OutboundError,
    PermanentError,
    RetryableError,
    RetryPolicy,
    error_for_status,
    error_for_transport,
    with_retries,
)
from app.settings import Settings
from app.text import clamp_int32, clean_text

GENERATE_MAX_TOKENS = 500
GENERATE_TEMPERATURE = 0.7
MAX_SESSION_ID_CHARS = 128  # OpenRouter accepts up to 128 (SDK) or 256 (API) characters
MAX_COST_USD = 1_000_000.0  # a cost above this is not a cost: it is counted as unknown

_REASON = re.compile(r"[^a-z0-9/_-]+")


class ModerationError(PermanentError):
    """OpenRouter's 403: the chosen model requires moderation and this input was flagged.

    Only this message is refused: it fails for good (a retry sends the same input), and the
    invocation goes on (the key is fine).
    """


@dataclass(frozen=True)
class Completion:
    content: str
    tokens: int
    cost_usd: float | None  # usage.cost; None when the answer did not say


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    elapsed_ms: int
    cost_usd: float | None = None


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
        self._fallback_models = list(settings.fallback_models)

    async def generate(
        self,
        *,
        model: str,
        system: str,
        user: str,
        deadline: float | None = None,
        session_id: str | None = None,
    ) -> Generation:
        """The model's message (not yet validated), its tokens, cost and the time it took.

        session_id (the run id) keeps a campaign's calls on one provider: its prompt cache
        holds the system prompt, which comes first and is the same for the whole run.
        """
        started = time.perf_counter()
        payload = self._payload(
            model,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            session_id,
            max_tokens=GENERATE_MAX_TOKENS,
            temperature=GENERATE_TEMPERATURE,
        )
        answer = await self._complete(payload, self._generate_timeout, deadline)
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        return Generation(answer.content, answer.tokens, elapsed_ms, answer.cost_usd)

    async def request_split(
        self,
        *,
        model: str,
        text: str,
        max_parts: int,
        splitter: SplitterConfig,
        deadline: float | None = None,
        session_id: str | None = None,
    ) -> Completion:
        """The model's raw split answer, its tokens and cost; ai.split checks and falls back."""
        payload = self._payload(
            model,
            [
                {"role": "system", "content": split_system_prompt(max_parts)},
                {"role": "user", "content": text},
            ],
            session_id,
            max_tokens=splitter.max_tokens,
            temperature=splitter.temperature,
        )
        return await self._complete(payload, self._split_timeout, deadline)

    def _payload(
        self,
        model: str,
        messages: list[dict[str, str]],
        session_id: str | None,
        *,
        max_tokens: int,
        temperature: float,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        fallbacks = [m for m in self._fallback_models if m != model]
        if fallbacks:
            payload["models"] = [model, *fallbacks]
        if session_id:
            payload["session_id"] = session_id[:MAX_SESSION_ID_CHARS]
        return payload

    async def _complete(
        self, payload: dict[str, Any], request_timeout_s: float, deadline: float | None
    ) -> Completion:
        async def attempt() -> Completion:
            try:
                response = await self._http.post(
                    self._url, json=payload, headers=self._headers, timeout=request_timeout_s
                )
            except httpx.HTTPError as exc:
                raise error_for_transport(exc, "openrouter") from exc
            if response.status_code >= 300:
                raise _error_for_status(response)
            return _parse_completion(response)

        return await with_retries(attempt, self._policy, deadline=deadline)


def _error_for_status(response: httpx.Response) -> OutboundError:
    """A non-2xx answer; a 403 whose body says moderation is a ModerationError, not a key
    problem (any other 403, say a region or a key restriction, stays an AuthError)."""
    if response.status_code == 403:
        try:
            data = response.json()
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and _is_moderation(error):
            return _moderation_error(error, "HTTP 403")
    return error_for_status(response, "openrouter")


def _is_moderation(error: dict[str, Any]) -> bool:
    metadata = error.get("metadata")
    if isinstance(metadata, dict) and ("reasons" in metadata or "flagged_input" in metadata):
        return True
    message = error.get("message")
    return isinstance(message, str) and bool(re.search(r"moderat|flagged", message, re.I))


def _moderation_error(error: dict[str, Any], where: str) -> ModerationError:
    """Names the categories (`reasons`), never the flagged input: it is the lead's data."""
    metadata = error.get("metadata")
    reasons = metadata.get("reasons") if isinstance(metadata, dict) else None
    names = []
    if isinstance(reasons, list):
        for reason in reasons[:3]:
            name = _REASON.sub("-", str(reason).lower()).strip("-")[:40]
            if name:
                names.append(name)
    suffix = f"; {', '.join(names)}" if names else ""
    return ModerationError(f"openrouter: input flagged by moderation ({where}{suffix})", status=403)


def _parse_completion(response: httpx.Response) -> Completion:
    try:
        data = response.json(parse_int=_json_int)
    except ValueError as exc:
        raise RetryableError("openrouter: malformed JSON answer") from exc
    if not isinstance(data, dict):
        raise RetryableError("openrouter: answer is not a JSON object")
    error = data.get("error")
    if isinstance(error, dict):  # OpenRouter can report a provider error inside a 200
        raise _error_in_body(error)
    try:
        choice = data["choices"][0]
        if isinstance(choice, dict) and isinstance(choice.get("error"), dict):
            raise _error_in_body(choice["error"])  # an error in place of this choice
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise RetryableError("openrouter: answer has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise RetryableError("openrouter: empty content")
    content = clean_text(content)  # no NUL, no lone surrogate: the database must store it
    if not content.strip():
        raise RetryableError("openrouter: empty content")
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return Completion(content, _total_tokens(usage.get("total_tokens")), _cost(usage.get("cost")))


def _total_tokens(value: object) -> int:
    """usage.total_tokens as an int4 count: 0 unless a whole number (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 0
    return clamp_int32(value) or 0


def _json_int(digits: str) -> int | float:
    """A JSON integer. One too long for Python's int() (sys.get_int_max_str_digits) is read
    as a float, infinite: that number is unusable (a count, a cost), not the whole answer."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def _cost(value: object) -> float | None:
    """usage.cost in USD: a finite number from 0 to MAX_COST_USD, else unknown (None)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if isinstance(value, int) and not 0 <= value <= MAX_COST_USD:
        return None  # float() of a huge integer raises OverflowError
    cost = float(value)
    if not math.isfinite(cost) or not 0 <= cost <= MAX_COST_USD:
        return None
    return cost


def _error_in_body(error: dict[str, Any]) -> OutboundError:
    """An error inside a 200 fails like the status its code names: 408, 409, 429 and 5xx
    are retried; 401 and 402 are a key or credit problem; 403 is moderation; another 4xx is
    permanent; no readable code is an unnamed provider failure, retried."""
    code = error.get("code")
    status: int | None = None
    if isinstance(code, int) and not isinstance(code, bool):
        status = code
    elif isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():
        status = int(code.strip())  # str.isdigit alone takes '²', which int() refuses
    message = f"openrouter: error in answer (code {status if status is not None else '?'})"
    if status is None or status in RETRYABLE_CLIENT_STATUSES or status >= 500:
        return RetryableError(message, status=status)
    if status == 403:
        return _moderation_error(error, "code 403")
    if status in AUTH_STATUSES:
        return AuthError(message, status=status)
    if 400 <= status < 500:
        return PermanentError(message, status=status)
    return RetryableError(message, status=status)  # a 1xx-3xx code: nothing to go by
