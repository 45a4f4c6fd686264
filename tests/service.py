"""The service under test: the real app on loopback, with either store, aimed at the stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.main import create_app
from app.sandbox.postgrest import create_postgrest_app
from app.sandbox.server import LoopbackServer
from app.settings import Settings
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs

SUPABASE_KEY = "test-service-role-key"  # the send stub's key too, as in production


@dataclass
class Service:
    url: str
    settings: Settings
    stubs: Stubs
    http: httpx.AsyncClient

    async def process(
        self, body: dict[str, Any] | None = None, token: str | None = CRON_SECRET
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = await self.http.post(
            self.url + "/process-queue", json=body, headers=headers, timeout=60
        )
        if response.status_code in (200, 502):  # every claimed message is counted once
            answer = response.json()
            ends = ("processed", "failed", "paused", "skipped", "released", "lease_lost")
            assert answer["claimed"] == sum(answer[k] for k in ends), answer
        return response


@pytest.fixture(params=["postgres", "supabase"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service_settings(
    store_kind: str, db_dsn: str, make_settings: SettingsFactory
) -> Iterator[Settings]:
    if store_kind == "postgres":
        yield make_settings(database_url=db_dsn)
        return
    with LoopbackServer(create_postgrest_app(db_dsn, SUPABASE_KEY), lifespan=True) as postgrest:
        yield make_settings(
            database_url=None, supabase_url=postgrest.url, supabase_service_role_key=SUPABASE_KEY
        )


@pytest_asyncio.fixture
async def service(service_settings: Settings, stubs: Stubs) -> AsyncIterator[Service]:
    with LoopbackServer(create_app(service_settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            yield Service(server.url, service_settings, stubs, http)
