"""One global lock order for the functions that lock several runs, in Postgres.

The claim's stale-lease recovery works in rounds; a round after the first must not wait on a
run while it holds the runs of the rounds before (runs in id order over the whole
transaction): else two claims, or a claim and finalize_campaign_runs, the late skip or
resume_reconnected_campaign_runs (each locking runs in id order), wait on each other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg

from app.sandbox.seed import SeededCampaign, seed_campaign
from tests.sql.helpers import message_row, run_row
from tests.sql.waiting import connection, wait_until_blocked_or_done

INBOX_DOWN = "inbox not connected (status: close)"


async def lease_out(
    conn: asyncpg.Connection, message_id: uuid.UUID, *, minutes: int, retries: int
) -> None:
    """The message as claimed by a worker that died `minutes` ago, after `retries` retries."""
    await conn.execute(
        """update campaign_messages
              set status = 'queued', lock_token = gen_random_uuid(), claimed_by = 'dead',
                  retry_count = $3, locked_at = now() - make_interval(mins => $2)
            where id = $1""",
        message_id,
        minutes,
        retries,
    )


async def two_runs(conn: asyncpg.Connection, **seed: Any) -> tuple[SeededCampaign, SeededCampaign]:
    """Two runs, the one with the lower id first."""
    a = await seed_campaign(conn, **seed)
    b = await seed_campaign(conn, **seed)
    low, high = sorted((a, b), key=lambda s: s.run_id)
    return low, high


async def quick_deadlock_detection(*connections: asyncpg.Connection) -> None:
    # A deadlock is reported after deadlock_timeout (1 s by default): keeps a failing run short.
    for c in connections:
        await c.execute("set deadlock_timeout = '100ms'")


async def claim_on(c: asyncpg.Connection, batch: int) -> Any:
    return await c.fetchval(
        """select get_and_lock_campaign_messages(
                    p_batch_size => $1, p_one_hour_ago => now() - interval '1 hour')""",
        batch,
    )


async def test_claims_and_finalize_recovering_exhausted_leases_of_ten_runs_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # 400 leases of dead workers, out of retries, spread over 10 runs in random age order: each
    # claim's rounds meet new runs, while finalize locks all ten.
    runs = sorted([(await seed_campaign(conn, leads=40)).run_id for _ in range(10)])
    await conn.execute(
        """update campaign_messages
              set status = 'queued', lock_token = gen_random_uuid(), claimed_by = 'dead',
                  retry_count = 3,
                  locked_at = now() - interval '20 minutes' - random() * interval '10 minutes'"""
    )
    deadlocks: Counter[str] = Counter()
    claims_done = asyncio.Event()

    async def claimer() -> None:
        async with connection(db_dsn) as c:
            await quick_deadlock_detection(c)
            while await c.fetchval(
                "select exists (select 1 from campaign_messages where status = 'queued')"
            ):
                try:
                    await claim_on(c, batch=5)
                except asyncpg.DeadlockDetectedError:
                    deadlocks["claim"] += 1

    async def finalizer() -> None:
        async with connection(db_dsn) as c:
            await quick_deadlock_detection(c)
            while not claims_done.is_set():
                try:
                    await c.fetchval("select finalize_campaign_runs($1::uuid[])", runs)
                except asyncpg.DeadlockDetectedError:
                    deadlocks["finalize"] += 1

    finalizers = [asyncio.create_task(finalizer()) for _ in range(2)]
    try:
        await asyncio.wait_for(asyncio.gather(*(claimer() for _ in range(4))), timeout=60)
    finally:
        claims_done.set()
        await asyncio.gather(*finalizers)

    assert deadlocks == Counter()
    statuses = await conn.fetch("select status, count(*) from campaign_messages group by 1")
    assert {r["status"]: r["count"] for r in statuses} == {"failed": 400}
    for run_id in runs:
        run = await run_row(conn, run_id)
        assert (run["status"], run["leads_failed"]) == ("completed", 40)


async def test_a_claim_in_its_second_round_and_finalize_of_both_runs_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    low, high = await two_runs(conn, leads=1)
    # The oldest lease is the higher run's: the claim's first round takes it and its run; the
    # second round the lower run's. Both exhausted: they take no slot of the batch of one.
    await lease_out(conn, high.message_ids[0], minutes=30, retries=3)
    await lease_out(conn, low.message_ids[0], minutes=20, retries=3)

    async with connection(db_dsn) as finalizer, connection(db_dsn) as claimer:
        await quick_deadlock_detection(finalizer, claimer)
        async with finalizer.transaction():
            # finalize_campaign_runs([low, high]) has the lower run and goes on to the higher.
            await finalizer.execute(
                "select 1 from campaign_runs where id = $1 for update", low.run_id
            )
            claiming = asyncio.create_task(claim_on(claimer, batch=1))
            await wait_until_blocked_or_done(conn, claimer.get_server_pid(), claiming)
            await finalizer.fetchval(
                "select finalize_campaign_runs($1::uuid[])", [low.run_id, high.run_id]
            )
        assert await claiming == []

    assert (await message_row(conn, high.message_ids[0]))["status"] == "failed"
    assert (await run_row(conn, high.run_id))["status"] == "completed"
    # The lower run's lease is left for the next claim, untouched.
    left = await message_row(conn, low.message_ids[0])
    assert (left["status"], left["retry_count"]) == ("queued", 3)
    async with connection(db_dsn) as c:
        assert await claim_on(c, batch=1) == []
    assert (await message_row(conn, low.message_ids[0]))["status"] == "failed"
    assert (await run_row(conn, low.run_id))["status"] == "completed"


async def test_a_claim_in_its_second_round_and_the_late_skip_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    low, high = await two_runs(conn, leads=2)
    await lease_out(conn, high.message_ids[0], minutes=30, retries=3)
    await lease_out(conn, low.message_ids[0], minutes=20, retries=3)
    await conn.execute(  # the second message of each run: late
        "update campaign_messages set scheduled_at = now() - interval '3 hours' where id = any($1)",
        [low.message_ids[1], high.message_ids[1]],
    )

    async with connection(db_dsn) as skipper, connection(db_dsn) as claimer:
        await quick_deadlock_detection(skipper, claimer)
        async with skipper.transaction():
            # The late skip has the lower run (its late message skipped), not yet the higher.
            await skipper.execute(
                "select 1 from campaign_runs where id = $1 for update", low.run_id
            )
            claiming = asyncio.create_task(claim_on(claimer, batch=1))
            await wait_until_blocked_or_done(conn, claimer.get_server_pid(), claiming)
            skipped = await skipper.fetchval(
                """select mark_old_campaign_messages_as_skipped(now() - interval '1 hour')"""
            )
        assert await claiming == []

    assert skipped == 2
    assert (await message_row(conn, high.message_ids[0]))["status"] == "failed"
    assert (await run_row(conn, high.run_id))["status"] == "completed"
    left = await message_row(conn, low.message_ids[0])
    assert (left["status"], left["retry_count"]) == ("queued", 3)
    assert (await run_row(conn, low.run_id))["status"] == "running"


async def test_a_claim_in_its_second_round_and_resume_of_reconnected_runs_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    low, high = await two_runs(conn, leads=1, run_status="paused")
    await conn.execute("update campaign_runs set error_message = $1", INBOX_DOWN)
    # Leases of paused runs go back to pending: no slot taken, so the claim goes on.
    await lease_out(conn, high.message_ids[0], minutes=30, retries=0)
    await lease_out(conn, low.message_ids[0], minutes=20, retries=0)

    async with connection(db_dsn) as resumer, connection(db_dsn) as claimer:
        await quick_deadlock_detection(resumer, claimer)
        async with resumer.transaction():
            # resume_reconnected_campaign_runs has resumed the lower run, not yet the higher.
            assert (await resumer.fetchval("select resume_campaign_run($1)", low.run_id))["ok"]
            claiming = asyncio.create_task(claim_on(claimer, batch=1))
            await wait_until_blocked_or_done(conn, claimer.get_server_pid(), claiming)
            resumed = await resumer.fetchval("select resume_reconnected_campaign_runs()")
        assert await claiming == []

    assert resumed == [str(high.run_id)]
    back = await message_row(conn, high.message_ids[0])
    assert (back["status"], back["retry_count"]) == ("pending", 1)
    left = await message_row(conn, low.message_ids[0])
    assert (left["status"], left["retry_count"]) == ("queued", 0)
    for seeded in (low, high):
        assert (await run_row(conn, seeded.run_id))["status"] == "running"


async def test_every_function_that_locks_runs_at_once_never_deadlocks(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # Ten runs of 30: per run 15 leases of dead workers in random age order (5 out of
    # retries), 5 late and 10 due pending messages; every third run paused for its inbox.
    runs = sorted([(await seed_campaign(conn, leads=30)).run_id for _ in range(10)])
    await conn.execute(
        """with numbered as (
             select id, row_number() over (partition by run_id order by id) as n
               from campaign_messages)
           update campaign_messages m
              set status = case when k.n <= 15 then 'queued' else 'pending' end,
                  lock_token = case when k.n <= 15 then gen_random_uuid() end,
                  locked_at = case when k.n <= 15 then now() - interval '20 minutes'
                                                   - random() * interval '10 minutes' end,
                  retry_count = case when k.n <= 5 then 3 else 0 end,
                  scheduled_at = case when k.n between 16 and 20
                                      then now() - interval '3 hours' else m.scheduled_at end
             from numbered k
            where k.id = m.id"""
    )
    await conn.execute(
        "update campaign_runs set status = 'paused', error_message = $1 where id = any($2)",
        INBOX_DOWN,
        runs[::3],
    )
    deadlocks: Counter[str] = Counter()

    async def repeat(name: str, calls: list[tuple[str, list[Any]]]) -> None:
        """Each call in turn, 12 times, each its own transaction, as the service makes them."""
        async with connection(db_dsn) as c:
            await quick_deadlock_detection(c)
            for _ in range(12):
                for query, args in calls:
                    try:
                        answer = await c.fetchval(query, *args)
                    except asyncpg.DeadlockDetectedError:
                        deadlocks[name] += 1
                        continue
                    if query.startswith("select get_and_lock"):
                        await end_all(c, answer or [], name)

    async def end_all(c: asyncpg.Connection, claimed: list[dict[str, Any]], name: str) -> None:
        for i, item in enumerate(claimed):
            ending = (
                "select fail_campaign_message($1, $2, 'provider said no', false)"
                if i % 2
                else "select skip_campaign_message($1, $2, 'opted out')"
            )
            try:
                await c.fetchval(ending, uuid.UUID(item["id"]), uuid.UUID(item["lock_token"]))
            except asyncpg.DeadlockDetectedError:
                deadlocks[f"{name} ending"] += 1

    claim_sql = (
        "select get_and_lock_campaign_messages(p_batch_size => 5,"
        " p_one_hour_ago => now() - interval '1 hour')"
    )
    await asyncio.wait_for(
        asyncio.gather(
            *(repeat(f"claim {i}", [(claim_sql, [])]) for i in range(3)),
            repeat("finalize", [("select finalize_campaign_runs($1::uuid[])", [runs])]),
            repeat(
                "late skip",
                [("select mark_old_campaign_messages_as_skipped(now() - interval '1 hour')", [])],
            ),
            repeat(
                "resume",
                [
                    ("select pause_campaign_run($1, $2)", [runs[4], INBOX_DOWN]),
                    ("select resume_reconnected_campaign_runs()", []),
                ],
            ),
            repeat(
                "requeue",
                [("select requeue_failed_campaign_messages($1)", [r]) for r in runs[1::3]],
            ),
            repeat(  # the operators' actions (sql/052_operator_runs.sql)
                "operator",
                [
                    ("select cancel_campaign_run($1)", [runs[7]]),
                    ("select operator_pause_campaign_run($1)", [runs[5]]),
                    ("select operator_resume_campaign_run($1)", [runs[5]]),
                    *[("select requeue_campaign_run_failures($1)", [r]) for r in runs[2::3]],
                ],
            ),
        ),
        timeout=60,
    )

    assert deadlocks == Counter()
    # Cancelled, whatever the claims and finalize did around it. A give-back racing a cancel's
    # commit can leave a message pending (docs/architecture.md, "Operator actions"): a last
    # cancel, as an operator would, skips it.
    assert (await run_row(conn, runs[7]))["status"] == "cancelled"
    await conn.fetchval("select cancel_campaign_run($1)", runs[7])
    assert (
        await conn.fetchval(
            "select count(*) from campaign_messages where run_id = $1 and status = 'pending'",
            runs[7],
        )
        == 0
    )
