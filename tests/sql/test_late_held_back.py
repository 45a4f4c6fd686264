"""Late means due for longer than the skip horizon while the inbox could have sent it
(docs/architecture.md, "Pacing"): time held back by a closed send window or by a gap never
counts, whatever the backlog's size, the gap or the window's length; an inbox that could send
and was not served still has its backlog skipped.

Windows are times of day in UTC put around the test's own clock (a window may run overnight),
so each test holds at any hour. Skip horizon: 30 minutes, as in the issue's measurement.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim

SKIP_AFTER = timedelta(minutes=30)
BACKLOG = 10_000


def time_of_day(at: datetime) -> time:
    return at.astimezone(UTC).time().replace(microsecond=0)


async def skip_late(rpc: PostgresRpc) -> int:
    args = {"p_one_hour_ago": datetime.now(UTC) - SKIP_AFTER, "p_limit": 5000}
    return int(await rpc.call("mark_old_campaign_messages_as_skipped", args))


async def seed_backlog(
    conn: asyncpg.Connection, scheduled_at: datetime, n: int = BACKLOG, **window: Any
) -> SeededCampaign:
    """One run with `n` pending messages all due at `scheduled_at`."""
    seeded = await seed_campaign(conn, leads=1, first_scheduled_at=scheduled_at, **window)
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at)
           select $1, gen_random_uuid(), '+5511' || lpad(g::text, 9, '0'), $2
             from generate_series(2, $3::int) g""",
        seeded.run_id,
        scheduled_at,
        n,
    )
    return seeded


async def pace(
    conn: asyncpg.Connection,
    inbox_id: uuid.UUID,
    *,
    gap_s: float,
    last_slot_ago: timedelta,
    next_slot_in: timedelta,
) -> None:
    """The inbox's own gap, and its state as take_inbox_slot leaves it: a slot taken, the next
    one set."""
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) values ($1, $2, $2)",
        inbox_id,
        gap_s,
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, last_slot_at, next_slot_at, paced)
           values ($1, now() - $2::interval, now() + $3::interval, true)""",
        inbox_id,
        last_slot_ago,
        next_slot_in,
    )


async def pending(conn: asyncpg.Connection, run_id: uuid.UUID) -> int:
    return int(
        await conn.fetchval(
            "select count(*) from campaign_messages where run_id = $1 and status = 'pending'",
            run_id,
        )
    )


async def test_a_backlog_waiting_for_its_window_overnight_is_not_skipped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """A 9-hour window that closed 14 hours ago and opens in an hour; the inbox (20 s gap)
    was served until it closed; 10,000 messages queued while it was open."""
    now = datetime.now(UTC)
    seeded = await seed_backlog(
        conn,
        now - timedelta(hours=20),
        start_time=time_of_day(now + timedelta(hours=1)),
        end_time=time_of_day(now + timedelta(hours=10)),
        timezone="UTC",
    )
    await pace(
        conn,
        seeded.inbox_id,
        gap_s=20,
        last_slot_ago=timedelta(hours=14, seconds=5),
        next_slot_in=-timedelta(hours=14) + timedelta(seconds=15),
    )

    assert await skip_late(rpc) == 0
    assert await skip_late(rpc) == 0
    assert await claim(rpc, 5, p_min_gap_s=20.0, p_max_gap_s=60.0, p_lookahead_s=3.0) == []
    assert await pending(conn, seeded.run_id) == BACKLOG

    # The window opens: the claim takes the oldest message at the inbox's pace (one per gap),
    # and still nothing is late.
    await conn.execute(
        "update campaign_configs set start_time = $2 where id = $1",
        seeded.config_id,
        time_of_day(now - timedelta(minutes=1)),
    )
    assert await skip_late(rpc) == 0
    claimed = await claim(rpc, 5, p_min_gap_s=20.0, p_max_gap_s=60.0, p_lookahead_s=3.0)
    assert [m["run_id"] for m in claimed] == [str(seeded.run_id)]
    assert await pending(conn, seeded.run_id) == BACKLOG - 1


async def test_a_gap_longer_than_the_horizon_holds_the_backlog_while_its_slot_is_ahead(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """The README's advice for a new number with a short horizon: a 90-minute gap (here), a
    30-minute horizon. The last slot was 70 minutes ago; the next opens in 20 minutes."""
    seeded = await seed_backlog(conn, datetime.now(UTC) - timedelta(hours=3))
    await pace(
        conn,
        seeded.inbox_id,
        gap_s=5400,
        last_slot_ago=timedelta(minutes=70),
        next_slot_in=timedelta(minutes=20),
    )

    assert await skip_late(rpc) == 0
    assert await skip_late(rpc) == 0
    assert await pending(conn, seeded.run_id) == BACKLOG


async def test_a_backlog_the_window_let_through_but_nobody_served_is_skipped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Lateness still works: the window has been open for an hour and the inbox (no gap)
    could have sent all along; messages due since before the opening are late."""
    now = datetime.now(UTC)
    seeded = await seed_backlog(
        conn,
        now - timedelta(hours=5),
        n=50,
        start_time=time_of_day(now - timedelta(hours=1)),
        end_time=time_of_day(now + timedelta(hours=8)),
        timezone="UTC",
    )
    fresh = await seed_campaign(
        conn,
        leads=2,
        first_scheduled_at=now - timedelta(minutes=10),
        inbox_id=seeded.inbox_id,
    )

    assert await skip_late(rpc) == 50
    assert await pending(conn, seeded.run_id) == 0
    assert await pending(conn, fresh.run_id) == 2


