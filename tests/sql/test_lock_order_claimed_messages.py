"""A function that holds a run never waits on a message claimed under it, in Postgres.

cancel_campaign_run and resume_campaign_run lock the run, then update its pending messages.
A message pending in that update's snapshot may have been claimed since (the claim's pick
holds pending messages without their run) and be held now by its ending, which waits for the
run (fail_campaign_message counts the failure on it, finalize_campaign_runs locks it): read
committed follows the row to its newest version and waits on whoever holds that. The stress
test of tests/sql/test_lock_order.py met it (2 deadlocks in 300 runs); here it is on purpose:

1. a claim (the worker's) takes the second message and holds the run's fair-share turn row;
2. another claim (the picker's) takes the first message and waits for that turn row;
3. the action locks the run and, its snapshot taken, meets the first message (the picker's);
4. the worker's claim commits and its worker fails the second message: that ending waits
   for the run;
5. the picker's claim commits: the action goes on to the second message, held by the ending.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from tests.sql.helpers import message_row, run_row
from tests.sql.waiting import connection, wait_until_blocked, wait_until_blocked_or_done

FAIL_FOR_GOOD = "select fail_campaign_message($1, $2, 'provider said no', false)"


async def claim_one_in(c: asyncpg.Connection, *, late_before_minutes: int) -> dict[str, Any]:
    """The oldest due message not yet late, claimed in `c`'s open transaction."""
    [item] = await c.fetchval(
        """select get_and_lock_campaign_messages(
                    p_batch_size => 1, p_one_hour_ago => now() - make_interval(mins => $1))""",
        late_before_minutes,
    )
    return dict(item)


async def seed_three_due(conn: asyncpg.Connection) -> SeededCampaign:
    """Three due messages, 10, 6 and 2 minutes ago: oldest first in both the index's and the
    table's order."""
    return await seed_campaign(
        conn,
        leads=3,
        first_scheduled_at=datetime.now().astimezone() - timedelta(minutes=10),
        spacing=timedelta(minutes=4),
    )


async def act_while_a_claim_ends_under_it(
    conn: asyncpg.Connection, db_dsn: str, seeded: SeededCampaign, action: str
) -> tuple[Any, Any, dict[str, Any]]:
    """Runs `action` (one query, the run id its argument) against the interleaving above.
    Returns the action's answer, the ending's answer and the first claim's item."""
    first, second, _ = seeded.message_ids
    async with (
        connection(db_dsn) as picker,
        connection(db_dsn) as worker,
        connection(db_dsn) as actor,
    ):
        for c in (picker, worker, actor):
            await c.execute("set deadlock_timeout = '100ms'")  # a failing run stays short
        claiming = worker.transaction()
        await claiming.start()
        # The first message counts as late to this claim: it takes the second.
        claimed = await claim_one_in(worker, late_before_minutes=8)
        picking = picker.transaction()
        await picking.start()
        pick = asyncio.create_task(claim_one_in(picker, late_before_minutes=60))
        await wait_until_blocked(conn, picker.get_server_pid())  # on the worker's turn row
        if action.startswith("select operator_resume"):
            paused = await conn.fetchval("select operator_pause_campaign_run($1)", seeded.run_id)
            assert paused["ok"]

        acting = asyncio.create_task(actor.fetchval(action, seeded.run_id))
        # Before the fix: waits for the picker on the first message, holding the run.
        await wait_until_blocked_or_done(conn, actor.get_server_pid(), acting)
        await claiming.commit()
        held = await pick
        assert (uuid.UUID(held["id"]), uuid.UUID(claimed["id"])) == (first, second)
        ending = asyncio.create_task(
            worker.fetchval(FAIL_FOR_GOOD, second, uuid.UUID(claimed["lock_token"]))
        )
        # Before the fix: holds the second message, waits for the run.
        await wait_until_blocked_or_done(conn, worker.get_server_pid(), ending)
        await picking.commit()
        answer, failed = await asyncio.gather(acting, ending)
    return answer, failed, held


