"""A slow message is never reclaimed while its worker is alive (the fenced heartbeat), and no
wait outlives the lease: a stale worker never sends a part that a new owner sends."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import httpx

from app.main import create_app
from app.processing.leases import LeaseKeeper
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Latency
from app.store.postgres import PostgresRpc
from app.store.store import Lease, Store
from tests.processing.invariants import assert_no_lease_left
from tests.sql.helpers import claim
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs

LEASE_S = 2

ServiceWith = Callable[..., AbstractAsyncContextManager[str]]


async def rival_claims(dsn: str, stop: asyncio.Event) -> list[str]:
    """Another worker that claims every stale lease it can see, as often as it can.

    It starts once the service has claimed everything, so only a stale lease is claimable.
    """
    conn = await asyncpg.connect(dsn)
    taken: list[str] = []
    try:
        while not stop.is_set():
            if await conn.fetchval(
                "select count(*) from campaign_messages where status = 'pending'"
            ):
                await asyncio.sleep(0.02)
                continue
            claimed = await conn.fetchval(
                "select get_and_lock_campaign_messages(p_batch_size => 10, "
                "p_lock_timeout_s => $1, p_worker => 'rival')",
                LEASE_S,
            )
            taken += [item["id"] for item in json.loads(claimed)]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return taken


def service_with(db_dsn: str, make_settings: SettingsFactory) -> ServiceWith:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        settings = make_settings(database_url=db_dsn, lock_timeout_s=LEASE_S, **overrides)
        with LoopbackServer(create_app(settings), lifespan=True) as server:
            yield server.url

    return start


async def call(url: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            url + "/process-queue",
            json=body,
            headers={"Authorization": f"Bearer {CRON_SECRET}"},
            timeout=60,
        )


async def test_a_message_waiting_longer_than_its_lease_is_not_reclaimed(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    stubs.openrouter.latency = Latency(fixed_ms=1200)  # 3 in a row: the last waits 2.4 s
    stop = asyncio.Event()
    rival = asyncio.create_task(rival_claims(db_dsn, stop))

    async with service_with(db_dsn, make_settings)() as url:
        response = await call(url, {"batch_size": 3, "concurrency": 1})
    stop.set()

    assert await rival == []
    assert response.json()["processed"] == 3
    rows = await conn.fetch("select status, retry_count from campaign_messages")
    assert [tuple(r) for r in rows] == [("sent", 0)] * 3
    assert sorted(stubs.send.delivered_keys()) == sorted(f"{m}:0" for m in seeded.message_ids)
    assert stubs.send.duplicate_keys == 0
    await assert_no_lease_left(conn)


async def test_a_delay_between_parts_longer_than_the_lease_sends_each_part_once(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    seeded = await seed_campaign(
        conn,
        leads=1,
        split_messages=True,
        max_split_parts=3,
        min_chars_to_split=50,
        delay_between_messages_ms=5000,
    )
    stop = asyncio.Event()
    rival = asyncio.create_task(rival_claims(db_dsn, stop))

    async with service_with(db_dsn, make_settings)() as url:
        response = await call(url, {})
    stop.set()

    assert await rival == []
    assert response.json()["processed"] == 1
    message_id = seeded.message_ids[0]
    assert stubs.send.delivered_keys() == [f"{message_id}:{i}" for i in range(3)]
    assert stubs.send.duplicate_keys == 0
    sent_at = [float(d["at"]) for d in stubs.send.deliveries]
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    # The product's 5 s is bounded by half a lease, never skipped.
    assert all(LEASE_S / 2 - 0.1 <= gap < LEASE_S for gap in gaps), gaps


async def test_a_message_claimed_again_by_the_same_call_keeps_only_its_new_lease(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """The first attempt lost its lease, and this call claimed the message again (a new lease)
    while that attempt was still running: the old attempt may send nothing, and its end does
    not drop the new lease (which the database still grants)."""
    await seed_campaign(conn, leads=1)
    keeper = LeaseKeeper(Store(rpc), lock_timeout_s=30, worker="w")
    [first] = await claim(rpc, batch=1)
    old = Lease(uuid.UUID(first["id"]), uuid.UUID(first["lock_token"]))
    keeper.hold([old], time.monotonic())
    await conn.execute(  # the lease expired and was claimed again: a new token
        "update campaign_messages set lock_token = gen_random_uuid(), locked_at = now() "
        "where id = $1",
        old.message_id,
    )
    token = await conn.fetchval(
        "select lock_token from campaign_messages where id = $1", old.message_id
    )
    new = Lease(old.message_id, token)
    keeper.hold([new], time.monotonic())

    assert await keeper.time_to_send(old, 10.0) is None
    keeper.release(old)  # the old attempt's end
    assert keeper.held == [new]
    left = await keeper.time_to_send(new, 10.0)
    assert left is not None
    assert left > 10.0
    await keeper.renew([old, new])  # a heartbeat with both: the old one is refused
    assert keeper.held == [new]


async def test_a_slot_taken_after_the_lease_expired_sends_nothing_a_rival_sends_once(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    """The worker's renewals fail while it waits for its inbox's slot (a database in trouble:
    the test database's renew_campaign_leases raises), so its lease expires before the slot
    opens. Taking the slot must not count as a renewal then: another worker claims the
    message again and sends it, and the first part goes out once."""
    seeded = await seed_campaign(conn, leads=1)
    message_id = seeded.message_ids[0]
    await conn.execute(
        """create or replace function renew_campaign_leases(p_messages jsonb) returns jsonb
           language plpgsql security definer set search_path = public
           as $$ begin raise exception 'renewals are failing'; end $$"""
    )
    stubs.send.latency = Latency(fixed_ms=1500)  # the first worker's send is still going on
    pacing = {"inbox_min_gap_s": 0.1, "inbox_max_gap_s": 0.2, "inbox_daily_cap": 0}
    one = {"batch_size": 1, "max_messages": 1, "time_budget_s": 6}

    async with (
        service_with(db_dsn, make_settings)(**pacing) as first,
        service_with(db_dsn, make_settings)(**pacing) as rival,
    ):
        # The inbox's slot opens in 2.9 s: within the claim's look-ahead, after a 2 s lease.
        await conn.execute(
            """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, paced)
               values ($1, clock_timestamp() + interval '2.9 s', true)""",
            seeded.inbox_id,
        )
        waiting = asyncio.create_task(call(first, one))
        for _ in range(500):  # polls the database, at most 10 s
            if waiting.done() or await conn.fetchval(
                "select exists (select 1 from campaign_inbox_pacing_state"
                " where last_slot_message_id = $1)",
                message_id,
            ):
                break
            await asyncio.sleep(0.02)
        # The first worker took the slot, or gave the message up: the rival claims it now.
        second = await call(rival, one)
        await waiting

    assert second.json()["processed"] == 1
    row = await conn.fetchrow(
        "select status, retry_count from campaign_messages where id = $1", message_id
    )
    assert (row["status"], row["retry_count"]) == ("sent", 1)  # claimed again once: a retry
    assert stubs.send.delivered_keys() == [f"{message_id}:0"]
    assert stubs.send.duplicate_keys == 0
    await assert_no_lease_left(conn)
