"""Re-applying a migration on a live database never deadlocks with the service's writes.

`python -m app migrate` applies a file in one transaction, so every table lock the file takes
is held to its end: the file takes its locks first, in the writers' order. The writers lock
campaign_messages first (the row they change), then campaign_message_counts (the row the
counting trigger writes when a message's count moves).

A fold (tidy_campaign_queue, the status) takes its advisory lock, then rewrites counts rows:
the migration takes that advisory lock before the counts table too.

A writer that holds campaign_messages and writes its counts a moment later is made here with
two of the service's calls in one transaction (a start, then a failure): the same order a
single call has between its update and its trigger's insert, with the gap held open so the
migration surely falls into it. Another test runs the service's calls as they come, on
several connections, while every migration is applied again and again.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.migrations import apply_migrations, load_migrations
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
from tests.sql.messages import fence, save, send_all_parts
from tests.sql.waiting import connection

COUNTS_MIGRATION = "009_message_counts.sql"


async def _blocked_backend(observer: asyncpg.Connection, besides: int) -> int:
    """The backend of this database, other than `besides`, that waits on a lock."""
    for _ in range(1000):
        pid = await observer.fetchval(
            """select pid from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock' and pid <> $1""",
            besides,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the migration never waited on a lock")


async def _tables_locked(observer: asyncpg.Connection, pid: int) -> dict[str, str]:
    """What `pid` holds or waits for ('granted' or 'waiting'): each of the two tables, and
    the fold's advisory lock ('fold')."""
    rows = await observer.fetch(
        """select case when l.locktype = 'advisory' then 'fold' else c.relname end as name,
                  bool_and(l.granted) as granted
             from pg_locks l left join pg_class c on c.oid = l.relation
            where l.pid = $1
              and (c.relname in ('campaign_messages', 'campaign_message_counts')
                   or (l.locktype = 'advisory'
                       and l.objid::int = hashtext('campaign_message_counts')))
            group by 1""",
        pid,
    )
    return {r["name"]: "granted" if r["granted"] else "waiting" for r in rows}


async def test_reapplying_the_counts_migration_waits_for_a_writer_instead_of_deadlocking(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, batch=1)
    held = {"id": item["id"], "token": item["lock_token"]}
    await conn.execute("delete from campaign_queue_migrations where name = $1", COUNTS_MIGRATION)

    async with connection(db_dsn) as writer:
        async with writer.transaction():
            # queued -> generating: the same count, so no counts row yet; holds the message.
            started = await writer.fetchval(
                "select start_campaign_message(p_message_id => $1, p_lock_token => $2)",
                held["id"],
                held["token"],
            )
            assert started["ok"] is True
            migrate = asyncio.create_task(apply_migrations(db_dsn))
            migrator = await _blocked_backend(conn, besides=writer.get_server_pid())
            locks_while_blocked = await _tables_locked(conn, migrator)
            # generating -> pending (a retry): the count moves, the trigger writes its row.
            failed = await writer.fetchval(
                """select fail_campaign_message(p_message_id => $1, p_lock_token => $2,
                                                p_error => 'provider timeout')""",
                held["id"],
                held["token"],
            )
            assert failed["ok"] is True
        assert await asyncio.wait_for(migrate, 30) == [COUNTS_MIGRATION]
    # It waited for the writers' first table, holding none after it in their order.
    assert locks_while_blocked == {"campaign_messages": "waiting"}

    status = await conn.fetchval("select status from campaign_messages where id = $1", held["id"])
    assert status == "pending"
    pending = await conn.fetchval(
        """select sum(n) from campaign_message_counts
            where run_id = (select run_id from campaign_messages where id = $1)
              and kind = 'pending'""",
        held["id"],
    )
    assert pending == 1


