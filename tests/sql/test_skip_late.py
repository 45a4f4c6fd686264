"""mark_old_campaign_messages_as_skipped: bounded, per run, index-backed; runs it empties end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import message_row, run_row


async def skip_late(rpc: PostgresRpc, **extra: Any) -> int:
    args: dict[str, Any] = {"p_one_hour_ago": datetime.now(UTC) - timedelta(hours=1)}
    args.update(extra)
    return int(await rpc.call("mark_old_campaign_messages_as_skipped", args))


async def scan_counters(conn: asyncpg.Connection) -> dict[str, int]:
    """campaign_messages' sequential scans and index fetches, and each index's scans."""
    table = await conn.fetchrow(
        """select seq_scan, idx_tup_fetch from pg_stat_xact_user_tables
            where relname = 'campaign_messages'"""
    )
    assert table is not None
    indexes = await conn.fetch(
        """select indexrelid::regclass::text, pg_stat_get_xact_numscans(indexrelid)
             from pg_index where indrelid = 'campaign_messages'::regclass"""
    )
    return dict(table) | {name: scans for name, scans in indexes}


async def test_skips_at_most_the_limit_per_call_oldest_first(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    start = datetime.now(UTC) - timedelta(hours=5)
    seeded = await seed_campaign(
        conn, leads=10, first_scheduled_at=start, spacing=timedelta(minutes=1)
    )

    assert await skip_late(rpc, p_limit=4) == 4
    statuses = [(await message_row(conn, i))["status"] for i in seeded.message_ids]
    assert statuses == ["skipped"] * 4 + ["pending"] * 6
    assert (await run_row(conn, seeded.run_id))["status"] == "running"
    assert await skip_late(rpc, p_limit=4) == 4
    assert await skip_late(rpc, p_limit=4) == 2
    assert await skip_late(rpc, p_limit=4) == 0
    assert (await run_row(conn, seeded.run_id))["status"] == "completed"


async def test_the_limit_spans_runs(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    late = datetime.now(UTC) - timedelta(hours=3)
    runs = [await seed_campaign(conn, leads=3, first_scheduled_at=late) for _ in range(3)]

    assert await skip_late(rpc, p_limit=5) == 5
    assert await skip_late(rpc, p_limit=5) == 4
    for seeded in runs:
        assert (await run_row(conn, seeded.run_id))["status"] == "completed"


async def test_a_run_filter_skips_only_that_run(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    late = datetime.now(UTC) - timedelta(hours=3)
    mine = await seed_campaign(conn, leads=2, first_scheduled_at=late)
    other = await seed_campaign(conn, leads=2, first_scheduled_at=late)

    assert await skip_late(rpc, p_run_id=mine.run_id) == 2

    for message_id in other.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"
    assert (await run_row(conn, mine.run_id))["status"] == "completed"
    assert (await run_row(conn, other.run_id))["status"] == "running"


async def test_only_runs_left_without_work_complete(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    late = datetime.now(UTC) - timedelta(hours=3)
    emptied = await seed_campaign(conn, leads=2, first_scheduled_at=late)
    later_work = await seed_campaign(
        conn, leads=2, first_scheduled_at=late, spacing=timedelta(hours=4)
    )
    in_flight = await seed_campaign(conn, leads=2, first_scheduled_at=late)
    await conn.execute(
        "update campaign_messages set status = 'sending' where id = $1", in_flight.message_ids[1]
    )
    paused = await seed_campaign(conn, leads=2, first_scheduled_at=late, run_status="paused")

    assert await skip_late(rpc) == 4

    assert (await run_row(conn, emptied.run_id))["status"] == "completed"
    assert (await run_row(conn, emptied.run_id))["completed_at"] is not None
    assert (await run_row(conn, later_work.run_id))["status"] == "running"
    assert (await run_row(conn, in_flight.run_id))["status"] == "running"
    assert (await run_row(conn, paused.run_id))["status"] == "paused"
    for message_id in paused.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"


async def test_a_null_horizon_or_limit_skips_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=2, first_scheduled_at=datetime.now(UTC) - timedelta(hours=3))
    assert await skip_late(rpc, p_one_hour_ago=None) == 0
    assert await skip_late(rpc, p_limit=0) == 0
    assert await skip_late(rpc, p_limit=None) == 0


async def test_the_skip_reads_running_runs_through_the_per_run_index_never_the_paused_backlog(
    conn: asyncpg.Connection,
) -> None:
    # Postgres cannot EXPLAIN the statements inside a plpgsql function (no auto_explain in the
    # embedded server), so this reads what the real call did: the transaction's own scan
    # counters. Paused runs hold a large late backlog; running runs hold late messages too,
    # and history (sent messages). The call must read campaign_messages through the per-run
    # index only: no sequential scan, no walk of the cross-run due index, and about as many
    # rows fetched as it skips, not the backlog.
    late = datetime.now(UTC) - timedelta(hours=3)
    paused = [
        await seed_campaign(conn, leads=1, run_status="paused", first_scheduled_at=late)
        for _ in range(10)
    ]
    running = [await seed_campaign(conn, leads=1, first_scheduled_at=late) for _ in range(3)]
    bulk = """insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at, status)
              select r, gen_random_uuid(), '+5511900000000', $2::timestamptz - g * interval '1 s',
                     $4
                from unnest($1::uuid[]) r, generate_series(1, $3) g"""
    await conn.execute(bulk, [p.run_id for p in paused], late, 3000, "pending")
    await conn.execute(bulk, [r.run_id for r in running], late, 2000, "pending")
    await conn.execute(bulk, [r.run_id for r in running], late, 2000, "sent")
    await conn.execute("analyze")

    # The counters also hold this backend's earlier, not yet flushed, work: read them before
    # and after the call in one transaction (nothing is flushed inside it) and compare.
    async with conn.transaction():
        before = await scan_counters(conn)
        skipped = await conn.fetchval(
            "select mark_old_campaign_messages_as_skipped($1, p_limit => 60)",
            datetime.now(UTC) - timedelta(hours=1),
        )
        after = await scan_counters(conn)
    used = {name: after[name] - before[name] for name in after}

    assert skipped == 60
    assert used["seq_scan"] == 0
    assert used["idx_campaign_messages_atomic_selection"] > 0
    assert used["idx_campaign_messages_due"] == 0
    assert used["idx_tup_fetch"] < 500  # 60 skipped and a few probes, not 30,000 paused
    assert (
        await conn.fetchval("select count(*) from campaign_messages where status = 'skipped'") == 60
    )
    assert (
        await conn.fetchval(
            "select count(*) from campaign_messages where run_id = any($1::uuid[]) "
            "and status = 'pending'",
            [p.run_id for p in paused],
        )
        == 10 * 3001
    )