async def test_a_window_that_just_opened_does_not_make_the_night_late(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Opened 10 minutes ago after a 15-hour night: messages queued during the night have
    waited only 10 minutes of open window."""
    now = datetime.now(UTC)
    seeded = await seed_backlog(
        conn,
        now - timedelta(hours=5),
        n=50,
        start_time=time_of_day(now - timedelta(minutes=10)),
        end_time=time_of_day(now + timedelta(hours=8, minutes=50)),
        timezone="UTC",
    )

    assert await skip_late(rpc) == 0
    assert await pending(conn, seeded.run_id) == 50
    assert len(await claim(rpc, 5)) == 5


async def test_an_inbox_that_could_send_but_was_not_served_has_its_backlog_skipped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """A paced inbox (40 s gap) whose last slot was three hours ago: it could have sent for
    hours (the scheduler stopped); its backlog due four hours ago is late."""
    seeded = await seed_backlog(conn, datetime.now(UTC) - timedelta(hours=4), n=120)
    await pace(
        conn,
        seeded.inbox_id,
        gap_s=40,
        last_slot_ago=timedelta(hours=3),
        next_slot_in=-timedelta(hours=3) + timedelta(seconds=40),
    )

    assert await skip_late(rpc) == 120
    assert await pending(conn, seeded.run_id) == 0


async def test_opening_the_window_by_editing_the_config_does_not_make_the_night_late(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Found in review: the horizon read the past through the config's window as it is now,
    so an operator who opened the window by editing it (clearing it: send around the clock;
    or moving its start earlier) turned the closed night behind the backlog into open time,
    and the next call skipped the whole backlog as late. A window's change is recorded
    (campaign_configs.window_changed_at) and no open time before it counts."""
    now = datetime.now(UTC)
    seeded = await seed_backlog(
        conn,
        now - timedelta(hours=5),
        n=50,
        start_time=time_of_day(now + timedelta(hours=1)),
        end_time=time_of_day(now + timedelta(hours=10)),
        timezone="UTC",
    )
    assert await skip_late(rpc) == 0

    await conn.execute(
        "update campaign_configs set start_time = null, end_time = null where id = $1",
        seeded.config_id,
    )

    assert await skip_late(rpc) == 0
    assert await pending(conn, seeded.run_id) == 50
    claimed = await rpc.call(
        "get_and_lock_campaign_messages",
        {"p_batch_size": 5, "p_one_hour_ago": datetime.now(UTC) - SKIP_AFTER},
    )
    assert len(claimed) == 5  # not held out of the claim as late either


async def test_a_window_changed_longer_ago_than_the_horizon_counts_its_open_time_again(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Lateness still works after a change: open time since it counts like any other."""
    now = datetime.now(UTC)
    seeded = await seed_backlog(conn, now - timedelta(hours=5), n=50)
    await conn.execute(
        "update campaign_configs set window_changed_at = $2 where id = $1",
        seeded.config_id,
        now - SKIP_AFTER - timedelta(minutes=1),
    )

    assert await skip_late(rpc) == 50
