"""What the benchmarks share: a Postgres, the stubs, fresh queues, counting and timing seams."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from app.ai.openrouter import OpenRouterClient
from app.delivery.sender import Sender
from app.models import ClaimedMessage, LeadContext
from app.processing.invocation import Invocation
from app.processing.pipeline import MessagePipeline, Outcome
from app.processing.processor import QueueProcessor
from app.sandbox import scheduler
from app.sandbox.database import create_migrated_database, running_postgres
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import SEND_PATH, OpenRouterStub, SendStub
from app.settings import Settings
from app.store.postgres import PostgresRpc
from app.store.rpc import Rpc
from app.store.store import StoppedContact, Store, UnreadableLead

CRON_SECRET = secrets.token_urlsafe(16)


@dataclass
class Rig:
    admin_dsn: str
    openrouter: OpenRouterStub
    openrouter_url: str
    send: SendStub
    send_url: str

    def env(self, dsn: str, **extra: str) -> dict[str, str]:
        """Settings for a service process, as environment variables."""
        return {
            "DATABASE_URL": dsn,
            "OPENROUTER_BASE_URL": self.openrouter_url,
            "OPENROUTER_API_KEY": self.openrouter.api_key,
            "SEND_URL": self.send_url + SEND_PATH,
            "SUPABASE_SERVICE_ROLE_KEY": self.send.service_role_key,
            "CRON_SECRET": CRON_SECRET,
            "RETRY_BASE_S": "0.05",
            # The pool is what these benchmarks measure: no pacing (bench/pacing.py has it).
            "INBOX_MIN_GAP_S": "0",
            "INBOX_MAX_GAP_S": "0",
            "INBOX_DAILY_CAP": "0",
            **extra,
        }

    def settings(self, dsn: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {k.lower(): v for k, v in self.env(dsn).items()}
        values.update(log_level="WARNING", **overrides)
        return Settings.model_validate(values)


@contextmanager
def rig() -> Iterator[Rig]:
    openrouter, send = OpenRouterStub(), SendStub()
    with (
        running_postgres() as server,
        LoopbackServer(openrouter.app) as o,
        LoopbackServer(send.app) as s,
    ):
        yield Rig(server.dsn, openrouter, o.url, send, s.url)


async def fresh_queue(rig: Rig, messages: int, **seed: Any) -> str:
    """A new database with `messages` due messages in one run; returns its DSN."""
    dsn = await create_migrated_database(rig.admin_dsn, f"bench_{uuid.uuid4().hex[:10]}")
    conn = await asyncpg.connect(dsn)
    try:
        await seed_campaign(conn, leads=messages, **seed)
    finally:
        await conn.close()
    return dsn


async def status_counts(dsn: str) -> Counter[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("select status, count(*) as n from campaign_messages group by 1")
    finally:
        await conn.close()
    return Counter({r["status"]: r["n"] for r in rows})


class CountingRpc:
    """An Rpc that counts calls by function: the database round trips."""

    def __init__(self, inner: Rpc) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        self.calls[function] += 1
        return await self.inner.call(function, args)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class TimedPipeline(MessagePipeline):
    """Records how long each message took from start to outcome: its service time."""

    durations: list[float]

    async def run(
        self,
        message: ClaimedMessage,
        lead: LeadContext | UnreadableLead | StoppedContact | None,
        invocation: Invocation,
    ) -> Outcome:
        started = time.perf_counter()
        try:
            return await super().run(message, lead, invocation)
        finally:
            self.durations.append(time.perf_counter() - started)


@dataclass
class InProcess:
    """The service's processor, built as the lifespan builds it, without HTTP in front."""

    settings: Settings
    rpc: CountingRpc
    store: Store
    pipeline: TimedPipeline
    processor: QueueProcessor
    durations: list[float] = field(default_factory=list)


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[InProcess]:
    assert settings.database_url is not None
    rpc = CountingRpc(
        PostgresRpc(
            settings.database_url.get_secret_value(), max_size=settings.database_pool_max_size
        )
    )
    store = Store(rpc)
    async with httpx.AsyncClient() as openrouter_http, httpx.AsyncClient() as send_http:
        pipeline = TimedPipeline(
            store,
            OpenRouterClient(openrouter_http, settings),
            Sender(send_http, settings),
            default_model=settings.default_model,
        )
        pipeline.durations = []
        processor = QueueProcessor(store, pipeline, settings, worker="bench")
        try:
            yield InProcess(settings, rpc, store, pipeline, processor)
        finally:
            await rpc.close()


async def drive_until_settled(urls: list[str], dsn: str) -> None:
    await scheduler.drive_until_settled(urls, dsn, CRON_SECRET)