async def test_reapplying_the_counts_migration_queues_behind_a_fold_at_its_advisory_lock(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    await seed_campaign(conn, leads=3)
    await claim(rpc, batch=2)  # changes to fold
    await conn.execute("delete from campaign_queue_migrations where name = $1", COUNTS_MIGRATION)

    async with connection(db_dsn) as folder:
        async with folder.transaction():
            # The fold alone: tidy_campaign_queue also writes campaign_messages (a cancelled
            # run's leftovers), before its fold, so its transaction holds that table too.
            folded = await folder.fetchval("select cq_fold_message_counts()")
            assert folded > 0  # holds the advisory lock and the rows it rewrote
            migrate = asyncio.create_task(apply_migrations(db_dsn))
            migrator = await _blocked_backend(conn, besides=folder.get_server_pid())
            locks_while_blocked = await _tables_locked(conn, migrator)
        assert await asyncio.wait_for(migrate, 30) == [COUNTS_MIGRATION]
    # Behind the fold at the advisory lock, before the counts table: a fold that has its
    # advisory lock and is about to rewrite counts never waits on the migration.
    assert locks_while_blocked == {"campaign_messages": "granted", "fold": "waiting"}


async def test_the_tidy_writes_campaign_messages_before_it_takes_the_folds_lock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # The writers' order (campaign_messages, then the fold's lock): a tidy that folded first
    # and then skipped a cancelled run's leftovers deadlocked with a re-applied counts
    # migration holding campaign_messages and waiting for the fold's lock. Two leftovers of a
    # cancelled run, so the tidy has messages to write (with none it writes nothing).
    await seed_campaign(conn, leads=2, run_status="cancelled")
    async with connection(db_dsn) as holder, connection(db_dsn) as tidier:
        async with holder.transaction():  # keeps any writer of campaign_messages waiting
            await holder.execute("lock table campaign_messages in share mode")
            tidy = asyncio.create_task(tidier.fetchval("select tidy_campaign_queue()"))
            blocked = await _blocked_backend(conn, besides=holder.get_server_pid())
            locks_while_blocked = await _tables_locked(conn, blocked)
        tidied = await asyncio.wait_for(tidy, 30)
    assert locks_while_blocked == {"campaign_messages": "waiting"}  # the fold's lock not held
    assert tidied["cancelled_skipped"] == 2


async def _serve(rpc: PostgresRpc, stop: asyncio.Event, seed: int) -> int:
    """The service's calls, as one worker makes them, until `stop`; returns the calls made."""
    rng = random.Random(seed)
    calls = 0
    while not stop.is_set():
        items: list[dict[str, Any]] = await claim(rpc, batch=3)
        for item in items:
            await rpc.call("start_campaign_message", fence(item))
            outcome = rng.random()
            if outcome < 0.5:
                await save(rpc, item)
                await send_all_parts(rpc, item)
            elif outcome < 0.8:
                await rpc.call("fail_campaign_message", {**fence(item), "p_error": "timeout"})
            else:
                await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "late"})
        await rpc.call("tidy_campaign_queue", {})
        await rpc.call("campaign_queue_status", {})
        calls += 2 + len(items)
    return calls


async def test_every_migration_reapplied_under_live_traffic_never_deadlocks(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    for _ in range(3):
        await seed_campaign(conn, leads=150)
    every_file = [m.name for m in load_migrations()]
    stop = asyncio.Event()
    workers = [asyncio.create_task(_serve(rpc, stop, seed)) for seed in range(4)]
    try:
        for _ in range(3):
            await asyncio.sleep(0.2)  # the workers' calls in flight
            await conn.execute("delete from campaign_queue_migrations")
            assert await apply_migrations(db_dsn) == every_file
    finally:
        stop.set()
        calls = await asyncio.gather(*workers)  # a worker's deadlock raises here
    assert all(n > 0 for n in calls)


INDEXES_MIGRATION = "002_indexes.sql"


async def test_reapplying_the_indexes_waits_for_no_writer(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    """A writer in save_generated_message's order, held open: its message row (for update),
    then a new conversation, then the message's update. The indexes all exist, so the
    migration locks no table: it neither waits for the writer nor makes the writer wait."""
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, batch=1)
    await conn.execute("delete from campaign_queue_migrations where name = $1", INDEXES_MIGRATION)

    async with connection(db_dsn) as writer:
        async with writer.transaction():
            await writer.execute(
                "select 1 from campaign_messages where id = $1 for update", item["id"]
            )
            await writer.execute(
                """insert into conversations (workspace_id, inbox_id, lead_id, contact_phone,
                                              channel, status)
                   values ($1, $2, $3, '+5511900000000', 'whatsapp', 'open')""",
                seeded.workspace_id,
                seeded.inbox_id,
                seeded.lead_ids[0],
            )
            migrate = asyncio.create_task(apply_migrations(db_dsn))
            blocked = asyncio.create_task(_blocked_backend(conn, besides=writer.get_server_pid()))
            done, _ = await asyncio.wait([migrate, blocked], return_when=asyncio.FIRST_COMPLETED)
            waited = blocked in done
            blocked.cancel()
            await writer.execute(
                "update campaign_messages set status = 'sending' where id = $1", item["id"]
            )
        assert await asyncio.wait_for(migrate, 30) == [INDEXES_MIGRATION]
    assert not waited  # the migration never waited on the writer
