"""get_and_lock_campaign_messages and mark_old_campaign_messages_as_skipped, in Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc, init_connection
from tests.sql.helpers import claim, make_stale, message_row, run_row
from tests.sql.waiting import connection, wait_until_blocked


async def test_four_connections_claim_every_message_exactly_once(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    seeded = await seed_campaign(conn, leads=200)
    claimed: list[str] = []

    async def worker(name: str) -> None:
        c = await asyncpg.connect(db_dsn)
        await init_connection(c)
        try:
            while True:
                batch = await c.fetchval(
                    "select get_and_lock_campaign_messages(p_batch_size => 7, p_worker => $1)",
                    name,
                )
                if not batch:
                    return
                claimed.extend(m["id"] for m in batch)
        finally:
            await c.close()

    await asyncio.gather(*(worker(f"w{i}") for i in range(4)))

    counts = Counter(claimed)
    assert len(counts) == 200
    assert set(counts.values()) == {1}
    assert set(counts) == {str(i) for i in seeded.message_ids}
    statuses = await conn.fetch("select distinct status from campaign_messages")
    assert [r["status"] for r in statuses] == ["queued"]


async def test_claim_returns_lease_run_and_config(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1, split_messages=True, model="test/model")
    [item] = await claim(rpc, p_worker="worker-a")

    assert item["id"] == str(seeded.message_ids[0])
    assert item["status"] == "queued"
    uuid.UUID(item["lock_token"])
    assert item["run"] == {
        "id": str(seeded.run_id),
        "status": "running",
        "config_id": str(seeded.config_id),
    }
    config = item["config"]
    assert config["inbox_id"] == str(seeded.inbox_id)
    assert config["split_messages"] is True
    assert config["model"] == "test/model"
    assert config["inbox_status"]["connected"] is True
    assert config["splitter"]["min_chars_to_split"] == 150
    row = await message_row(conn, seeded.message_ids[0])
    assert row["claimed_by"] == "worker-a"
    assert row["locked_at"] is not None


async def test_only_due_messages_of_running_runs_within_the_horizon_are_claimed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    due = await seed_campaign(
        conn, leads=3, first_scheduled_at=now - timedelta(minutes=30), spacing=timedelta(minutes=5)
    )
    future = await seed_campaign(conn, leads=2, first_scheduled_at=now + timedelta(minutes=5))
    paused = await seed_campaign(conn, leads=2, run_status="paused")
    too_old = await seed_campaign(conn, leads=2, first_scheduled_at=now - timedelta(hours=2))

    claimed = await claim(rpc, batch=50)

    ids = [m["id"] for m in claimed]
    assert ids == [str(i) for i in due.message_ids]  # exactly these, in scheduled order
    scheduled = [m["scheduled_at"] for m in claimed]
    assert scheduled == sorted(scheduled)
    for other in (future, paused, too_old):
        for message_id in other.message_ids:
            assert (await message_row(conn, message_id))["status"] == "pending"


async def test_claim_limited_to_one_run(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    first = await seed_campaign(conn, leads=3)
    second = await seed_campaign(conn, leads=3)

    claimed = await claim(rpc, batch=10, p_run_id=second.run_id)

    assert {m["id"] for m in claimed} == {str(i) for i in second.message_ids}
    for message_id in first.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"


async def test_stale_lease_is_reclaimed_keeping_its_progress(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [first] = await claim(rpc)
    await conn.execute(
        """update campaign_messages
              set status = 'sending', generated_message = 'Olá! Texto já gerado.',
                  message_parts = '["Olá!", "Texto já gerado."]', parts_sent = 1
            where id = $1""",
        seeded.message_ids[0],
    )

    assert await claim(rpc) == []  # a live lease is not claimable
    await make_stale(conn, seeded.message_ids[0], minutes=11)
    [again] = await claim(rpc, p_lock_timeout_s=600)

    assert again["id"] == first["id"]
    assert again["lock_token"] != first["lock_token"]
    assert again["status"] == "queued"
    assert again["retry_count"] == 1
    assert again["generated_message"] == "Olá! Texto já gerado."
    assert again["message_parts"] == ["Olá!", "Texto já gerado."]
    assert again["parts_sent"] == 1


async def test_lease_younger_than_the_timeout_is_not_reclaimed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await claim(rpc)
    await make_stale(conn, seeded.message_ids[0], minutes=9)
    assert await claim(rpc, p_lock_timeout_s=600) == []


async def test_reclaim_past_the_retry_limit_fails_the_message(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    message_id = seeded.message_ids[0]
    await claim(rpc)
    for expected_retry in (1, 2, 3):
        await make_stale(conn, message_id, minutes=20)
        [item] = await claim(rpc)
        assert item["retry_count"] == expected_retry
    await make_stale(conn, message_id, minutes=20)

    assert await claim(rpc) == []
    row = await message_row(conn, message_id)
    assert row["status"] == "failed"
    assert row["lock_token"] is None
    assert "lease expired" in row["error_message"]
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 1


async def test_lease_exhaustion_completes_the_run_it_empties(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    emptied = await seed_campaign(conn, leads=1)
    busy = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set scheduled_at = now() + interval '1 day' where id = $1",
        busy.message_ids[1],
    )
    await claim(rpc, batch=10)
    for message_id in (emptied.message_ids[0], busy.message_ids[0]):
        await conn.execute("update campaign_messages set retry_count = 3 where id = $1", message_id)
        await make_stale(conn, message_id, minutes=20)

    assert await claim(rpc, batch=10) == []

    run = await run_row(conn, emptied.run_id)
    assert (run["status"], run["leads_failed"]) == ("completed", 1)
    assert run["completed_at"] is not None
    run = await run_row(conn, busy.run_id)  # its other message is still pending
    assert (run["status"], run["leads_failed"]) == ("running", 1)


async def test_model_and_splitter_are_the_workspace_rows_with_the_lowest_id(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    workspace = uuid.uuid4()
    low, mid, high = (uuid.UUID(int=n) for n in (1, 2, 2**128 - 1))
    # Inserted highest id first, so the table's physical order is not the id order.
    await conn.executemany(
        "insert into ai_agents (id, workspace_id, model) values ($1, $2, $3)",
        [(high, workspace, "z/last-by-id"), (low, workspace, None), (mid, workspace, "a/first")],
    )
    await conn.executemany(
        "insert into ai_message_splitter_config (id, workspace_id, min_chars_to_split) "
        "values ($1, $2, $3)",
        [(high, workspace, 999), (low, workspace, 111)],
    )
    await seed_campaign(conn, leads=1, workspace_id=workspace)

    [item] = await claim(rpc)

    assert item["config"]["model"] == "a/first"  # the lowest id with a model
    assert item["config"]["splitter"]["min_chars_to_split"] == 111


async def test_stale_recovery_locks_the_runs_in_id_order(
    conn: asyncpg.Connection, db_dsn: str, rpc: PostgresRpc
) -> None:
    # Exhausted leases in many runs: the claim writes each run's counters. It must lock the
    # run rows in id order (so two claims never deadlock): while it waits on the lowest run,
    # it holds none of the others.
    runs = [(await seed_campaign(conn, leads=1)) for _ in range(12)]
    await claim(rpc, batch=20)
    await conn.execute("update campaign_messages set retry_count = 3")
    await conn.execute("update campaign_messages set locked_at = now() - interval '20 minutes'")
    run_ids = sorted(r.run_id for r in runs)

    async with (
        connection(db_dsn) as holder,
        connection(db_dsn) as claimer,
        connection(db_dsn) as prober,
    ):
        hold = holder.transaction()
        await hold.start()
        await holder.execute("select 1 from campaign_runs where id = $1 for update", run_ids[0])
        claiming = asyncio.create_task(
            claimer.fetchval("select get_and_lock_campaign_messages(p_batch_size => 20)")
        )
        await wait_until_blocked(conn, claimer.get_server_pid())
        async with prober.transaction():
            free = await prober.fetchval(
                """select count(*) from (select id from campaign_runs where id = any($1::uuid[])
                                          for update skip locked) s""",
                run_ids[1:],
            )
        await hold.commit()
        assert await claiming == []

    assert free == len(run_ids) - 1
    for run_id in run_ids:
        run = await run_row(conn, run_id)
        assert (run["status"], run["leads_failed"]) == ("completed", 1)


async def test_stale_rows_of_a_deleted_run_fail_and_do_not_block_the_others(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # Production may lack the foreign key: a run deleted under its claimed messages.
    await conn.execute(
        "alter table campaign_messages drop constraint campaign_messages_run_id_fkey"
    )
    gone = await seed_campaign(conn, leads=3)
    alive = await seed_campaign(conn, leads=2)
    await claim(rpc, batch=5)
    for message_id in gone.message_ids:
        await make_stale(conn, message_id, minutes=30)  # the oldest leases: first in line
    for message_id in alive.message_ids:
        await make_stale(conn, message_id, minutes=20)
    await conn.execute("delete from campaign_runs where id = $1", gone.run_id)

    reclaimed = await claim(rpc, batch=3)

    assert sorted(m["id"] for m in reclaimed) == sorted(str(i) for i in alive.message_ids)
    for message_id in gone.message_ids:
        row = await message_row(conn, message_id)
        assert (row["status"], row["error_message"]) == ("failed", "run no longer exists")
        assert row["lock_token"] is None
    assert await claim(rpc, batch=3) == []


async def test_stale_lease_of_a_paused_run_goes_back_to_pending(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await claim(rpc)
    await conn.execute("update campaign_runs set status = 'paused' where id = $1", seeded.run_id)
    await make_stale(conn, seeded.message_ids[0], minutes=20)

    assert await claim(rpc) == []
    row = await message_row(conn, seeded.message_ids[0])
    assert row["status"] == "pending"
    assert row["retry_count"] == 1
    assert row["lock_token"] is None
    assert row["error_message"]


async def test_mark_old_skips_only_late_pending_messages_of_running_runs(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    late = await seed_campaign(conn, leads=3, first_scheduled_at=now - timedelta(hours=3))
    paused_late = await seed_campaign(
        conn, leads=2, run_status="paused", first_scheduled_at=now - timedelta(hours=3)
    )
    on_time = await seed_campaign(conn, leads=2, first_scheduled_at=now - timedelta(minutes=10))

    count = await rpc.call(
        "mark_old_campaign_messages_as_skipped", {"p_one_hour_ago": now - timedelta(hours=1)}
    )

    assert count == 3
    for message_id in late.message_ids:
        row = await message_row(conn, message_id)
        assert row["status"] == "skipped"
        assert row["error_message"]
    for message_id in paused_late.message_ids + on_time.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"
    assert (
        await rpc.call(
            "mark_old_campaign_messages_as_skipped", {"p_one_hour_ago": now - timedelta(hours=1)}
        )
        == 0
    )
