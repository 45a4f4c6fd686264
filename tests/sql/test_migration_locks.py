"""Re-applying a migration on a live database never deadlocks with the service's writes.

`python -m app migrate` applies a file in one transaction, so every table lock the file takes
is held to its end: the file takes its locks first, in the writers' order. The writers lock
campaign_messages first (the row they change), then campaign_message_counts (the row the
counting trigger writes when a message's count moves).

A writer that holds campaign_messages and writes its counts a moment later is made here with
two of the service's calls in one transaction (a start, then a failure): the same order a
single call has between its update and its trigger's insert, with the gap held open so the
migration surely falls into it.
"""

from __future__ import annotations

import asyncio

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.migrations import apply_migrations
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
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
    """Each of the two tables `pid` holds or waits for: 'granted' or 'waiting'."""
    rows = await observer.fetch(
        """select c.relname, bool_and(l.granted) as granted
             from pg_locks l join pg_class c on c.oid = l.relation
            where l.pid = $1 and l.locktype = 'relation'
              and c.relname in ('campaign_messages', 'campaign_message_counts')
            group by c.relname""",
        pid,
    )
    return {r["relname"]: "granted" if r["granted"] else "waiting" for r in rows}


async def test_reapplying_the_counts_migration_waits_for_a_writer_instead_of_deadlocking(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, batch=1)
    fence = {"id": item["id"], "token": item["lock_token"]}
    await conn.execute("delete from campaign_queue_migrations where name = $1", COUNTS_MIGRATION)

    async with connection(db_dsn) as writer:
        async with writer.transaction():
            # queued -> generating: the same count, so no counts row yet; holds the message.
            started = await writer.fetchval(
                "select start_campaign_message(p_message_id => $1, p_lock_token => $2)",
                fence["id"],
                fence["token"],
            )
            assert started["ok"] is True
            migrate = asyncio.create_task(apply_migrations(db_dsn))
            migrator = await _blocked_backend(conn, besides=writer.get_server_pid())
            locks_while_blocked = await _tables_locked(conn, migrator)
            # generating -> pending (a retry): the count moves, the trigger writes its row.
            failed = await writer.fetchval(
                """select fail_campaign_message(p_message_id => $1, p_lock_token => $2,
                                                p_error => 'provider timeout')""",
                fence["id"],
                fence["token"],
            )
            assert failed["ok"] is True
        assert await asyncio.wait_for(migrate, 30) == [COUNTS_MIGRATION]
    # It waited for the writers' first table, holding none after it in their order.
    assert locks_while_blocked == {"campaign_messages": "waiting"}

    status = await conn.fetchval("select status from campaign_messages where id = $1", fence["id"])
    assert status == "pending"
    pending = await conn.fetchval(
        """select sum(n) from campaign_message_counts
            where run_id = (select run_id from campaign_messages where id = $1)
              and kind = 'pending'""",
        fence["id"],
    )
    assert pending == 1
