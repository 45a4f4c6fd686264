"""When a call claims again (docs/architecture.md, "Pacing": cadence), over real HTTP.

A call keeps working while its budget lasts whenever a due message's inbox will have a slot
before the budget ends, judged from each inbox's own gap and cap and each run's window, and
ends early only when nothing due can start within its budget. Gaps and budgets are seconds;
a slot is put further away than the claim's look-ahead (3 s) where the old cadence failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import httpx

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.service_process import ServiceProcess
from app.sandbox.stubs import Latency
from tests.processing.invariants import assert_no_lease_left
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs


async def one_call(make_settings: SettingsFactory, db_dsn: str, **settings: Any) -> dict[str, Any]:
    """One scheduler call to a fresh service with these settings; its JSON answer."""
    values: dict[str, Any] = {
        "database_url": db_dsn,
        "inbox_min_gap_s": 0.0,
        "inbox_max_gap_s": 0.0,
        "inbox_daily_cap": 0,
    }
    values.update(settings)
    with LoopbackServer(create_app(make_settings(**values)), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=120) as http:
            response = await http.post(
                server.url + "/process-queue", headers={"Authorization": f"Bearer {CRON_SECRET}"}
            )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def first_parts(stubs: Stubs) -> list[float]:
    return sorted(
        float(d["at"]) for d in stubs.send.deliveries if d["idempotency_key"].endswith(":0")
    )


async def test_a_call_that_starts_mid_gap_waits_for_the_slot_and_sends(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    stubs.openrouter.latency = Latency(fixed_ms=10)
    seeded = await seed_campaign(conn, leads=2)
    # The inbox sent a second ago; its next slot opens in 4 s, beyond the claim's look-ahead.
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at, paced)
           values ($1, now() + interval '4 seconds', now() - interval '1 second', true)""",
        seeded.inbox_id,
    )

    answer = await one_call(
        make_settings, db_dsn, inbox_min_gap_s=1.0, inbox_max_gap_s=1.0, time_budget_s=8
    )

    assert (answer["claimed"], answer["processed"]) == (2, 2), answer
    sent = first_parts(stubs)
    assert len(sent) == 2, sent
    assert sent[1] - sent[0] >= 1.0, sent
    await assert_no_lease_left(conn)


async def test_an_inbox_paced_by_its_own_row_is_served_while_the_settings_say_no_pacing(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    stubs.openrouter.latency = Latency(fixed_ms=10)
    seeded = await seed_campaign(conn, leads=3)
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) values ($1, 1, 1)",
        seeded.inbox_id,
    )

    answer = await one_call(make_settings, db_dsn, time_budget_s=6)  # settings: 0 gap, 0 cap

    assert (answer["claimed"], answer["processed"]) == (3, 3), answer
    sent = first_parts(stubs)
    assert min(b - a for a, b in pairwise(sent)) >= 1.0, sent
    await assert_no_lease_left(conn)


async def test_an_inbox_whose_own_gap_is_longer_than_the_settings_keeps_the_call_going(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    stubs.openrouter.latency = Latency(fixed_ms=10)
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) values ($1, 6, 6)",
        seeded.inbox_id,
    )

    answer = await one_call(
        make_settings, db_dsn, inbox_min_gap_s=0.2, inbox_max_gap_s=0.3, time_budget_s=9
    )

    assert (answer["claimed"], answer["processed"]) == (2, 2), answer
    sent = first_parts(stubs)
    assert sent[1] - sent[0] >= 6.0, sent
    await assert_no_lease_left(conn)


async def test_a_call_ends_early_when_nothing_due_can_start_within_its_budget(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    gapped = await seed_campaign(conn, leads=2)
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) values ($1, 60, 60)",
        gapped.inbox_id,
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at, paced)
           values ($1, now() + interval '50 seconds', now() - interval '10 seconds', true)""",
        gapped.inbox_id,
    )
    now = datetime.now(UTC)  # a window that closed an hour ago, opening in 22 hours
    await seed_campaign(
        conn,
        leads=2,
        start_time=(now - timedelta(hours=2)).time(),
        end_time=(now - timedelta(hours=1)).time(),
        timezone="UTC",
    )

    answer = await one_call(make_settings, db_dsn, time_budget_s=30)

    # Its 30 s budget would have reached neither the slot (50 s) nor the window: not waited.
    assert answer["claimed"] == 0, answer
    assert answer["duration_ms"] < 15_000, answer
    assert (
        await conn.fetchval("select count(*) from campaign_messages where status = 'pending'") == 4
    )


async def test_a_shutdown_ends_a_call_waiting_for_a_slot(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs
) -> None:
    """SIGTERM while the call sleeps until a slot 20 s away: it answers at once, not then."""
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at, paced)
           values ($1, now() + interval '20 seconds', now() - interval '1 second', true)""",
        seeded.inbox_id,
    )
    service = ServiceProcess(
        {
            "DATABASE_URL": db_dsn,
            **stubs.env(),
            "CRON_SECRET": CRON_SECRET,
            "INBOX_MIN_GAP_S": "1",
            "INBOX_MAX_GAP_S": "1",
            "TIME_BUDGET_S": "40",
        }
    )
    service.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            call = asyncio.create_task(
                http.post(
                    service.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
            )
            await asyncio.sleep(2)  # the call claimed nothing and sleeps until the slot
            os.kill(service.pid, signal.SIGTERM)
            response = await call
    finally:
        service.stop()

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["claimed"] == 0, answer
    assert answer["duration_ms"] < 10_000, answer  # the slot was 20 s away
    assert (await conn.fetchval("select status from campaign_messages")) == "pending"
