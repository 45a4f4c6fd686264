"""Provider outages: recorded by the service, discounted from the lateness horizon."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row
from tests.sql.waiting import connection, wait_until_blocked

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


async def outages(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch("select * from campaign_queue_outages order by id"))


async def add_outage(
    conn: asyncpg.Connection, started_ago: timedelta, ended_ago: timedelta | None
) -> None:
    """An outage at fixed times relative to now (the tests cannot wait for hours)."""
    await conn.execute(
        """insert into campaign_queue_outages (started_at, ended_at, reason)
           values (now() - $1::interval, now() - $2::interval, 'test')""",
        started_ago,
        ended_ago,
    )


async def horizon(
    conn: asyncpg.Connection,
    skip_after: timedelta,
    spans: list[tuple[timedelta, timedelta | None]],
) -> tuple[datetime, datetime]:
    """(now, effective horizon) with exactly these outages (started, ended ago; None: open).

    One transaction, so now() is the same instant for the outages and the horizon.
    """
    async with conn.transaction():
        await conn.execute("delete from campaign_queue_outages")
        for started_ago, ended_ago in spans:
            await add_outage(conn, started_ago, ended_ago)
        now = await conn.fetchval("select now()")
        value = await conn.fetchval(
            "select campaign_queue_effective_horizon(now() - $1::interval)", skip_after
        )
    return now, value


async def test_a_reason_opens_one_outage_and_null_closes_it(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    assert await rpc.call("record_provider_outage", {}) is False  # nothing open: nothing to do
    assert await outages(conn) == []

    assert await rpc.call("record_provider_outage", {"p_reason": "auth: 401 openrouter"}) is True
    [first] = await outages(conn)
    assert (first["reason"], first["ended_at"]) == ("auth: 401 openrouter", None)

    assert await rpc.call("record_provider_outage", {"p_reason": "5 failures in a row"}) is True
    assert await outages(conn) == [first]  # the open one is kept as it was

    assert await rpc.call("record_provider_outage", {"p_reason": None}) is False
    [closed] = await outages(conn)
    assert closed["ended_at"] is not None
    assert closed["ended_at"] >= closed["started_at"]
    assert await rpc.call("record_provider_outage", {}) is False
    assert len(await outages(conn)) == 1

    assert await rpc.call("record_provider_outage", {"p_reason": "credit: 402"}) is True
    rows = await outages(conn)
    assert [r["ended_at"] is None for r in rows] == [False, True]


async def test_at_most_one_outage_is_open_even_when_two_callers_open_one_at_once(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    async with connection(db_dsn) as first, connection(db_dsn) as second:
        opening = first.transaction()
        await opening.start()
        assert await first.fetchval("select record_provider_outage('a')") is True
        other = asyncio.create_task(second.fetchval("select record_provider_outage('b')"))
        await wait_until_blocked(conn, second.get_server_pid())
        await opening.commit()
        assert await other is True

    rows = await outages(conn)
    assert [(r["reason"], r["ended_at"]) for r in rows] == [("a", None)]
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("insert into campaign_queue_outages (reason) values ('c')")


async def test_closing_forgets_outages_that_ended_more_than_a_week_ago(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await add_outage(conn, timedelta(days=10), timedelta(days=9))
    await add_outage(conn, timedelta(days=6, hours=1), timedelta(days=6))
    await rpc.call("record_provider_outage", {"p_reason": "5 failures in a row"})
    await rpc.call("record_provider_outage", {"p_reason": None})

    ends = [r["ended_at"] for r in await outages(conn)]
    assert len(ends) == 2
    assert all(e > datetime.now(UTC) - timedelta(days=7) for e in ends)


async def test_without_outages_the_horizon_is_the_one_given(conn: asyncpg.Connection) -> None:
    now, value = await horizon(conn, HOUR, [])
    assert value == now - HOUR
    # One that ended long enough ago changes nothing.
    now, value = await horizon(conn, HOUR, [(5 * HOUR, 4 * HOUR)])
    assert value == now - HOUR
    assert await conn.fetchval("select campaign_queue_effective_horizon(null)") is None
    async with conn.transaction():
        future = await conn.fetchval("select now() + interval '1 minute'")
        assert await conn.fetchval("select campaign_queue_effective_horizon($1)", future) == future


async def test_the_horizon_discounts_outage_time(conn: asyncpg.Connection) -> None:
    # Open since 2 h: the horizon stays where it was when the outage began.
    now, value = await horizon(conn, HOUR, [(2 * HOUR, None)])
    assert value == now - 3 * HOUR

    # Ended 30 min ago: 30 min of normal time since, 30 more needed before it started.
    now, value = await horizon(conn, HOUR, [(2 * HOUR, 30 * MINUTE)])
    assert value == now - 2 * HOUR - 30 * MINUTE

    # Two outages, 1 h and 10 min long: 80 + 30 min of normal time, then 10 before the first.
    now, value = await horizon(conn, 2 * HOUR, [(3 * HOUR, 2 * HOUR), (90 * MINUTE, 80 * MINUTE)])
    assert value == now - 190 * MINUTE

    # Overlapping rows count their union once: [3 h, 30 min] ago.
    now, value = await horizon(conn, HOUR, [(3 * HOUR, HOUR), (2 * HOUR, 30 * MINUTE)])
    assert value == now - 3 * HOUR - 30 * MINUTE

    # A long skip horizon: a day of normal time, plus the hour-long outage inside it.
    now, value = await horizon(conn, timedelta(days=1), [(2 * HOUR, HOUR)])
    assert value == now - timedelta(hours=25)


async def test_messages_held_back_by_an_outage_are_not_late_and_are_claimed_after_it(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    held_back = await seed_campaign(conn, leads=3, first_scheduled_at=now - 90 * MINUTE)
    before = await seed_campaign(conn, leads=1, first_scheduled_at=now - 3 * HOUR - 10 * MINUTE)
    assert await rpc.call("record_provider_outage", {"p_reason": "auth: 401 openrouter"})
    await conn.execute("update campaign_queue_outages set started_at = now() - interval '2 hours'")

    def skip_args() -> dict[str, datetime]:
        return {"p_one_hour_ago": datetime.now(UTC) - HOUR}

    # During the outage: only the message that was late before it began is skipped.
    assert await rpc.call("mark_old_campaign_messages_as_skipped", skip_args()) == 1
    assert (await message_row(conn, before.message_ids[0]))["status"] == "skipped"
    # Right after it closes: the held-back messages are still not late, and are claimed.
    assert await rpc.call("record_provider_outage", {"p_reason": None}) is False
    assert await rpc.call("mark_old_campaign_messages_as_skipped", skip_args()) == 0
    claimed = await claim(rpc, batch=10)
    assert sorted(m["id"] for m in claimed) == sorted(str(i) for i in held_back.message_ids)

    # Once they have been due for an hour of normal time (the outage ended 2 h ago), they are.
    await rpc.call("release_campaign_messages", {"p_messages": claimed})
    await conn.execute(
        """update campaign_queue_outages
              set started_at = started_at - interval '2 hours',
                  ended_at = ended_at - interval '2 hours'"""
    )
    assert await claim(rpc, batch=10) == []
    assert await rpc.call("mark_old_campaign_messages_as_skipped", skip_args()) == 3
