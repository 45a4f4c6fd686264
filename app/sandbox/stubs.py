"""Loopback stand-ins for OpenRouter and internal-send-ai-message, over real HTTP.

Each stub is a small FastAPI app, served by sandbox.server.LoopbackServer on 127.0.0.1 in a
thread of its own, so its latency never borrows the event loop of the code under test.
Latency is fixed or lognormal (seeded); faults come from a script (one per request, in
order), from rules (a function of the request) or by ratio (seeded), as the real APIs fail:
429 with Retry-After, 5xx, hanging past the client's timeout, malformed JSON, empty content,
401, 400 invalid number; OpenRouter's 403 moderation refusal and its errors inside a 200.
Every OpenRouter answer carries `usage.cost` (USD, from the tokens at gpt-4o-mini's prices).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.ai.prompts import VARY_INSTRUCTION

SEND_PATH = "/functions/v1/internal-send-ai-message"


class Fault(StrEnum):
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    UNAUTHORIZED = "401"
    HANG = "hang"
    MALFORMED = "malformed"
    EMPTY = "empty"
    INVALID_NUMBER = "invalid_number"
    STATUS = "status"  # answers FaultPlan.status (any 4xx or 5xx)
    REJECTED = "rejected"  # send only: 200 with {"success": false}, nothing delivered
    DELIVER_THEN_HANG = "deliver_then_hang"  # send only: delivered, but the answer never comes
    MODERATION = "moderation"  # OpenRouter only: 403, the input was flagged
    ERROR_IN_BODY = "error_in_body"  # OpenRouter only: 200 with {"error": {code: status}}


# What the stub charges, USD per token (gpt-4o-mini's list prices).
PROMPT_USD_PER_TOKEN = 0.15e-6
COMPLETION_USD_PER_TOKEN = 0.60e-6


def stub_cost(prompt_tokens: int, completion_tokens: int) -> float:
    """usage.cost of an answer of the OpenRouter stub."""
    return round(
        prompt_tokens * PROMPT_USD_PER_TOKEN + completion_tokens * COMPLETION_USD_PER_TOKEN, 12
    )


@dataclass
class Latency:
    """Fixed, or lognormal around median_ms with sigma (seeded, reproducible)."""

    fixed_ms: float = 0.0
    median_ms: float | None = None
    sigma: float = 0.6
    seed: int = 1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def sample_s(self) -> float:
        if self.median_ms is None:
            return self.fixed_ms / 1000
        with self._lock:
            return self._rng.lognormvariate(0.0, self.sigma) * self.median_ms / 1000


@dataclass(frozen=True)
class RequestInfo:
    number: int  # 1-based count of requests this stub has seen
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


Rule = Callable[[RequestInfo], "Fault | None"]


@dataclass
class FaultPlan:
    script: deque[Fault | None] = field(default_factory=deque)
    rules: list[Rule] = field(default_factory=list)
    ratios: dict[Fault, float] = field(default_factory=dict)
    retry_after: str = "1"
    status: int = 400
    hang_s: float = 30.0
    seed: int = 7

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def choose(self, info: RequestInfo) -> Fault | None:
        if self.script:
            return self.script.popleft()
        for rule in self.rules:
            fault = rule(info)
            if fault is not None:
                return fault
        if self.ratios:
            roll = self._rng.random()
            for fault, ratio in self.ratios.items():
                if roll < ratio:
                    return fault
                roll -= ratio
        return None


class _Stub:
    def __init__(self, latency: Latency | None, faults: FaultPlan | None) -> None:
        self.app = FastAPI()
        self.latency = latency or Latency()
        self.faults = faults or FaultPlan()
        self.reset()

    def reset(self) -> None:
        """Forgets what it saw and goes back to no latency and no faults."""
        self.latency = Latency()
        self.faults = FaultPlan()
        self.requests = 0
        self.seen: list[RequestInfo] = []
        self.faults_served: list[Fault] = []

    async def _prelude(self, request: Request) -> tuple[RequestInfo, Fault | None, Response | None]:
        """Counts, waits the latency and picks a fault; a Response when the fault is generic."""
        self.requests += 1
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        info = RequestInfo(self.requests, request.url.path, dict(request.headers), body)
        self.seen.append(info)
        await asyncio.sleep(self.latency.sample_s())
        fault = self.faults.choose(info)
        if fault is None:
            return info, None, None
        self.faults_served.append(fault)
        return info, fault, await self._fault_response(fault)

    async def _fault_response(self, fault: Fault) -> Response | None:
        if fault is Fault.RATE_LIMIT:
            return JSONResponse(
                {"error": {"code": 429, "message": "rate limited"}},
                429,
                headers={"Retry-After": self.faults.retry_after},
            )
        if fault is Fault.SERVER_ERROR:
            return JSONResponse({"error": {"code": 500, "message": "upstream error"}}, 500)
        if fault is Fault.UNAUTHORIZED:
            return JSONResponse({"error": {"code": 401, "message": "invalid key"}}, 401)
        if fault is Fault.STATUS:
            status = self.faults.status
            return JSONResponse({"error": {"code": status, "message": "as configured"}}, status)
        if fault is Fault.HANG:
            await asyncio.sleep(self.faults.hang_s)
            return JSONResponse({"error": "too late"}, 504)
        if fault is Fault.MALFORMED:
            return PlainTextResponse(
                '{"choices": [ {"message": ', 200, media_type="application/json"
            )
        return None  # EMPTY and INVALID_NUMBER are shaped by each stub


class OpenRouterStub(_Stub):
    """POST /chat/completions. Writes a message from the lead's name; splits at sentences."""

    def __init__(
        self,
        latency: Latency | None = None,
        faults: FaultPlan | None = None,
        api_key: str = "test-openrouter-key",
    ) -> None:
        self.api_key = api_key
        super().__init__(latency, faults)
        self.app.post("/chat/completions")(self._completions)

    def reset(self) -> None:
        super().reset()
        self.generations = 0
        self.splits = 0
        self.models: list[str] = []
        self.costs: list[float] = []  # usage.cost of every answer with content, in order
        # The user prompt of every generation (not splits), in order.
        self.prompts: list[str] = []
        # Set: every generation answers this text, as a model that repeats itself; one told to
        # vary it (the repetition guard's second try) writes its own text unless ignores_vary.
        self.answer_text: str | None = None
        self.ignores_vary = False

    async def _completions(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"code": 401, "message": "no auth"}}, 401)
        info, fault, faulted = await self._prelude(request)
        if faulted is not None:
            return faulted
        if fault is Fault.MODERATION:
            return JSONResponse(
                {
                    "error": {
                        "code": 403,
                        "message": "Input was flagged by moderation",
                        "metadata": {
                            "reasons": ["harassment"],
                            "flagged_input": "(the lead's own words, up to 100 chars)",
                            "provider_name": "stub",
                            "model_slug": str(info.body.get("model")),
                        },
                    }
                },
                403,
            )
        if fault is Fault.ERROR_IN_BODY:
            code = self.faults.status
            return JSONResponse(
                {"error": {"code": code, "message": "provider error", "metadata": {}}}, 200
            )
        messages = info.body.get("messages") or []
        system = str(messages[0].get("content", "")) if messages else ""
        user = str(messages[-1].get("content", "")) if messages else ""
        self.models.append(str(info.body.get("model")))
        if system.startswith("Split the WhatsApp message"):
            self.splits += 1
            match = re.search(r"at most (\d+)", system)
            content = json.dumps(
                _sentence_parts(user, int(match.group(1)) if match else 3), ensure_ascii=False
            )
        else:
            self.generations += 1
            self.prompts.append(user)
            told_to_vary = VARY_INSTRUCTION in user
            if self.answer_text is not None and (self.ignores_vary or not told_to_vary):
                content = self.answer_text
            else:
                content = _write_message(user)
        if fault is Fault.EMPTY:
            content = ""
        prompt_tokens, completion_tokens = len(user) // 4, len(content) // 4
        cost = stub_cost(prompt_tokens, completion_tokens)
        if content:
            self.costs.append(cost)
        return JSONResponse(
            {
                "id": f"gen-{info.number}",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": (len(user) + len(content)) // 4,
                    "cost": cost,
                },
            }
        )


