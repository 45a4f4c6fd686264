"""The fenced writes of one claimed message: start, save, parts, fail, skip, release."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row, run_row
from tests.sql.messages import PARTS, claim_one, fence, save, to_sending

FENCED_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("start_campaign_message", {}),
    (
        "save_generated_message",
        {
            "p_generated_message": "Olá, tudo bem com você?",
            "p_parts": ["Olá, tudo bem com você?"],
            "p_ai_tokens_used": 1,
            "p_ai_generation_time_ms": 1,
            "p_split_time_ms": 0,
        },
    ),
    ("mark_message_part_sent", {"p_part_index": 0, "p_provider_message_id": "wamid.1"}),
    ("fail_campaign_message", {"p_error": "boom", "p_retryable": True}),
    ("skip_campaign_message", {"p_reason": "nope"}),
]


@pytest.mark.parametrize(("function", "extra"), FENCED_CALLS, ids=[f for f, _ in FENCED_CALLS])
async def test_wrong_lock_token_changes_nothing_and_answers_lock_lost(
    conn: asyncpg.Connection, rpc: PostgresRpc, function: str, extra: dict[str, Any]
) -> None:
    seeded, item = await to_sending(conn, rpc)
    before = await message_row(conn, item["id"])
    run_before = await run_row(conn, seeded.run_id)
    conversations_before = await conn.fetchval("select count(*) from conversations")

    result = await rpc.call(
        function, {"p_message_id": item["id"], "p_lock_token": str(uuid.uuid4()), **extra}
    )

    assert result["ok"] is False
    assert result["reason"] == "lock_lost"
    assert await message_row(conn, item["id"]) == before
    assert await run_row(conn, seeded.run_id) == run_before
    assert await conn.fetchval("select count(*) from conversations") == conversations_before


async def test_release_with_a_wrong_lock_token_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, item = await claim_one(conn, rpc)
    before = await message_row(conn, item["id"])
    released = await rpc.call(
        "release_campaign_messages",
        {"p_messages": [{"id": item["id"], "lock_token": str(uuid.uuid4())}]},
    )
    assert released == 0
    assert await message_row(conn, item["id"]) == before


async def test_start_moves_queued_to_generating(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, item = await claim_one(conn, rpc)
    assert await rpc.call("start_campaign_message", fence(item)) == {"ok": True, "reason": None}
    assert (await message_row(conn, item["id"]))["status"] == "generating"


async def test_start_refuses_when_the_run_is_not_running(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, item = await claim_one(conn, rpc)
    await rpc.call("pause_campaign_run", {"p_run_id": seeded.run_id, "p_reason": "by hand"})
    result = await rpc.call("start_campaign_message", fence(item))
    assert result == {"ok": False, "reason": "run_not_running"}
    assert (await message_row(conn, item["id"]))["status"] == "queued"


async def test_save_creates_one_conversation_per_workspace_inbox_phone(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    # A second message to the first lead's phone, in the same run (same workspace and inbox).
    phone = await conn.fetchval("select phone from leads where id = $1", seeded.lead_ids[0])
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, phone_normalized,
                                          scheduled_at)
           values ($1, $2, $3, regexp_replace($3, '\\D', '', 'g'), now() - interval '1 minute')""",
        seeded.run_id,
        seeded.lead_ids[0],
        phone,
    )
    items = await claim(rpc, batch=10)
    assert len(items) == 3
    conversation_by_lead: dict[str, set[str]] = {}
    for item in items:
        await rpc.call("start_campaign_message", fence(item))
        result = await save(rpc, item)
        assert result["ok"] is True
        conversation_by_lead.setdefault(item["lead_id"], set()).add(result["conversation_id"])

    assert {len(v) for v in conversation_by_lead.values()} == {1}
    assert await conn.fetchval("select count(*) from conversations") == 2
    row = await message_row(conn, items[0]["id"])
    assert row["status"] == "sending"
    assert row["message_parts"] == PARTS
    assert (row["ai_tokens_used"], row["ai_generation_time_ms"], row["split_time_ms"]) == (
        120,
        340,
        25,
    )


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        ("update campaign_runs set status = 'paused'", {"reason": "run_not_running"}),
        (
            "update inboxes set status = 'disconnected'",
            {"reason": "inbox_disconnected", "inbox_status": "disconnected"},
        ),
        # The status seen now, not the one of claim time (connected): the run is paused
        # naming it.
        (
            "update inboxes set status = 'qr_code_pending'",
            {"reason": "inbox_disconnected", "inbox_status": "qr_code_pending"},
        ),
        (
            "delete from inboxes",
            {"reason": "inbox_disconnected", "inbox_status": "not_found"},
        ),
        ("delete from leads", {"reason": "lead_not_found"}),
    ],
)
async def test_save_rechecks_run_inbox_and_lead(
    conn: asyncpg.Connection, rpc: PostgresRpc, setup: str, refusal: dict[str, Any]
) -> None:
    _, item = await claim_one(conn, rpc)
    await rpc.call("start_campaign_message", fence(item))
    await conn.execute(setup)
    result = await save(rpc, item)
    assert result == {"ok": False, "conversation_id": None, **refusal}
    row = await message_row(conn, item["id"])
    assert row["status"] == "generating"
    assert row["generated_message"] is None


