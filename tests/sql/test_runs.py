"""Run-level functions: pause, resume, finalize, requeue, logs, contexts."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row, run_row
from tests.sql.messages import send_all_parts, to_sending
from tests.sql.waiting import connection, wait_until_blocked


async def test_pause_keeps_pending_messages_pending(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    assert (
        await rpc.call(
            "pause_campaign_run", {"p_run_id": seeded.run_id, "p_reason": "inbox offline"}
        )
        is True
    )
    assert (
        await rpc.call("pause_campaign_run", {"p_run_id": seeded.run_id, "p_reason": "again"})
        is False
    )

    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["error_message"]) == ("paused", "inbox offline")
    for message_id in seeded.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"
    assert await claim(rpc) == []


async def test_resume_respaces_pending_messages_from_now_keeping_order_and_gaps(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    seeded = await seed_campaign(
        conn, leads=3, run_status="paused", first_scheduled_at=start, spacing=timedelta(minutes=2)
    )
    before = [(await message_row(conn, i))["scheduled_at"] for i in seeded.message_ids]

    result = await rpc.call("resume_campaign_run", {"p_run_id": seeded.run_id})

    assert result == {"ok": True, "reason": None, "rescheduled": 3}
    after = [(await message_row(conn, i))["scheduled_at"] for i in seeded.message_ids]
    assert [b - a for a, b in itertools.pairwise(after)] == [
        b - a for a, b in itertools.pairwise(before)
    ]
    assert abs((after[0] - datetime.now(UTC)).total_seconds()) < 5
    assert (await run_row(conn, seeded.run_id))["status"] == "running"
    # None counts as late any more.
    assert (
        await rpc.call(
            "mark_old_campaign_messages_as_skipped",
            {"p_one_hour_ago": datetime.now(UTC) - timedelta(hours=1)},
        )
        == 0
    )


async def test_resume_needs_a_connected_inbox_and_a_paused_run(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1, run_status="paused", inbox_status="disconnected")
    assert await rpc.call("resume_campaign_run", {"p_run_id": seeded.run_id}) == {
        "ok": False,
        "reason": "inbox_disconnected",
        "rescheduled": 0,
    }
    assert (await run_row(conn, seeded.run_id))["status"] == "paused"
    running = await seed_campaign(conn, leads=1)
    result = await rpc.call("resume_campaign_run", {"p_run_id": running.run_id})
    assert result["reason"] == "not_paused"


async def paused_for_inbox(
    conn: asyncpg.Connection, inbox_status: str, reason: str | None, **extra: Any
) -> SeededCampaign:
    seeded = await seed_campaign(conn, run_status="paused", inbox_status=inbox_status, **extra)
    await conn.execute(
        "update campaign_runs set error_message = $2 where id = $1", seeded.run_id, reason
    )
    return seeded


async def test_runs_paused_for_their_inbox_resume_once_it_reports_connected(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    down = await paused_for_inbox(conn, "disconnected", "inbox not connected (status: close)")
    back = await paused_for_inbox(
        conn,
        "connected",
        "inbox not connected (status: connecting)",
        leads=3,
        first_scheduled_at=datetime.now(UTC) - timedelta(hours=3),
        spacing=timedelta(minutes=2),
    )
    by_hand = await paused_for_inbox(conn, "connected", "paused by Ana: wrong script")
    no_reason = await paused_for_inbox(conn, "connected", None)
    before = [(await message_row(conn, i))["scheduled_at"] for i in back.message_ids]

    assert await rpc.call("resume_reconnected_campaign_runs", {}) == [str(back.run_id)]

    run = await run_row(conn, back.run_id)
    assert (run["status"], run["error_message"]) == ("running", None)
    after = [(await message_row(conn, i))["scheduled_at"] for i in back.message_ids]
    assert abs((after[0] - datetime.now(UTC)).total_seconds()) < 5  # re-spaced from now
    assert [b - a for a, b in itertools.pairwise(after)] == [
        b - a for a, b in itertools.pairwise(before)
    ]
    for seeded in (down, by_hand, no_reason):
        assert (await run_row(conn, seeded.run_id))["status"] == "paused"
    assert await rpc.call("resume_reconnected_campaign_runs", {}) == []

    await conn.execute("update inboxes set status = 'connected' where id = $1", down.inbox_id)
    assert await rpc.call("resume_reconnected_campaign_runs", {}) == [str(down.run_id)]
    assert (await run_row(conn, by_hand.run_id))["status"] == "paused"


async def test_reconnected_runs_resume_a_hundred_at_a_time_oldest_first(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    runs = [
        await paused_for_inbox(conn, "connected", "inbox not connected (status: close)", leads=1)
        for _ in range(103)
    ]
    oldest = [r.run_id for r in runs[:100]]
    await conn.execute(  # started_at in seeding order
        """update campaign_runs r set started_at = now() - make_interval(mins => 200 - o.n::int)
             from unnest($1::uuid[]) with ordinality o(id, n) where r.id = o.id""",
        [r.run_id for r in runs],
    )

    first = await rpc.call("resume_reconnected_campaign_runs", {})
    assert sorted(first) == sorted(str(i) for i in oldest)
    second = await rpc.call("resume_reconnected_campaign_runs", {})
    assert sorted(second) == sorted(str(r.run_id) for r in runs[100:])


async def test_resuming_a_run_with_nothing_left_completes_it(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # Its last leases ran out while it was paused: nothing is left to send.
    seeded = await seed_campaign(conn, leads=2, run_status="paused")
    await conn.execute(
        "update campaign_messages set status = 'failed' where run_id = $1", seeded.run_id
    )

    result = await rpc.call("resume_campaign_run", {"p_run_id": seeded.run_id})

    assert result == {"ok": True, "reason": None, "rescheduled": 0}
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["error_message"]) == ("completed", None)
    assert run["completed_at"] is not None


async def test_finalize_completes_only_runs_with_nothing_left(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    done = await seed_campaign(conn, leads=2)
    busy = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set status = 'sent' where run_id = $1", done.run_id
    )
    await conn.execute(
        "update campaign_messages set status = 'failed' where id = $1", busy.message_ids[0]
    )

    finished = await rpc.call("finalize_campaign_runs", {"p_run_ids": [done.run_id, busy.run_id]})

    assert finished == [str(done.run_id)]
    assert (await run_row(conn, done.run_id))["status"] == "completed"
    assert (await run_row(conn, done.run_id))["completed_at"] is not None
    assert (await run_row(conn, busy.run_id))["status"] == "running"
    assert await rpc.call("finalize_campaign_runs", {"p_run_ids": [done.run_id]}) == []


async def test_tidy_forgets_the_fair_share_turns_of_runs_that_are_over(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    done = await seed_campaign(conn, leads=1)
    paused = await seed_campaign(conn, leads=2)
    busy = await seed_campaign(conn, leads=2)
    assert len(await claim(rpc, batch=3)) == 3  # one turn each
    assert await conn.fetchval("select count(*) from campaign_run_turns") == 3
    sent = "update campaign_messages set status = 'sent' where run_id = $1"
    await conn.execute(sent, done.run_id)
    await conn.execute("update campaign_runs set status = 'paused' where id = $1", paused.run_id)
    await rpc.call("finalize_campaign_runs", {"p_run_ids": [done.run_id]})

    tidied = await rpc.call("tidy_campaign_queue", {})

    assert tidied["turns_forgotten"] == 1
    assert tidied["folded"] > 0
    kept = await conn.fetch("select run_id from campaign_run_turns order by run_id")
    assert {r["run_id"] for r in kept} == {paused.run_id, busy.run_id}
    assert await conn.fetchval("select count(*) from campaign_message_counts where not folded") == 0


async def test_a_tidy_in_an_open_transaction_holds_up_no_other_writer(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    """A tidy never waits, and nothing waits for one: a second tidy skips the turn rows the
    first holds, and a message's last part completes its run meanwhile."""
    over = await seed_campaign(conn, leads=1)
    assert len(await claim(rpc, batch=1, p_run_id=over.run_id)) == 1
    await conn.execute("update campaign_runs set status = 'cancelled' where id = $1", over.run_id)
    _, item = await to_sending(conn, rpc)  # another run, another inbox
    await send_all_parts(rpc, item, 2)
    async with connection(db_dsn) as tidying, connection(db_dsn) as other:
        transaction = tidying.transaction()
        await transaction.start()
        assert (await tidying.fetchval("select tidy_campaign_queue()"))["turns_forgotten"] == 1
        await other.execute("set lock_timeout = '2s'")
        second = await other.fetchval("select tidy_campaign_queue()")
        assert (second["turns_forgotten"], second["folded"]) == (0, 0)
        done = await other.fetchval(
            "select mark_message_part_sent($1, $2, 2, 'wamid.2')",
            uuid.UUID(item["id"]),
            uuid.UUID(item["lock_token"]),
        )
        assert done["completed"] is True
        await transaction.rollback()


