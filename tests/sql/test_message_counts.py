"""campaign_message_counts (sql/009_message_counts.sql): the per-run counts the status reads.

Every check compares campaign_queue_status with a plain count of the rows, in the same
snapshot and at the status's own time ("at"). The counts are a cache, and a cache is right
only if it says what the rows say, whoever wrote them (the queue's functions or the
product's own SQL), whenever it was folded, with writers in flight on other connections.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.migrations import SQL_DIR
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
from tests.sql.messages import fence

ORACLE = """
select r.id as run_id, r.status,
       count(m.id) filter (where m.status = 'pending') as pending,
       count(m.id) filter (where m.status = 'skipped') as skipped,
       count(m.id) filter (where m.status in ('queued', 'generating', 'sending')) as in_flight,
       count(m.id) filter (where m.status = 'pending' and m.scheduled_at <= $1) as due
  from campaign_runs r left join campaign_messages m on m.run_id = r.id
 where r.status in ('running', 'paused')
 group by r.id, r.status
"""


async def status_and_truth(conn: asyncpg.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The status and the rows' own counts, read in one snapshot at the status's time."""
    async with conn.transaction(isolation="repeatable_read"):
        answer = json.loads(await conn.fetchval("select campaign_queue_status()::text"))
        at = datetime.fromisoformat(answer["at"])
        truth = {str(r["run_id"]): dict(r) for r in await conn.fetch(ORACLE, at)}
    return answer, truth


# A pending message due from a minute ago on is counted in the row of its minute, and that
# row's latest_at bounds its time (else the status would take the minute as all due).
UNBOUNDED = """
select count(*) from campaign_messages m
 where m.status = 'pending' and m.scheduled_at >= now() - interval '1 minute'
   and isfinite(m.scheduled_at)
   and coalesce((select max(k.latest_at) from campaign_message_counts k
                  where k.run_id = m.run_id and k.kind = 'due'
                    and k.due_at = date_bin('1 minute', m.scheduled_at,
                                            timestamptz '2000-01-01 00:00:00+00')),
                '-infinity') < m.scheduled_at
"""


async def assert_counts_right(conn: asyncpg.Connection) -> dict[str, Any]:
    assert await conn.fetchval(UNBOUNDED) == 0
    answer, truth = await status_and_truth(conn)
    fields = ("pending", "skipped", "in_flight")
    shown = {r["run_id"]: tuple(r[f] for f in fields) for r in answer["runs"]}
    assert shown == {k: tuple(t[f] for f in fields) for k, t in truth.items()}
    assert answer["queue"]["in_flight"] == sum(t["in_flight"] for t in truth.values())
    running = [t for t in truth.values() if t["status"] == "running"]
    due = sum(t["due"] for t in running)
    assert answer["queue"]["due"] == due
    assert answer["queue"]["scheduled"] == sum(t["pending"] for t in running) - due
    return answer


async def product_inserts(
    conn: asyncpg.Connection, run_id: uuid.UUID, offsets_s: list[float], status: str = "pending"
) -> None:
    """Messages the product writes itself, due offsets_s seconds from now."""
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at, status)
           select $1, gen_random_uuid(), '+5511900000000',
                  now() + make_interval(secs => o), $3
             from unnest($2::float8[]) o""",
        run_id,
        offsets_s,
        status,
    )


def this_minute_offsets() -> list[float]:
    """Seconds from now to every second of the minute in progress: some past, some to come."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    return [(start + timedelta(seconds=s) - now).total_seconds() for s in range(60)]


