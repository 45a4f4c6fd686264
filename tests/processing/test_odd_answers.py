"""The database answering something the service cannot read (a function returning null, a
gateway's 200 that is not JSON) is a database error like any other: it never escapes a claim
round or the heartbeat with the batch it just claimed still under a lease."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.processing.claims import Claimer
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


async def test_a_message_whose_lease_was_lost_and_that_is_claimed_again_is_worked(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    """Another worker takes the lease (stale reclaim), then gives the message back (say, its
    budget ended); this call claims it again in a later round: the new lease is this call's,
    not the lost one's, so the message is sent, not left under it."""
    seeded = await seed_campaign(conn, leads=1)
    message_id = seeded.message_ids[0]
    stubs.openrouter.latency = Latency(fixed_ms=2500)  # several heartbeats per generation

    async def rival() -> None:
        other = await asyncpg.connect(db_dsn)
        try:
            while True:
                status = await other.fetchval(
                    "select status from campaign_messages where id = $1", message_id
                )
                if status == "generating":
                    break
                await asyncio.sleep(0.02)
            await other.execute(  # a rival's reclaim: a new token
                "update campaign_messages set lock_token = gen_random_uuid(), "
                "locked_at = now(), claimed_by = 'rival' where id = $1",
                message_id,
            )
            await asyncio.sleep(1.0)  # the heartbeat sees the lease lost
            await other.execute(  # the rival releases it, untouched
                "update campaign_messages set status = 'pending', lock_token = null, "
                "locked_at = null, claimed_by = null where id = $1",
                message_id,
            )
        finally:
            await other.close()

    rival_task = asyncio.create_task(rival())
    async with service_with(db_dsn, make_settings)(generate_timeout_s=10.0) as url:
        response = await call(url, {"batch_size": 1, "concurrency": 1, "time_budget_s": 30})
    await rival_task

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["claimed"], answer["processed"], answer["lease_lost"]) == (2, 1, 1), answer
    row = await message_row(conn, message_id)
    assert row["status"] == "sent"
    assert stubs.send.delivered_keys() == [f"{message_id}:0"]
    await assert_no_lease_left(conn)
    await assert_ended_runs_completed(conn)


async def test_lead_contexts_the_service_cannot_read_release_the_batch_not_skip_it(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await conn.execute(
        """create or replace function get_lead_contexts(
             p_lead_ids uuid[], p_message_ids uuid[] default null,
             p_reply_stop_days int default 30) returns jsonb
           language sql security definer set search_path = public
           as $$ select to_jsonb('<html>bad gateway</html>'::text) $$"""
    )

    body = (await service.process({"batch_size": 3})).json()

    assert (body["claimed"], body["released"], body["skipped"]) == (3, 3, 0)
    for message_id in seeded.message_ids:
        row = await message_row(conn, message_id)
        assert (row["status"], row["retry_count"]) == ("pending", 0)
    await assert_no_lease_left(conn)


async def test_a_bug_between_the_claim_and_the_pool_strands_nothing(
    service: Service, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug cannot be produced on purpose through the real parts: the context step is
    # replaced by one that raises, to stand in for any unexpected exception there.
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Claimer, "with_contexts", broken)
    seeded = await seed_campaign(conn, leads=3)

    response = await service.process({"batch_size": 3})

    assert response.status_code == 200
    assert (response.json()["claimed"], response.json()["released"]) == (3, 3)
    for message_id in seeded.message_ids:
        row = await message_row(conn, message_id)
        assert (row["status"], row["retry_count"]) == ("pending", 0)
    await assert_no_lease_left(conn)
