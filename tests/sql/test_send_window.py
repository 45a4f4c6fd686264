"""The send window in SQL (022_send_window.sql) agrees with the service's (window.py), and
the next start (023_next_start.sql) names the soonest instant a claim could take work."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg

from app.processing.window import next_opening
from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import hour_ago

WINDOWS = [
    (time(9), time(18)),
    (time(22), time(6)),  # overnight
    (time(0), time(23, 59, 59)),
    (time(9), time(9)),  # equal bounds: no window
]
ZONES = ["America/Sao_Paulo", "Asia/Tokyo", "UTC", "Not/AZone"]


async def test_the_opening_is_the_services_at_every_hour(conn: asyncpg.Connection) -> None:
    day = datetime(2026, 11, 25, tzinfo=UTC)  # no zone here changes its offset near it
    for zone in ZONES:
        for start, end in WINDOWS:
            for minutes in range(0, 24 * 60, 20):
                at = day + timedelta(minutes=minutes)
                sql = await conn.fetchval(
                    "select cq_window_opening($1, $2, $3, $4)", start, end, zone, at
                )
                assert sql == next_opening(at, start, end, zone), (zone, start, end, at)


async def test_the_horizon_counts_only_open_window_time(conn: asyncpg.Connection) -> None:
    at = datetime(2026, 11, 25, 15, 10, tzinfo=UTC)  # 12:10 in Sao Paulo (UTC-3)

    async def horizon(start: time, end: time, minutes: int) -> datetime:
        value: datetime = await conn.fetchval(
            "select cq_open_horizon($1, $2, 'America/Sao_Paulo', $3, $4)",
            start,
            end,
            at,
            at - timedelta(minutes=minutes),
        )
        return value

    # Open since 09:00 local: 30 minutes back is inside today's opening.
    assert await horizon(time(9), time(18), 30) == at - timedelta(minutes=30)
    # Opened at 12:00 local: 10 minutes today, the other 50 before yesterday's 18:00 close.
    assert await horizon(time(12), time(18), 60) == datetime(2026, 11, 24, 20, 10, tzinfo=UTC)
    # An overnight window closed since 06:00: its hour back ends at 06:00 local, 05:00 local.
    assert await horizon(time(22), time(6), 60) == datetime(2026, 11, 25, 8, tzinfo=UTC)
    # No window: the horizon as given.
    assert await horizon(time(9), time(9), 60) == at - timedelta(minutes=60)


async def next_start(rpc: PostgresRpc, **pacing: object) -> float | None:
    args = {"p_one_hour_ago": hour_ago(), "p_lookahead_s": 3.0, **pacing}
    value = await rpc.call("campaign_queue_next_start", args)
    return None if value is None else float(value)


async def test_the_next_start_is_now_the_slot_the_window_or_none(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    assert await next_start(rpc) is None  # nothing due

    gapped = await seed_campaign(conn, leads=2)
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at, paced)
           values ($1, now() + interval '40 seconds', now() - interval '5 seconds', true)""",
        gapped.inbox_id,
    )
    gap = {"p_min_gap_s": 20.0, "p_max_gap_s": 60.0}
    # The slot opens in 40 s; the claim takes it 3 s (its look-ahead) earlier.
    assert 36.0 < (await next_start(rpc, **gap) or 0) <= 37.0
    # Pacing off for this inbox (no override, settings 0): due now.
    assert await next_start(rpc) == 0.0

    now = datetime.now(UTC)
    closed = await seed_campaign(
        conn,
        leads=1,
        start_time=(now + timedelta(seconds=20)).time(),
        end_time=(now + timedelta(hours=1)).time(),
        timezone="UTC",
    )
    # The closed window opens in 20 s: sooner than the slot.
    assert 18.0 < (await next_start(rpc, **gap) or 0) <= 20.0
    # Another run's filter: only that run counts.
    only = await next_start(rpc, p_run_id=gapped.run_id, **gap)
    assert only is not None
    assert only > 36.0
    await conn.execute("update campaign_runs set status = 'paused' where id = $1", closed.run_id)
    assert (await next_start(rpc, **gap) or 0) > 36.0
