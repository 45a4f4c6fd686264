"""Two instances of the service (two apps on loopback, one database) sending on one inbox:
the warm-up's cap and the hourly cap hold across them (040_inbox_hold.sql), the messages held
back stay pending untouched (no retry spent, none skipped), and a braked inbox is not worked."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest_asyncio

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.settings import Settings
from app.status import render
from app.status_answer import StatusAnswer
from tests.clock import midday_zone
from tests.service import Service
from tests.stubs import CRON_SECRET, Stubs

Instances = Callable[..., Awaitable[list[Service]]]


@pytest_asyncio.fixture
async def two_instances(service_settings: Settings, stubs: Stubs) -> AsyncIterator[Instances]:
    """Starts two services with the given settings (on top of the store's)."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> list[Service]:
            settings = service_settings.model_copy(update=overrides)
            services = []
            for _ in range(2):
                server = stack.enter_context(LoopbackServer(create_app(settings), lifespan=True))
                http = await stack.enter_async_context(httpx.AsyncClient())
                services.append(Service(server.url, settings, stubs, http))
            return services

        yield start


async def statuses(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("select status from campaign_messages")
    return Counter(r["status"] for r in rows)


async def status_of(service: Service) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {CRON_SECRET}"}
    response = await service.http.get(service.url + "/status", headers=headers)
    assert response.status_code == 200, response.text
    StatusAnswer.model_validate(response.json())  # the answer its documentation describes
    answer: dict[str, Any] = response.json()
    return answer


async def both_process(services: list[Service]) -> int:
    answers = await asyncio.gather(*(s.process({"batch_size": 5}) for s in services))
    return sum(a.json()["processed"] for a in answers)


async def test_the_hourly_cap_holds_across_two_instances(
    two_instances: Instances, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=8)
    services = await two_instances(inbox_hourly_cap=3)

    assert await both_process(services) == 3
    assert await both_process(services) == 0  # still inside the rolling hour

    assert await statuses(conn) == Counter({"sent": 3, "pending": 5})
    assert await conn.fetchval("select max(retry_count) from campaign_messages") == 0
    status = await status_of(services[1])
    [inbox] = status["inboxes"]
    assert (inbox["sent_last_hour"], inbox["hourly_cap"], inbox["held"]) == (3, 3, "hourly_cap")
    assert re.search(r"held: hourly_cap, ends in (59m|1h)", render(status))
    # An hour passes for the three slots: three more go.
    await conn.execute(
        """update campaign_inbox_pacing_state
              set hour_slots = array(select s - '61 minutes'::interval from unnest(hour_slots) s)
            where inbox_id = $1""",
        seeded.inbox_id,
    )
    assert await both_process(services) == 3
    assert await statuses(conn) == Counter({"sent": 6, "pending": 2})


async def test_the_warmups_cap_holds_across_two_instances(
    two_instances: Instances, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=8)
    services = await two_instances(
        inbox_daily_cap=50,
        inbox_warmup_days=10,
        inbox_warmup_start_cap=2,
        inbox_timezone=midday_zone(),  # it failed when the calls straddled midnight
    )

    assert await both_process(services) == 2  # day 0
    assert await both_process(services) == 0

    assert await statuses(conn) == Counter({"sent": 2, "pending": 6})
    assert await conn.fetchval("select max(retry_count) from campaign_messages") == 0
    status = await status_of(services[0])
    [inbox] = status["inboxes"]
    assert (inbox["warmup_day"], inbox["today_cap"], inbox["held"]) == (0, 2, "daily_cap")
    assert "day 0" in render(status)


async def test_a_braked_inbox_is_not_worked_until_its_brake_ends(
    two_instances: Instances, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + '6 hours'::interval, 'failed sends')""",
        seeded.inbox_id,
    )
    services = await two_instances()

    assert await both_process(services) == 0
    assert await statuses(conn) == Counter({"pending": 4})
    assert services[0].stubs.openrouter.requests == 0
    status = await status_of(services[0])
    [inbox] = status["inboxes"]
    assert (inbox["held"], inbox["brake_reason"]) == ("brake", "failed sends")
    assert "held: brake (failed sends), ends in " in render(status), render(status)

    await conn.execute(
        "update campaign_inbox_pacing_state set brake_until = now() where inbox_id = $1",
        seeded.inbox_id,
    )
    assert await both_process(services) == 4