class SendStub(_Stub):
    """POST /functions/v1/internal-send-ai-message; dedupes by Idempotency-Key."""

    def __init__(
        self,
        latency: Latency | None = None,
        faults: FaultPlan | None = None,
        service_role_key: str = "test-service-role-key",
    ) -> None:
        self.service_role_key = service_role_key
        super().__init__(latency, faults)
        self.app.post(SEND_PATH)(self._send)

    def reset(self) -> None:
        super().reset()
        self.deliveries: list[dict[str, str]] = []
        self.duplicate_keys = 0
        self.keys_seen: dict[str, str] = {}
        self.repeats: Counter[str] = Counter()  # deliveries of a key already delivered

    async def _send(self, request: Request) -> Response:
        if request.headers.get("x-service-role-key") != self.service_role_key:
            return JSONResponse({"error": "invalid service role key"}, 401)
        info, fault, faulted = await self._prelude(request)
        if faulted is not None:
            return faulted
        if fault is Fault.REJECTED:
            return JSONResponse({"success": False, "error": "instance not ready"}, 200)
        if fault is Fault.INVALID_NUMBER:
            return JSONResponse({"error": "invalid phone number", "code": "invalid_number"}, 400)
        key = info.headers.get("idempotency-key", "")
        conversation_id = str(info.body.get("conversationId", ""))
        text = info.body.get("text")
        if not conversation_id or not isinstance(text, str) or not text.strip():
            return JSONResponse({"error": "conversationId and text are required"}, 422)
        if key and key in self.keys_seen:
            self.duplicate_keys += 1
            self.repeats[key] += 1
            provider_id = self.keys_seen[key]
        else:
            provider_id = f"wamid.{len(self.deliveries) + 1:06d}"
            self.deliveries.append(
                {
                    "conversation_id": conversation_id,
                    "text": text,
                    "idempotency_key": key,
                    "provider_id": provider_id,
                    "at": f"{time.time():.6f}",
                }
            )
            if key:
                self.keys_seen[key] = provider_id
        if fault is Fault.DELIVER_THEN_HANG:
            await asyncio.sleep(self.faults.hang_s)
        return JSONResponse({"success": True, "provider_response": {"key": {"id": provider_id}}})

    def delivered_keys(self) -> list[str]:
        return [d["idempotency_key"] for d in self.deliveries]


