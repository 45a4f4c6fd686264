"""Runs paused for their inbox say why and come back; logs survive a killed call; failures
are logged with their cause; a key or credit error alerts; a hung-up caller's work ends."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Fault, Latency
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service
from tests.sql.helpers import run_row
from tests.stubs import CRON_SECRET, SettingsFactory


async def statuses(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("select status from campaign_messages")
    return Counter(r["status"] for r in rows)


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


async def test_a_run_paused_for_its_inbox_names_the_status_it_saw(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    service.stubs.openrouter.latency = Latency(fixed_ms=400)

    call = asyncio.create_task(service.process())

    async def generating() -> bool:
        return service.stubs.openrouter.requests >= 1

    await wait_for(generating)
    await conn.execute("update inboxes set status = 'qr_code_expired'")
    body = (await call).json()

    assert body["paused"] == 1
    run = await run_row(conn, seeded.run_id)
    assert run["status"] == "paused"
    assert run["error_message"] == "inbox not connected (status: qr_code_expired)"
    assert await statuses(conn) == Counter({"pending": 1})
    assert service.stubs.send.requests == 0


async def test_a_run_paused_for_its_inbox_resumes_when_it_reconnects(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2, inbox_status="disconnected")
    first = (await service.process()).json()
    assert first["paused"] == 2
    assert (await run_row(conn, seeded.run_id))["status"] == "paused"

    still_down = (await service.process()).json()
    assert still_down["claimed"] == 0

    await conn.execute("update inboxes set status = 'connected'")
    back = (await service.process()).json()

    assert back["processed"] == 2
    assert (await run_row(conn, seeded.run_id))["status"] == "completed"


async def test_a_run_paused_by_a_person_is_not_resumed(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute("select pause_campaign_run($1, 'paused from the UI')", seeded.run_id)
    body = (await service.process()).json()
    assert body["claimed"] == 0
    assert (await run_row(conn, seeded.run_id))["status"] == "paused"


async def test_campaign_logs_are_written_per_claim_round(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    service.stubs.openrouter.latency = Latency(fixed_ms=600)

    call = asyncio.create_task(service.process({"batch_size": 1, "concurrency": 1}))

    async def second_generating() -> bool:
        return service.stubs.openrouter.requests >= 2

    await wait_for(second_generating)
    logged_mid_call = await conn.fetchval(
        "select count(*) from campaign_logs where step_name = 'sent' and message_id = $1",
        seeded.message_ids[0],
    )
    assert not call.done()
    assert (await call).json()["processed"] == 2
    assert logged_mid_call == 1


async def test_failures_are_logged_with_their_cause(
    service: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_campaign(conn, leads=1)
    service.stubs.send.faults.script.extend([Fault.SERVER_ERROR] * 3)
    await service.process()
    await conn.execute("update campaign_messages set scheduled_at = now() - interval '1s'")
    service.stubs.send.faults.ratios = {Fault.INVALID_NUMBER: 1.0}
    await conn.execute("update campaign_messages set retry_count = 3")
    await service.process()

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    retried = [x for x in lines if x.get("step") == "retry"]
    failed = [x for x in lines if x.get("step") == "failed"]
    assert [x["severity"] for x in retried] == ["WARNING"]
    assert "HTTP 500" in retried[0]["error"]
    assert [x["severity"] for x in failed] == ["ERROR"]
    assert "HTTP 400" in failed[0]["error"]


async def test_a_key_or_credit_error_answers_502_and_releases(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=4)
    service.stubs.openrouter.faults.ratios = {Fault.STATUS: 1.0}
    service.stubs.openrouter.faults.status = 402

    response = await service.process({"concurrency": 1, "batch_size": 2})

    assert response.status_code == 502
    body = response.json()
    assert body["success"] is False
    assert "402" in body["circuit_open"]
    assert (body["failed"], body["released"], body["processed"]) == (0, body["claimed"], 0)
    assert await statuses(conn) == Counter({"pending": 4})
    await assert_no_lease_left(conn)
    outage = await conn.fetchval(
        "select count(*) from campaign_queue_outages where ended_at is null"
    )
    assert outage == 1

    service.stubs.openrouter.faults.ratios = {}
    healthy = await service.process()
    assert (healthy.status_code, healthy.json()["circuit_open"]) == (200, None)
    assert healthy.json()["processed"] == 4
    outage = await conn.fetchval(
        "select count(*) from campaign_queue_outages where ended_at is null"
    )
    assert outage == 0


async def test_the_work_ends_when_the_caller_hangs_up(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=3)
    service.stubs.openrouter.latency = Latency(fixed_ms=500)

    with pytest.raises(httpx.ReadTimeout):
        async with httpx.AsyncClient() as http:
            await http.post(
                service.url + "/process-queue",
                json={"concurrency": 1},
                headers={"Authorization": f"Bearer {CRON_SECRET}"},
                timeout=0.2,
            )

    async def all_sent() -> bool:
        return await statuses(conn) == Counter({"sent": 3})

    await wait_for(all_sent)
    await assert_no_lease_left(conn)


async def test_with_pacing_on_an_empty_queue_answers_at_once(
    make_settings: SettingsFactory, db_dsn: str
) -> None:
    """A paced call waits for slots only while there is paced work; an idle one ends."""
    settings = make_settings(
        database_url=db_dsn, inbox_min_gap_s=20, inbox_max_gap_s=60, inbox_daily_cap=300
    )
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                server.url + "/process-queue",
                json={"time_budget_s": 30},
                headers={"Authorization": f"Bearer {CRON_SECRET}"},
                timeout=60,
            )
    assert response.json()["claimed"] == 0
    assert response.json()["duration_ms"] < 10_000  # not the 30 s budget


async def test_a_slot_past_the_budget_releases_the_message_instead_of_waiting(
    make_settings: SettingsFactory, db_dsn: str, conn: asyncpg.Connection
) -> None:
    """A reclaimed lease may carry a slot a whole gap away: the call does not outlive its
    budget waiting for it; the message goes back untouched for a later call."""
    seeded = await seed_campaign(conn, leads=1)
    # A worker claimed it and died; meanwhile another message of the inbox took its slot.
    await conn.fetchval("select get_and_lock_campaign_messages(p_batch_size => 1)")
    await conn.execute("update campaign_messages set locked_at = now() - interval '11 minutes'")
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) values ($1, 40, 60)",
        seeded.inbox_id,
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at)
           values ($1, now() + interval '30 seconds')""",
        seeded.inbox_id,
    )
    settings = make_settings(
        database_url=db_dsn, inbox_min_gap_s=20, inbox_max_gap_s=60, inbox_daily_cap=300
    )
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                server.url + "/process-queue",
                json={"time_budget_s": 3},
                headers={"Authorization": f"Bearer {CRON_SECRET}"},
                timeout=60,
            )
    body = response.json()
    assert (body["claimed"], body["paused"], body["processed"]) == (1, 1, 0)
    assert body["duration_ms"] < 10_000  # not the 30 s until the slot
    row = await conn.fetchrow("select status, lock_token from campaign_messages")
    assert (row["status"], row["lock_token"]) == ("pending", None)