async def test_requeue_failed_makes_failed_messages_due_again(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await conn.execute(
        """update campaign_messages set status = 'failed', retry_count = 3, error_message = 'x'
            where id = any($1::uuid[])""",
        seeded.message_ids[:2],
    )
    await conn.execute(
        "update campaign_messages set status = 'sent' where id = $1", seeded.message_ids[2]
    )
    await conn.execute("update campaign_runs set status = 'completed', leads_failed = 2")

    assert await rpc.call("requeue_failed_campaign_messages", {"p_run_id": seeded.run_id}) == 2

    for message_id in seeded.message_ids[:2]:
        row = await message_row(conn, message_id)
        assert (row["status"], row["retry_count"], row["error_message"]) == ("pending", 0, None)
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_failed"]) == ("running", 0)
    assert len(await claim(rpc, batch=10)) == 2


async def test_requeue_regenerates_text_nothing_was_sent_of_and_resumes_partly_sent(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    unsent, partly = seeded.message_ids
    conversation = await conn.fetchval(
        """insert into conversations (workspace_id, inbox_id, contact_phone)
           values ($1, $2, '5511900000001') returning id""",
        seeded.workspace_id,
        seeded.inbox_id,
    )
    await conn.execute(
        """update campaign_messages
              set status = 'failed', retry_count = 3, error_message = 'rejected by endpoint',
                  generated_message = 'Texto recusado.', message_parts = '["Texto recusado."]',
                  parts_sent = 0, conversation_id = $2
            where id = $1""",
        unsent,
        conversation,
    )
    await conn.execute(
        """update campaign_messages
              set status = 'failed', retry_count = 3, error_message = 'timeout',
                  generated_message = 'Olá! Parte dois.', message_parts = '["Olá!", "Parte dois."]',
                  parts_sent = 1, conversation_id = $2
            where id = $1""",
        partly,
        conversation,
    )

    assert await rpc.call("requeue_failed_campaign_messages", {"p_run_id": seeded.run_id}) == 2

    row = await message_row(conn, unsent)
    assert (row["status"], row["generated_message"], row["message_parts"]) == (
        "pending",
        None,
        None,
    )
    assert row["conversation_id"] == conversation  # the lead's conversation is still theirs
    row = await message_row(conn, partly)
    assert row["status"] == "pending"
    assert (row["generated_message"], row["parts_sent"]) == ("Olá! Parte dois.", 1)
    assert row["message_parts"] == ["Olá!", "Parte dois."]


async def test_finalize_waiting_on_a_requeue_sees_the_messages_it_requeued(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # A running run whose messages all failed: finalize would complete it. A requeue holds the
    # run row (uncommitted) when finalize starts, then commits: finalize must see its pending
    # messages, not the snapshot it took before waiting on the run row.
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set status = 'failed', retry_count = 3 where run_id = $1",
        seeded.run_id,
    )
    async with connection(db_dsn) as requeuer, connection(db_dsn) as finalizer:
        requeue = requeuer.transaction()
        await requeue.start()
        assert (
            await requeuer.fetchval("select requeue_failed_campaign_messages($1)", seeded.run_id)
            == 2
        )
        finalize = asyncio.create_task(
            finalizer.fetchval("select finalize_campaign_runs($1::uuid[])", [seeded.run_id])
        )
        await wait_until_blocked(conn, finalizer.get_server_pid())
        await requeue.commit()
        finished = await finalize

    assert finished == []
    assert (await run_row(conn, seeded.run_id))["status"] == "running"
    for message_id in seeded.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"


async def test_requeue_waiting_on_a_finalize_reopens_the_run_it_completed(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    # The other order: finalize completes the run first; the requeue that waited on the run
    # row then makes the run running again with its messages pending.
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set status = 'failed', retry_count = 3 where run_id = $1",
        seeded.run_id,
    )
    async with connection(db_dsn) as finalizer, connection(db_dsn) as requeuer:
        finalize = finalizer.transaction()
        await finalize.start()
        assert await finalizer.fetchval(
            "select finalize_campaign_runs($1::uuid[])", [seeded.run_id]
        ) == [str(seeded.run_id)]
        requeue = asyncio.create_task(
            requeuer.fetchval("select requeue_failed_campaign_messages($1)", seeded.run_id)
        )
        await wait_until_blocked(conn, requeuer.get_server_pid())
        await finalize.commit()
        assert await requeue == 2

    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["completed_at"]) == ("running", None)
    for message_id in seeded.message_ids:
        assert (await message_row(conn, message_id))["status"] == "pending"


async def test_log_campaign_steps_inserts_every_entry_in_one_call(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    entries = [
        {
            "run_id": str(seeded.run_id),
            "step_name": "generate",
            "level": "info",
            "message": "generated",
            "details": {"ms": 120},
            "lead_id": str(lead),
            "message_id": str(message),
        }
        for lead, message in zip(seeded.lead_ids, seeded.message_ids, strict=True)
    ] + [{"run_id": str(seeded.run_id), "step_name": "invocation", "message": "done"}]

    assert await rpc.call("log_campaign_steps", {"p_entries": entries}) == 3

    rows = await conn.fetch("select * from campaign_logs order by step_name, lead_id")
    assert [r["step_name"] for r in rows] == ["generate", "generate", "invocation"]
    assert rows[0]["details"] == {"ms": 120}
    assert rows[2]["level"] == "info"
    assert await rpc.call("log_campaign_steps", {"p_entries": []}) == 0


async def test_lead_contexts_come_in_one_call_keyed_by_lead(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    contexts = await rpc.call("get_lead_contexts", {"p_lead_ids": seeded.lead_ids[:2]})
    assert set(contexts) == {str(i) for i in seeded.lead_ids[:2]}
    one = contexts[str(seeded.lead_ids[0])]
    assert one["client_name"]
    assert one["custom_fields"]["city"] == "São Paulo"
    assert "phone" not in one  # the prompt never needs the phone number
    assert await rpc.call("get_lead_contexts", {"p_lead_ids": []}) == {}