async def test_a_cancel_and_the_ending_of_a_message_claimed_under_it_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    seeded = await seed_three_due(conn)
    first, second, third = seeded.message_ids

    answer, failed, held = await act_while_a_claim_ends_under_it(
        conn, db_dsn, seeded, "select cancel_campaign_run($1)"
    )

    # The two claimed messages were not pending any more: the cancel skipped the third only.
    assert (answer["ok"], answer["status_after"], answer["messages_changed"]) == (
        True,
        "cancelled",
        1,
    )
    assert failed["status"] == "failed"
    assert (await message_row(conn, third))["error_message"] == "cancelled"
    # The first claim's worker stops at its next step and gives the message back: skipped.
    fence = [uuid.UUID(held["id"]), uuid.UUID(held["lock_token"])]
    started = await conn.fetchval("select start_campaign_message($1, $2)", *fence)
    assert started["reason"] == "run_not_running"
    lease = [{"id": held["id"], "lock_token": held["lock_token"]}]
    assert await conn.fetchval("select release_campaign_messages($1::jsonb)", lease) == 1
    rows = [await message_row(conn, m) for m in (first, second, third)]
    assert [(r["status"], r["error_message"]) for r in rows] == [
        ("skipped", "cancelled"),
        ("failed", "provider said no"),
        ("skipped", "cancelled"),
    ]
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_failed"]) == ("cancelled", 1)


async def test_a_resume_and_the_ending_of_a_message_claimed_under_it_never_deadlock(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    seeded = await seed_three_due(conn)
    first, second, third = seeded.message_ids

    answer, failed, held = await act_while_a_claim_ends_under_it(
        conn, db_dsn, seeded, "select operator_resume_campaign_run($1)"
    )

    # Resumed: the third message re-spaced from now; the claimed ones are being worked.
    assert (answer["ok"], answer["status_after"], answer["messages_changed"]) == (
        True,
        "running",
        1,
    )
    assert failed["status"] == "failed"
    later = await conn.fetchval(
        "select scheduled_at > now() from campaign_messages where id = $1", third
    )
    assert later is True  # shifted by how late the first one was
    fence = [uuid.UUID(held["id"]), uuid.UUID(held["lock_token"])]
    assert (await conn.fetchval("select start_campaign_message($1, $2)", *fence))["ok"] is True
    assert [(await message_row(conn, m))["status"] for m in (first, second, third)] == [
        "generating",
        "failed",
        "pending",
    ]
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_failed"]) == ("running", 1)


REQUEUES = {
    "requeue_failed_campaign_messages": "select requeue_failed_campaign_messages($1)",
    "requeue_campaign_run_failures": "select (requeue_campaign_run_failures($1))"
    "->'messages_changed'",
}


@pytest.mark.parametrize("requeue", sorted(REQUEUES))
async def test_a_requeue_never_waits_on_a_failed_message_a_claim_holds(
    conn: asyncpg.Connection, db_dsn: str, requeue: str
) -> None:
    # A claim's stale-lease step locks the newest version of each row it meets, and keeps that
    # lock when the recheck finds the row has ended since its snapshot (failed by another
    # claim): the stress test saw a claim hold a failed message so, then wait for its run in
    # its first round while a requeue held the run and waited on that message. That lock on
    # an ended row cannot be timed from here: the claim's transaction takes it by hand first.
    seeded = await seed_campaign(conn, leads=3)
    held, other, stale = seeded.message_ids
    await conn.execute(
        "update campaign_messages set status = 'failed', error_message = 'HTTP 500'"
        " where id = any($1)",
        [held, other],
    )
    await conn.execute(
        """update campaign_messages
              set status = 'queued', lock_token = gen_random_uuid(), claimed_by = 'dead',
                  locked_at = now() - interval '30 minutes'
            where id = $1""",
        stale,
    )
    await conn.execute("update campaign_runs set leads_failed = 2 where id = $1", seeded.run_id)

    async with connection(db_dsn) as claimer, connection(db_dsn) as actor:
        for c in (claimer, actor):
            await c.execute("set deadlock_timeout = '100ms'")
        claiming = claimer.transaction()
        await claiming.start()
        await claimer.execute("select 1 from campaign_messages where id = $1 for update", held)
        acting = asyncio.create_task(actor.fetchval(REQUEUES[requeue], seeded.run_id))
        # Before the fix: holds the run, waits on the failed message the claim holds.
        await wait_until_blocked_or_done(conn, actor.get_server_pid(), acting)
        claim = asyncio.create_task(
            claimer.fetchval(
                """select get_and_lock_campaign_messages(
                            p_batch_size => 1, p_one_hour_ago => now() - interval '1 hour')"""
            )
        )
        # The claim's first round: the stale lease's run, which the requeue may hold.
        await wait_until_blocked_or_done(conn, claimer.get_server_pid(), claim)
        requeued, claimed = await asyncio.gather(acting, claim)
        await claiming.commit()

    assert int(requeued) == 1  # the message held elsewhere is left failed, not waited on
    assert [c["id"] for c in claimed] == [str(stale)]
    assert [(await message_row(conn, m))["status"] for m in (held, other)] == [
        "failed",
        "pending",
    ]
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_failed"]) == ("running", 1)
    assert int(await conn.fetchval(REQUEUES[requeue], seeded.run_id)) == 1  # now free