async def test_save_rejects_empty_parts(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, item = await claim_one(conn, rpc)
    result = await save(rpc, item, parts=["ok part", "   "])
    assert result["reason"] == "invalid_parts"
    assert (await message_row(conn, item["id"]))["message_parts"] is None


async def test_parts_are_recorded_one_by_one_and_the_last_completes_the_message(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, item = await to_sending(conn, rpc)

    first = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0"},
    )
    assert first == {"ok": True, "reason": None, "completed": False}
    repeat = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0b"},
    )
    assert repeat == {"ok": True, "reason": None, "completed": False}
    row = await message_row(conn, item["id"])
    assert row["parts_sent"] == 1
    assert row["provider_message_id"] == "wamid.0"
    skipping = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 2, "p_provider_message_id": "wamid.2"},
    )
    assert skipping["ok"] is False

    await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 1, "p_provider_message_id": "wamid.1"},
    )
    last = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 2, "p_provider_message_id": "wamid.2"},
    )
    assert last == {"ok": True, "reason": None, "completed": True}

    row = await message_row(conn, item["id"])
    assert row["status"] == "sent"
    assert row["parts_sent"] == 3
    assert row["sent_at"] is not None
    assert row["locked_at"] is None
    assert row["provider_message_id"] == "wamid.2"
    lead_column = await conn.fetchval(
        "select column_id from leads where id = $1", seeded.lead_ids[0]
    )
    assert lead_column == seeded.target_column_id
    touched = await conn.fetchval(
        "select last_message_at from conversations where id = $1", row["conversation_id"]
    )
    assert touched is not None
    run = await run_row(conn, seeded.run_id)
    assert run["leads_processed"] == 1
    assert run["leads_failed"] == 0
    assert run["metrics"]["messages_sent"] == 1
    assert run["metrics"]["ai_tokens_used"] == 120
    assert run["metrics"]["ai_generation_time_ms"] == 340
    assert run["metrics"]["split_time_ms"] == 25

    # Repeating the last part after completion changes nothing and counts nothing twice.
    again = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 2, "p_provider_message_id": "wamid.2"},
    )
    assert again["completed"] is True
    assert (await run_row(conn, seeded.run_id))["leads_processed"] == 1


async def test_fail_retries_at_5_15_30_minutes_then_fails(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    message_id = seeded.message_ids[0]
    for retry, minutes in ((1, 5), (2, 15), (3, 30)):
        [item] = await claim(rpc)
        before = datetime.now(UTC)
        result = await rpc.call("fail_campaign_message", {**fence(item), "p_error": "HTTP 503"})
        assert result["status"] == "pending"
        assert result["retry_count"] == retry
        row = await message_row(conn, message_id)
        assert row["status"] == "pending"
        assert row["lock_token"] is None
        assert row["error_message"] == "HTTP 503"
        delay = row["scheduled_at"] - before
        assert timedelta(minutes=minutes) - timedelta(seconds=5) < delay
        assert delay <= timedelta(minutes=minutes, seconds=1)
        # make it due again for the next attempt
        await conn.execute("update campaign_messages set scheduled_at = now() - interval '1s'")

    [item] = await claim(rpc)
    result = await rpc.call("fail_campaign_message", {**fence(item), "p_error": "HTTP 503"})
    assert result == {
        "ok": True,
        "reason": None,
        "status": "failed",
        "retry_count": 3,
        "next_attempt_at": None,
        "brake": None,  # no send failed: the failure brake was not tripped
    }
    assert (await message_row(conn, message_id))["status"] == "failed"
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 1


async def test_permanent_failure_fails_at_once(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded, item = await claim_one(conn, rpc)
    result = await rpc.call(
        "fail_campaign_message",
        {**fence(item), "p_error": "invalid phone number", "p_retryable": False},
    )
    assert result["status"] == "failed"
    assert result["retry_count"] == 0
    row = await message_row(conn, item["id"])
    assert (row["status"], row["retry_count"]) == ("failed", 0)
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 1


async def test_a_retry_keeps_text_and_delivered_parts(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, item = await to_sending(conn, rpc)
    await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0"},
    )
    await rpc.call("fail_campaign_message", {**fence(item), "p_error": "send timed out"})
    await conn.execute("update campaign_messages set scheduled_at = now() - interval '1s'")

    [again] = await claim(rpc)
    assert again["parts_sent"] == 1
    assert again["message_parts"] == PARTS
    await rpc.call("start_campaign_message", fence(again))
    # A resumed message keeps its delivered text even if other text is offered.
    result = await save(rpc, again, parts=["Completely different text now."])
    assert result["ok"] is True
    row = await message_row(conn, again["id"])
    assert row["message_parts"] == PARTS
    assert row["parts_sent"] == 1


async def test_skip(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, item = await claim_one(conn, rpc)
    assert await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "lead deleted"}) == {
        "ok": True,
        "reason": None,
    }
    row = await message_row(conn, item["id"])
    assert (row["status"], row["error_message"], row["lock_token"]) == (
        "skipped",
        "lead deleted",
        None,
    )


async def test_release_returns_claims_to_pending_without_spending_a_retry(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=3)
    items = await claim(rpc, batch=3)
    later = datetime.now(UTC) + timedelta(hours=2)

    released = await rpc.call(
        "release_campaign_messages",
        {
            "p_messages": [{"id": i["id"], "lock_token": i["lock_token"]} for i in items[:2]],
            "p_not_before": later,
        },
    )

    assert released == 2
    for item in items[:2]:
        row = await message_row(conn, item["id"])
        assert (row["status"], row["retry_count"], row["lock_token"]) == ("pending", 0, None)
        assert abs((row["scheduled_at"] - later).total_seconds()) < 0.01
    assert (await message_row(conn, items[2]["id"]))["status"] == "queued"
    # Without p_not_before the schedule is kept, so the message is due again at once.
    released = await rpc.call(
        "release_campaign_messages",
        {"p_messages": [{"id": items[2]["id"], "lock_token": items[2]["lock_token"]}]},
    )
    assert released == 1
    assert [m["id"] for m in await claim(rpc)] == [items[2]["id"]]
