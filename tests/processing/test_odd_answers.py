"""The database answering something the service cannot read (a function returning null, a
gateway's 200 that is not JSON) is a database error like any other: it never escapes a claim
round or the heartbeat with the batch it just claimed still under a lease."""

from __future__ import annotations

import asyncpg

from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Latency
from tests.processing.invariants import assert_ended_runs_completed, assert_no_lease_left
from tests.processing.test_bad_rows import loosen_schema
from tests.processing.test_leases import call, service_with
from tests.service import Service
from tests.sql.helpers import message_row, run_row
from tests.stubs import SettingsFactory, Stubs


async def test_a_fail_answer_the_service_cannot_read_strands_no_batch_mate(
    service: Service, conn: asyncpg.Connection
) -> None:
    await loosen_schema(conn)
    broken = await seed_campaign(conn, leads=1)
    fine = await seed_campaign(conn, leads=3)
    await conn.execute(
        "update campaign_configs set inbox_id = null where id = $1", broken.config_id
    )
    # The unworkable row is failed alone, and that write answers nothing readable.
    await conn.execute("alter function fail_campaign_message rename to fail_campaign_message_real")
    await conn.execute(
        """create function fail_campaign_message(p_message_id uuid, p_lock_token uuid,
             p_error text, p_retryable boolean default true) returns jsonb
           language sql security definer set search_path = public as $$ select null::jsonb $$"""
    )

    response = await service.process({"batch_size": 4})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["claimed"], body["processed"]) == (4, 3), body
    for message_id in fine.message_ids:
        assert (await message_row(conn, message_id))["status"] == "sent"
    await conn.execute("drop function fail_campaign_message(uuid, uuid, text, boolean)")
    await conn.execute("alter function fail_campaign_message_real rename to fail_campaign_message")
    # Only the row whose ending could not be recorded keeps its lease (it expires).
    broken_row = await message_row(conn, broken.message_ids[0])
    assert broken_row["status"] == "queued"
    await conn.execute(
        "update campaign_messages set status = 'failed', lock_token = null where id = $1",
        broken.message_ids[0],
    )
    await assert_no_lease_left(conn)
    assert (await run_row(conn, fine.run_id))["status"] == "completed"


async def test_a_heartbeat_answer_the_service_cannot_read_does_not_stop_the_wrap_up(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute(
        """create or replace function renew_campaign_leases(p_messages jsonb) returns jsonb
           language sql security definer set search_path = public as $$
             select '["not-a-message-id"]'::jsonb $$"""
    )
    stubs.openrouter.latency = Latency(fixed_ms=1200)  # each outlives a heartbeat beat

    async with service_with(db_dsn, make_settings)() as url:
        response = await call(url, {"batch_size": 2, "concurrency": 1})

    assert response.status_code == 200, response.text
    assert response.json()["processed"] == 2
    for message_id in seeded.message_ids:
        assert (await message_row(conn, message_id))["status"] == "sent"
    await assert_no_lease_left(conn)
    await assert_ended_runs_completed(conn)
