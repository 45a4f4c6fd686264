"""A run completes when its last unfinished message ends, in that message's own transaction.

No finalize_campaign_runs is called here: a process that dies right after a message's end
must not leave its run running with nothing left.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Literal

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, make_stale, message_row, run_row
from tests.sql.messages import PARTS, fence, save
from tests.sql.waiting import connection, wait_until_blocked

Ending = Literal["sent", "failed", "skipped"]
ENDINGS: list[Ending] = ["sent", "failed", "skipped"]


async def claim_to_sending(
    conn: asyncpg.Connection, rpc: PostgresRpc, leads: int, **seed: Any
) -> tuple[SeededCampaign, list[dict[str, Any]]]:
    """A run of `leads` messages, every one claimed and saved with one part, ready to send."""
    seeded = await seed_campaign(conn, leads=leads, **seed)
    items = await claim(rpc, batch=leads)
    assert len(items) == leads
    for item in items:
        await to_sending(rpc, item)
    return seeded, items


async def to_sending(rpc: PostgresRpc, item: dict[str, Any]) -> None:
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    assert (await save(rpc, item, parts=["Oi!"]))["ok"] is True


async def end(c: asyncpg.Connection, item: dict[str, Any], ending: Ending) -> None:
    """Ends a message saved with one part, on `c` (so inside whatever transaction `c` is in)."""
    if ending == "sent":
        result = await c.fetchval(
            "select mark_message_part_sent($1, $2, 0, 'wamid.1')", item["id"], item["lock_token"]
        )
        assert (result["ok"], result["completed"]) == (True, True)
    elif ending == "failed":
        result = await c.fetchval(
            "select fail_campaign_message($1, $2, 'invalid phone number', false)",
            item["id"],
            item["lock_token"],
        )
        assert (result["ok"], result["status"]) == (True, "failed")
    else:
        result = await c.fetchval(
            "select skip_campaign_message($1, $2, 'lead deleted')", item["id"], item["lock_token"]
        )
        assert result["ok"] is True


async def assert_completed(conn: asyncpg.Connection, run_id: Any) -> None:
    run = await run_row(conn, run_id)
    assert run["status"] == "completed"
    assert run["completed_at"] is not None
    assert run["completed_at"] <= await conn.fetchval("select now()")


async def assert_running(conn: asyncpg.Connection, run_id: Any) -> None:
    run = await run_row(conn, run_id)
    assert (run["status"], run["completed_at"]) == ("running", None)


async def test_the_last_part_recorded_completes_the_run(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    assert (await save(rpc, item))["ok"] is True
    for index in range(len(PARTS) - 1):  # parts before the last one: the message goes on
        answer = await rpc.call(
            "mark_message_part_sent",
            {**fence(item), "p_part_index": index, "p_provider_message_id": f"wamid.{index}"},
        )
        assert answer["completed"] is False
        await assert_running(conn, seeded.run_id)

    answer = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": len(PARTS) - 1, "p_provider_message_id": "wamid.last"},
    )

    assert answer == {"ok": True, "reason": None, "completed": True}
    await assert_completed(conn, seeded.run_id)
    assert (await run_row(conn, seeded.run_id))["leads_processed"] == 1


@pytest.mark.parametrize("why", ["not retryable", "retries spent"])
async def test_the_last_failure_for_good_completes_the_run(
    conn: asyncpg.Connection, rpc: PostgresRpc, why: str
) -> None:
    seeded, [item] = await claim_to_sending(conn, rpc, leads=1)
    if why == "retries spent":
        await conn.execute("update campaign_messages set retry_count = 3 where id = $1", item["id"])

    result = await rpc.call(
        "fail_campaign_message",
        {**fence(item), "p_error": "HTTP 400", "p_retryable": why == "retries spent"},
    )

    assert result["status"] == "failed"
    await assert_completed(conn, seeded.run_id)
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 1


async def test_a_retryable_failure_does_not_complete_the_run(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, [item] = await claim_to_sending(conn, rpc, leads=1)

    result = await rpc.call("fail_campaign_message", {**fence(item), "p_error": "HTTP 503"})

    assert (result["status"], result["retry_count"]) == ("pending", 1)
    assert (await message_row(conn, item["id"]))["status"] == "pending"
    await assert_running(conn, seeded.run_id)


async def test_the_last_skip_completes_the_run(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded, [item] = await claim_to_sending(conn, rpc, leads=1)

    result = await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "lead deleted"})

    assert result == {"ok": True, "reason": None}
    await assert_completed(conn, seeded.run_id)


@pytest.mark.parametrize("other", ["pending", "in flight"])
@pytest.mark.parametrize("ending", ENDINGS)
async def test_an_ending_with_another_message_of_the_run_unfinished_does_not_complete_it(
    conn: asyncpg.Connection, rpc: PostgresRpc, ending: Ending, other: str
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    items = await claim(rpc, batch=1 if other == "pending" else 2)
    for item in items:
        await to_sending(rpc, item)

    await end(conn, items[0], ending)

    await assert_running(conn, seeded.run_id)
    # The other one ending after it is the last: it completes the run.
    if other == "pending":
        items += await claim(rpc, batch=1)
        await to_sending(rpc, items[1])
    await end(conn, items[1], ending)
    await assert_completed(conn, seeded.run_id)


@pytest.mark.parametrize("status", ["paused", "cancelled", "failed"])
@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_run_that_is_not_running_is_left_as_it_is(
    conn: asyncpg.Connection, rpc: PostgresRpc, ending: Ending, status: str
) -> None:
    # Claimed while running, then paused (or cancelled, failed) before the message ended: a
    # paused run with nothing left stays paused (resume_campaign_run completes it).
    seeded, [item] = await claim_to_sending(conn, rpc, leads=1)
    await conn.execute(
        "update campaign_runs set status = $2, error_message = 'by hand' where id = $1",
        seeded.run_id,
        status,
    )

    await end(conn, item, ending)

    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["completed_at"]) == (status, None)


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.product(ENDINGS, ENDINGS)),
    ids=[f"{a}-{b}" for a, b in itertools.product(ENDINGS, ENDINGS)],
)
async def test_the_last_two_messages_ending_at_once_complete_the_run(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str, first: Ending, second: Ending
) -> None:
    # Each transaction ends its message before the other commits. The first to take the run
    # row sees the other message unfinished; the second waits on the run row and, once the
    # first commits, must see its end (not the snapshot from before the wait): no lost
    # completion.
    seeded, [a, b] = await claim_to_sending(conn, rpc, leads=2)
    async with connection(db_dsn) as one, connection(db_dsn) as two:
        tx_one, tx_two = one.transaction(), two.transaction()
        await tx_one.start()
        await end(one, a, first)
        # It saw b unfinished: the run is running in its own view.
        assert (
            await one.fetchval("select status from campaign_runs where id = $1", seeded.run_id)
            == "running"
        )

        await tx_two.start()
        ending = asyncio.create_task(end(two, b, second))
        await wait_until_blocked(conn, two.get_server_pid())  # on the run row
        await tx_one.commit()
        await ending
        assert (
            await two.fetchval("select status from campaign_runs where id = $1", seeded.run_id)
            == "completed"
        )
        await tx_two.commit()

    await assert_completed(conn, seeded.run_id)
    assert {(await message_row(conn, i["id"]))["status"] for i in (a, b)} == {first, second}


@pytest.mark.parametrize("order", ["requeue first", "failure first"])
async def test_a_requeue_and_a_last_failure_never_leave_a_completed_run_with_pending_work(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str, order: str
) -> None:
    # One message failed for good already, the other is failing for good now while a person
    # requeues the run's failed messages.
    seeded, [done, item] = await claim_to_sending(conn, rpc, leads=2)
    await end(conn, done, "failed")
    async with connection(db_dsn) as failer, connection(db_dsn) as requeuer:
        if order == "requeue first":
            requeue = requeuer.transaction()
            await requeue.start()
            assert (
                await requeuer.fetchval(
                    "select requeue_failed_campaign_messages($1)", seeded.run_id
                )
                == 1
            )
            failing = asyncio.create_task(end(failer, item, "failed"))
            await wait_until_blocked(conn, failer.get_server_pid())
            await requeue.commit()
            await failing
            expected = {done["id"]: "pending", item["id"]: "failed"}
        else:
            failure = failer.transaction()
            await failure.start()
            await end(failer, item, "failed")
            requeued = asyncio.create_task(
                requeuer.fetchval("select requeue_failed_campaign_messages($1)", seeded.run_id)
            )
            await wait_until_blocked(conn, requeuer.get_server_pid())
            await failure.commit()
            assert await requeued == 2
            expected = {done["id"]: "pending", item["id"]: "pending"}

    await assert_running(conn, seeded.run_id)
    for message_id, status in expected.items():
        assert (await message_row(conn, message_id))["status"] == status


@pytest.mark.parametrize("order", ["ending first", "claim first"])
async def test_an_ending_and_a_claim_failing_a_spent_lease_of_the_run_complete_it_together(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str, order: str
) -> None:
    # The claim's stale-lease step locks messages, then their runs; an ending locks its
    # message, then its run. Whichever takes the run row first, the other waits on it (no
    # deadlock), and the second one completes the run: both messages have ended.
    seeded, [item, stale] = await claim_to_sending(conn, rpc, leads=2)
    await conn.execute("update campaign_messages set retry_count = 3 where id = $1", stale["id"])
    await make_stale(conn, stale["id"], minutes=30)
    claim_sql = (
        "select get_and_lock_campaign_messages(p_batch_size => 1, p_lock_timeout_s => 600,"
        " p_run_id => $1)"
    )
    async with connection(db_dsn) as ender, connection(db_dsn) as claimer:
        if order == "ending first":
            tx = ender.transaction()
            await tx.start()
            await end(ender, item, "failed")
            claiming = asyncio.create_task(claimer.fetchval(claim_sql, seeded.run_id))
            await wait_until_blocked(conn, claimer.get_server_pid())
            await tx.commit()
            assert await claiming == []
        else:
            tx = claimer.transaction()
            await tx.start()
            assert await claimer.fetchval(claim_sql, seeded.run_id) == []
            ending = asyncio.create_task(end(ender, item, "failed"))
            await wait_until_blocked(conn, ender.get_server_pid())
            await tx.commit()
            await ending

    assert (await message_row(conn, stale["id"]))["status"] == "failed"
    await assert_completed(conn, seeded.run_id)
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 2


async def test_a_failing_completion_does_not_undo_the_delivery(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # The parts are out: if completing the run fails (a product trigger, say), the message is
    # still recorded as sent, so nothing is sent again; the run stays running for a later
    # finalize.
    seeded, [item] = await claim_to_sending(conn, rpc, leads=1)
    await conn.execute(
        """create function reject_completion() returns trigger language plpgsql as $$
           begin
             if new.status = 'completed' then
               raise exception 'runs are completed by hand today';
             end if;
             return new;
           end $$;
           create trigger reject_completion before update on campaign_runs
             for each row execute function reject_completion();"""
    )

    await end(conn, item, "sent")

    assert (await message_row(conn, item["id"]))["status"] == "sent"
    await assert_running(conn, seeded.run_id)
    assert (await run_row(conn, seeded.run_id))["leads_processed"] == 1
