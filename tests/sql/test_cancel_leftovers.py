"""Nothing of a cancelled run stays pending: the call's tidy skips what a cancel left.

cancel_campaign_run takes its run's pending messages with skip locked (holding the run, it
never waits on a message: sql/012_runs.sql's lock order). A pending message another
transaction held at that instant, and gave back untouched (a claim's pick that rolled back; a
give-back that read the run before the cancel committed), is left pending in a run nobody
claims again. tidy_campaign_queue, once a call, skips those as 'cancelled'.
"""

from __future__ import annotations

import asyncpg

from app.sandbox.seed import seed_campaign
from tests.sql.helpers import message_row, run_row
from tests.sql.waiting import connection


async def test_a_pending_message_held_through_the_cancel_is_skipped_by_the_next_tidy(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    held = seeded.message_ids[0]

    async with connection(db_dsn) as picker:
        pick = picker.transaction()
        await pick.start()  # a claim's pick holds the message without its run...
        await picker.execute("select 1 from campaign_messages where id = $1 for update", held)
        answer = await conn.fetchval("select cancel_campaign_run($1)", seeded.run_id)
        await pick.rollback()  # ...and gives it back untouched

    assert answer["ok"] is True
    assert answer["messages_changed"] == 2
    assert (await message_row(conn, held))["status"] == "pending"  # the gap

    tidy = await conn.fetchval("select tidy_campaign_queue()")

    assert tidy["cancelled_skipped"] == 1
    row = await message_row(conn, held)
    assert (row["status"], row["error_message"]) == ("skipped", "cancelled")
    assert (await run_row(conn, seeded.run_id))["status"] == "cancelled"
    assert (
        await conn.fetchval(
            "select count(*) from campaign_messages where run_id = $1 and status = 'pending'",
            seeded.run_id,
        )
        == 0
    )


async def test_the_tidy_leaves_the_pending_messages_of_running_and_paused_runs(
    conn: asyncpg.Connection,
) -> None:
    running = await seed_campaign(conn, leads=2)
    paused = await seed_campaign(conn, leads=2, run_status="paused")

    tidy = await conn.fetchval("select tidy_campaign_queue()")

    assert tidy["cancelled_skipped"] == 0
    for message_id in running.message_ids + paused.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"