async def test_counts_follow_the_queue_and_the_products_writes(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    first = await seed_campaign(conn, leads=6)
    second = await seed_campaign(conn, leads=3, first_scheduled_at=datetime.now(UTC))
    paused = await seed_campaign(conn, leads=2, run_status="paused")
    await assert_counts_right(conn)

    # Due long ago, within the minute in progress (before and after now), later today.
    await product_inserts(conn, first.run_id, [-86400, -600, -150, -30, 3600, 7200])
    await product_inserts(conn, second.run_id, this_minute_offsets())
    await product_inserts(conn, paused.run_id, [-60, 60], status="skipped")
    await assert_counts_right(conn)

    items = await claim(rpc, batch=8)
    assert items
    await assert_counts_right(conn)
    await rpc.call("skip_campaign_message", {**fence(items[0]), "p_reason": "lead not found"})
    retry = {"p_error": "send: HTTP 400", "p_retryable": True}  # pending again, 5 min on
    await rpc.call("fail_campaign_message", {**fence(items[1]), **retry})
    await rpc.call(
        "release_campaign_messages",
        {
            "p_messages": [{"id": i["id"], "lock_token": i["lock_token"]} for i in items[2:4]],
            "p_not_before": datetime.now(UTC) + timedelta(minutes=30),
        },
    )
    await assert_counts_right(conn)

    # The product moves, edits and deletes messages, and empties a run.
    await conn.execute(
        "update campaign_messages set scheduled_at = scheduled_at - interval '2 days'"
        " where run_id = $1 and status = 'pending'",
        second.run_id,
    )
    await conn.execute(
        "update campaign_messages set status = 'skipped' where run_id = $1 and status = 'pending'"
        " and scheduled_at > now()",
        first.run_id,
    )
    await assert_counts_right(conn)
    await conn.execute("delete from campaign_messages where run_id = $1", paused.run_id)
    await conn.execute("update campaign_runs set status = 'running' where id = $1", paused.run_id)
    answer = await assert_counts_right(conn)
    assert answer["queue"]["oldest_due_s"] >= 86400


async def test_a_random_history_of_writes_and_folds_keeps_the_counts_right(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Sixty steps drawn from a fixed seed: inserts, claims, ends, releases, product edits and
    deletes, with and without a fold between them."""
    rng = random.Random(20261126)
    runs = [(await seed_campaign(conn, leads=4)).run_id for _ in range(3)]
    for _ in range(60):
        step = rng.choice(["insert", "claim", "end", "move", "delete", "pause", "fold"])
        run_id = rng.choice(runs)
        if step == "insert":
            offsets = [rng.uniform(-7200, 7200) for _ in range(rng.randint(1, 30))]
            await product_inserts(conn, run_id, offsets + this_minute_offsets()[:5])
        elif step == "claim":
            await claim(rpc, batch=rng.randint(1, 10))
        elif step == "end":
            await conn.execute(
                """update campaign_messages set status = $2, lock_token = null, locked_at = null
                    where id in (select id from campaign_messages
                                  where status in ('queued', 'pending') limit $1)""",
                rng.randint(1, 5),
                rng.choice(["sent", "skipped", "failed", "pending", "generating"]),
            )
        elif step == "move":
            await conn.execute(
                """update campaign_messages
                      set scheduled_at = now() + make_interval(secs => $2)
                    where run_id = $1 and status = 'pending' and random() < 0.5""",
                run_id,
                rng.uniform(-300, 300),
            )
        elif step == "delete":
            await conn.execute(
                "delete from campaign_messages where run_id = $1 and random() < 0.3", run_id
            )
        elif step == "pause":
            await conn.execute(
                "update campaign_runs set status = $2 where id = $1",
                run_id,
                rng.choice(["running", "paused"]),
            )
        else:
            await conn.fetchval("select cq_fold_message_counts()")
        await assert_counts_right(conn)


async def test_a_fold_never_counts_what_another_transaction_has_not_committed(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    writer = await asyncpg.connect(db_dsn)
    try:
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(
            "update campaign_messages set status = 'skipped' where run_id = $1", seeded.run_id
        )
        answer = await assert_counts_right(conn)  # folds; the writer's change is not seen
        assert answer["runs"][0]["pending"] == 5
        await transaction.commit()
        answer = await assert_counts_right(conn)
        assert (answer["runs"][0]["pending"], answer["runs"][0]["skipped"]) == (0, 5)

        transaction = writer.transaction()
        await transaction.start()
        await product_inserts(writer, seeded.run_id, [-60, 60])
        await transaction.rollback()  # a rolled-back write leaves no count behind
        await assert_counts_right(conn)
    finally:
        await writer.close()


async def test_two_folds_at_once_fold_once(conn: asyncpg.Connection, db_dsn: str) -> None:
    seeded = await seed_campaign(conn, leads=5)
    await product_inserts(conn, seeded.run_id, [-600, -60, 60, 600])
    other = await asyncpg.connect(db_dsn)
    try:
        transaction = other.transaction()
        await transaction.start()
        assert await other.fetchval("select cq_fold_message_counts()") > 0
        # The first fold holds its lock until it commits: this one does nothing, waits for
        # nothing, and still reads right (the changes are not folded yet, and are summed).
        assert await conn.fetchval("select cq_fold_message_counts()") == 0
        await assert_counts_right(conn)
        await transaction.commit()
    finally:
        await other.close()
    await assert_counts_right(conn)
    keys = await conn.fetch(
        """select run_id, kind, due_at, count(*) from campaign_message_counts
            group by 1, 2, 3 having count(*) > 1"""
    )
    assert keys == []


async def test_a_fold_leaves_a_row_per_key_and_forgets_what_fell_to_zero(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await product_inserts(conn, seeded.run_id, [-900, -600, 1800, 3600])
    await claim(rpc, batch=10)
    await conn.fetchval("select cq_fold_message_counts()")
    rows = await conn.fetch(
        "select kind, due_at, n, folded from campaign_message_counts order by kind, due_at"
    )
    assert all(r["folded"] for r in rows)
    # Everything due is claimed (five in flight): what is left pending is the two messages of
    # the next hour, in the minutes they fall due. The past minutes were one row
    # ('-infinity'), dropped at zero.
    assert [(r["kind"], r["n"]) for r in rows] == [
        ("due", 1),
        ("due", 1),
        ("in_flight", 5),
        ("pending", 2),
    ]
    assert all(r["due_at"] > datetime.now(UTC) for r in rows if r["kind"] == "due")


async def test_the_status_reads_right_in_a_read_only_transaction(
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await product_inserts(conn, seeded.run_id, [-60, 60])
    async with conn.transaction(readonly=True):
        answer = json.loads(await conn.fetchval("select campaign_queue_status()::text"))
    assert answer["runs"][0]["pending"] == 6
    assert await conn.fetchval("select count(*) from campaign_message_counts where not folded")


async def test_a_truncate_forgets_every_count(conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await conn.execute("truncate campaign_messages")
    answer = await assert_counts_right(conn)
    assert answer["runs"][0]["run_id"] == str(seeded.run_id)
    assert answer["runs"][0]["pending"] == 0


async def test_applying_the_migration_again_rebuilds_the_counts_from_the_rows(
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await product_inserts(conn, seeded.run_id, [-600, 0, 600], status="pending")
    await conn.execute("delete from campaign_message_counts")
    await conn.execute(
        "insert into campaign_message_counts (run_id, kind, n) values ($1, 'pending', 99)",
        seeded.run_id,
    )
    async with conn.transaction():
        await conn.execute((SQL_DIR / "009_message_counts.sql").read_text())
    await assert_counts_right(conn)


async def test_a_message_moved_later_within_its_minute_raises_the_minutes_bound(
    conn: asyncpg.Connection,
) -> None:
    """Its count does not change (out of the minute, back into it), its time does: were the
    bound left behind, a status in that minute would count the message as due too soon."""
    seeded = await seed_campaign(conn, leads=1)
    minute = "date_bin('1 minute', now() + interval '5 minutes', timestamptz '2000-01-01')"
    message_id = await conn.fetchval(
        f"""insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at)
            values ($1, gen_random_uuid(), '+5511900000000', {minute} + interval '1 s')
            returning id""",
        seeded.run_id,
    )
    await conn.fetchval("select cq_fold_message_counts()")
    await conn.execute(
        f"update campaign_messages set scheduled_at = {minute} + interval '59 s' where id = $1",
        message_id,
    )
    await assert_counts_right(conn)


async def test_a_status_in_an_older_snapshot_than_a_fold_still_answers(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    """A repeatable-read caller whose snapshot predates another session's fold reads the
    changes that fold took as still unfolded (right), and does not fold itself."""
    seeded = await seed_campaign(conn, leads=3)
    other = await asyncpg.connect(db_dsn)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.fetchval("select 1")  # the snapshot
            assert await other.fetchval("select cq_fold_message_counts()") > 0
            answer = json.loads(await conn.fetchval("select campaign_queue_status()::text"))
        assert answer["runs"][0]["run_id"] == str(seeded.run_id)
        assert answer["runs"][0]["pending"] == 3
    finally:
        await other.close()
    await assert_counts_right(conn)


async def test_messages_without_a_time_or_at_an_infinite_one_are_counted(
    conn: asyncpg.Connection,
) -> None:
    """The product's table may allow a null scheduled_at (it predates this service): such a
    message is pending and never due, as the claim sees it; -infinity is due, infinity not."""
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute("alter table campaign_messages alter column scheduled_at drop not null")
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at)
           select $1, gen_random_uuid(), '+5511900000000', t
             from unnest(array[null, '-infinity', 'infinity']::timestamptz[]) t""",
        seeded.run_id,
    )
    answer = await assert_counts_right(conn)
    assert answer["runs"][0]["pending"] == 5
    assert answer["queue"]["due"] == 3
    async with conn.transaction():
        assert await conn.fetchval("select cq_rebuild_message_counts()") > 0
    await assert_counts_right(conn)


async def test_a_truncate_during_a_fold_forgets_what_the_fold_wrote(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    """A fold writes new rows a truncate's delete could not see: the truncate waits for it."""
    await seed_campaign(conn, leads=3)
    truncating = await asyncpg.connect(db_dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        assert await conn.fetchval("select cq_fold_message_counts()") > 0
        truncate = asyncio.create_task(truncating.execute("truncate campaign_messages"))
        await asyncio.sleep(0.3)
        assert not truncate.done()
        await transaction.commit()
        await asyncio.wait_for(truncate, timeout=10)
    finally:
        await truncating.close()
    answer = await assert_counts_right(conn)
    assert answer["runs"][0]["pending"] == 0


async def test_writes_no_trigger_saw_are_recounted_by_a_rebuild(
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute("set session_replication_role = replica")  # as a replication apply
    await product_inserts(conn, seeded.run_id, [-60, 600])
    await conn.execute("reset session_replication_role")
    answer, _ = await status_and_truth(conn)
    assert answer["runs"][0]["pending"] == 2  # not seen
    async with conn.transaction():
        await conn.fetchval("select cq_rebuild_message_counts()")
    answer = await assert_counts_right(conn)
    assert answer["runs"][0]["pending"] == 4