def _write_message(user_prompt: str) -> str:
    """A message from the lead's context. As a model's, it differs from lead to lead beyond the
    name and company (a word of letters drawn from the whole prompt), so the repetition guard
    does not see the same text; told to vary, it opens and closes differently."""
    name = re.search(r"^Name: (.+)$", user_prompt, re.MULTILINE)
    company = re.search(r"^Company: (.+)$", user_prompt, re.MULTILINE)
    who = name.group(1) if name else "tudo bem"
    where = f" na {company.group(1)}" if company else ""
    digest = hashlib.sha256(user_prompt.encode("utf-8")).hexdigest()[:8]
    code = "".join(chr(ord("a") + int(c, 16)) for c in digest)
    if VARY_INSTRUCTION in user_prompt:
        return (
            f"Oi {who}, tudo certo? Acompanho vocês{where} há um tempo. "
            "Nossa ferramenta deixa o time de vendas responder no WhatsApp na hora. "
            "Ninguém fica esperando, nem de madrugada. "
            "Topa uma conversa de 15 minutos nos próximos dias? "
            f"Mando a proposta {code} por aqui se preferir."
        )
    return (
        f"Olá {who}! Vi o trabalho de vocês{where} e fiquei curioso. "
        "Ajudamos equipes comerciais a responder clientes no WhatsApp em minutos. "
        "Nenhum contato fica sem resposta, nem fora do horário. "
        "Faz sentido conversarmos 15 minutos esta semana? "
        f"Posso te mandar a proposta {code} por aqui mesmo."
    )


def _sentence_parts(text: str, max_parts: int) -> list[str]:
    """Whole sentences in up to max_parts parts, as even as they come."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    if not sentences:
        return [text]
    count = min(max(1, max_parts), len(sentences))
    size, extra = divmod(len(sentences), count)
    parts, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(" ".join(sentences[start:end]))
        start = end
    return parts


def stub_settings_env(
    openrouter: OpenRouterStub, openrouter_url: str, send: SendStub, send_url: str
) -> dict[str, str]:
    """The settings that point the service at running stubs."""
    return {
        "OPENROUTER_BASE_URL": openrouter_url,
        "OPENROUTER_API_KEY": openrouter.api_key,
        "SEND_URL": send_url + SEND_PATH,
        "SUPABASE_SERVICE_ROLE_KEY": send.service_role_key,
    }
