from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from app.main import create_app
from app.sandbox.server import LoopbackServer
from app.settings import Settings
from tests.console.helpers import OPERATOR_TOKEN, Console
from tests.service import Service
from tests.stubs import Stubs


@pytest.fixture
def store_kind() -> str:
    return "postgres"


@pytest.fixture
def console_settings(service_settings: Settings) -> Settings:
    return service_settings.model_copy(update={"operator_token": SecretStr(OPERATOR_TOKEN)})


@pytest_asyncio.fixture
async def console_service(console_settings: Settings, stubs: Stubs) -> AsyncIterator[Service]:
    with LoopbackServer(create_app(console_settings), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            yield Service(server.url, console_settings, stubs, http)


@pytest_asyncio.fixture
async def console(console_service: Service) -> AsyncIterator[Console]:
    """A client signed in through the form (httpx keeps the cookie)."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            console_service.url + "/console/sign-in", data={"token": OPERATOR_TOKEN}
        )
        assert response.status_code == 303
        yield Console(console_service.url, http)
