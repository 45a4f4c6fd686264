"""The lease of a claimed message: renewed by its owner, released back to pending."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, make_stale, message_row
from tests.sql.messages import claim_one, send_all_parts, to_sending


def lease(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item["id"], "lock_token": item["lock_token"]}


async def renew(rpc: PostgresRpc, messages: Any) -> Any:
    return await rpc.call("renew_campaign_leases", {"p_messages": messages})


async def test_a_renewed_lease_is_not_reclaimed_as_stale(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=2)
    kept, lapsed = await claim(rpc, batch=2)
    for item in (kept, lapsed):
        await make_stale(conn, item["id"], minutes=10)

    assert await renew(rpc, [lease(kept)]) == [kept["id"]]

    reclaimed = await claim(rpc, batch=5, p_lock_timeout_s=60)
    assert [m["id"] for m in reclaimed] == [lapsed["id"]]  # the lease nobody renewed
    row = await message_row(conn, kept["id"])
    assert (row["status"], str(row["lock_token"]), row["retry_count"]) == (
        "queued",
        kept["lock_token"],
        0,
    )
    assert datetime.now(UTC) - row["locked_at"] < timedelta(seconds=30)


async def test_renewal_answers_only_the_leases_still_held(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=3)
    items = await claim(rpc, batch=3)
    await make_stale(conn, items[0]["id"], minutes=10)
    # items[0] is reclaimed by another worker: its old token no longer holds the lease.
    [stolen] = await claim(rpc, batch=1, p_lock_timeout_s=60)
    assert stolen["id"] == items[0]["id"]

    renewed = await renew(rpc, [lease(i) for i in items])

    assert sorted(renewed) == sorted(i["id"] for i in items[1:])


async def test_a_wrong_token_renews_nothing(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, item = await claim_one(conn, rpc)
    await make_stale(conn, item["id"], minutes=10)
    before = await message_row(conn, item["id"])

    assert await renew(rpc, [{"id": item["id"], "lock_token": str(uuid.uuid4())}]) == []

    assert await message_row(conn, item["id"]) == before


async def test_a_sent_message_is_not_renewed(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, item = await to_sending(conn, rpc)
    await send_all_parts(rpc, item)
    before = await message_row(conn, item["id"])
    assert str(before["lock_token"]) == item["lock_token"]  # a sent message keeps its token

    assert await renew(rpc, [lease(item)]) == []

    assert await message_row(conn, item["id"]) == before


@pytest.mark.parametrize(
    "messages",
    [
        None,
        {"id": "x"},
        "not a list",
        7,
        [],
        [None, 1, "x", [1], {}],
        [{"lock_token": "00000000-0000-0000-0000-000000000001"}],
        [{"id": "not-a-uuid", "lock_token": "also not"}],
        [{"id": 12, "lock_token": True}],
        [{"id": {"nested": 1}, "lock_token": [1]}],
    ],
    ids=repr,
)
async def test_malformed_input_renews_nothing_and_never_raises(
    conn: asyncpg.Connection, rpc: PostgresRpc, messages: Any
) -> None:
    _, item = await claim_one(conn, rpc)
    before = await message_row(conn, item["id"])
    assert await renew(rpc, messages) == []
    assert await message_row(conn, item["id"]) == before


async def test_malformed_elements_do_not_stop_the_good_ones(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, item = await claim_one(conn, rpc)
    messages = [
        "x",
        {"id": "not-a-uuid", "lock_token": item["lock_token"]},
        lease(item),
        lease(item),  # a repeated element renews once, is answered once
        {"id": item["id"]},
    ]
    assert await renew(rpc, messages) == [item["id"]]


async def test_renewal_waits_for_a_row_briefly_locked_elsewhere(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    # The owner must not lose its lease because some other transaction held the row for a
    # moment (no skip locked): the renewal waits for it.
    _, item = await claim_one(conn, rpc)
    other = await asyncpg.connect(db_dsn)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute("select 1 from campaign_messages where id = $1 for update", item["id"])
        renewal = asyncio.create_task(renew(rpc, [lease(item)]))
        await asyncio.sleep(0.3)
        assert not renewal.done()
        await transaction.commit()
        assert await asyncio.wait_for(renewal, 10) == [item["id"]]
    finally:
        await other.close()


async def test_concurrent_renewals_in_opposite_orders_do_not_deadlock(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=40)
    items = await claim(rpc, batch=40)
    forward = [lease(i) for i in items]
    backward = list(reversed(forward))

    answers = await asyncio.gather(*(renew(rpc, m) for m in [forward, backward] * 4))

    expected = sorted(i["id"] for i in items)
    assert all(sorted(a) == expected for a in answers)


async def test_release_with_a_past_not_before_is_not_claimable_at_once(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # A send window's opening computed in the past (clock skew, a slow call) must not make the
    # same messages be claimed and released over and over.
    await seed_campaign(conn, leads=2)
    items = await claim(rpc, batch=2)
    in_the_past = datetime.now(UTC) - timedelta(minutes=5)

    released = await rpc.call(
        "release_campaign_messages",
        {"p_messages": [lease(i) for i in items], "p_not_before": in_the_past},
    )

    assert released == 2
    assert await claim(rpc, batch=5) == []
    now = await conn.fetchval("select now()")
    for item in items:
        row = await message_row(conn, item["id"])
        assert row["status"] == "pending"
        assert row["scheduled_at"] > now
        assert row["scheduled_at"] - now <= timedelta(seconds=2)


async def test_release_with_not_before_now_is_still_in_the_future(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, item = await claim_one(conn, rpc)
    released = await rpc.call(
        "release_campaign_messages",
        {"p_messages": [lease(item)], "p_not_before": datetime.now(UTC)},
    )
    assert released == 1
    assert await claim(rpc) == []


async def test_release_skips_malformed_elements_and_never_raises(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, item = await claim_one(conn, rpc)
    messages = [
        "x",
        None,
        {"id": "not-a-uuid", "lock_token": item["lock_token"]},
        {"id": item["id"], "lock_token": "not-a-uuid"},
        {"id": 5},
        lease(item),
        lease(item),
    ]
    released = await rpc.call("release_campaign_messages", {"p_messages": messages})
    assert released == 1
    assert (await message_row(conn, item["id"]))["status"] == "pending"


@pytest.mark.parametrize("answer", ["ok", "gap"])
async def test_taking_a_slot_renews_the_lease(
    conn: asyncpg.Connection, rpc: PostgresRpc, answer: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, batch=1)
    if answer == "gap":  # the inbox's slot is a minute away: the worker waits, renewed
        await conn.execute(
            """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at)
               values ($1, now() + interval '1 minute')""",
            seeded.inbox_id,
        )
    await make_stale(conn, item["id"], minutes=1)  # renewed a minute ago: a 2-minute lease
    slot = {"p_min_gap_s": 30, "p_max_gap_s": 30, "p_daily_cap": 0, "p_lock_timeout_s": 120}

    taken = await rpc.call("take_inbox_slot", {**lease_args(item), **slot})

    assert (taken["reason"] or "ok") == answer
    # Renewed now: a claim with that lease finds nothing stale.
    assert await claim(rpc, batch=5, p_lock_timeout_s=30) == []


async def test_taking_a_slot_refuses_an_expired_lease(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Not renewed for longer than the caller's lease: another worker may claim the message
    at any moment, so its worker must not send (nor count the answer as a renewal)."""
    await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, batch=1)
    await make_stale(conn, item["id"], minutes=3)
    before = await message_row(conn, item["id"])
    slot = {"p_min_gap_s": 0, "p_max_gap_s": 0, "p_daily_cap": 0, "p_lock_timeout_s": 120}

    taken = await rpc.call("take_inbox_slot", {**lease_args(item), **slot})

    assert (taken["ok"], taken["reason"]) == (False, "lock_lost")
    assert await message_row(conn, item["id"]) == before  # not renewed
    [again] = await claim(rpc, batch=5, p_lock_timeout_s=120)  # a rival claims it again
    assert again["id"] == item["id"]


def lease_args(item: dict[str, Any]) -> dict[str, Any]:
    return {"p_message_id": uuid.UUID(item["id"]), "p_lock_token": uuid.UUID(item["lock_token"])}
