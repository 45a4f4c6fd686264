"""Odd but storable input to the fenced writes answers {ok: false, reason} or is clamped.

A raise would fail the worker's whole call for one message; an answer lets it decide.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.store.postgres import PostgresRpc
from tests.sql.helpers import message_row
from tests.sql.messages import PARTS, claim_one, fence, save, to_sending


async def started(conn: asyncpg.Connection, rpc: PostgresRpc) -> dict[str, Any]:
    _, item = await claim_one(conn, rpc)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    return item


async def save_with(rpc: PostgresRpc, item: dict[str, Any], **changes: Any) -> Any:
    args = {
        **fence(item),
        "p_generated_message": " ".join(PARTS),
        "p_parts": PARTS,
        "p_ai_tokens_used": 120,
        "p_ai_generation_time_ms": 340,
        "p_split_time_ms": 25,
    }
    args.update(changes)
    return await rpc.call("save_generated_message", args)


async def test_save_clamps_negative_counts_to_zero(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    item = await started(conn, rpc)
    result = await save_with(
        rpc, item, p_ai_tokens_used=-5, p_ai_generation_time_ms=-1, p_split_time_ms=-2_000_000
    )
    assert result["ok"] is True
    row = await message_row(conn, item["id"])
    assert (row["ai_tokens_used"], row["ai_generation_time_ms"], row["split_time_ms"]) == (0, 0, 0)


@pytest.mark.parametrize(
    "parts_sql",
    [
        "null",
        "'null'::jsonb",
        "'{}'::jsonb",
        '\'{"0": "Oi"}\'::jsonb',
        "'\"Oi Ana, tudo bem?\"'::jsonb",
        "'42'::jsonb",
        "'[]'::jsonb",
        "'[1, \"Oi Ana\"]'::jsonb",
        "'[null]'::jsonb",
        '\'[{"text": "Oi"}]\'::jsonb',
        "'[[\"Oi\"]]'::jsonb",
        "'[true]'::jsonb",
    ],
)
async def test_save_refuses_parts_that_are_not_a_list_of_texts(
    conn: asyncpg.Connection, rpc: PostgresRpc, parts_sql: str
) -> None:
    # Called in SQL directly: JSON null and SQL null are different values here.
    item = await started(conn, rpc)
    result = await conn.fetchval(
        f"""select save_generated_message(
              p_message_id => $1, p_lock_token => $2, p_generated_message => 'Oi Ana, tudo bem?',
              p_parts => {parts_sql}, p_ai_tokens_used => 1, p_ai_generation_time_ms => 1,
              p_split_time_ms => 1)""",
        item["id"],
        item["lock_token"],
    )
    assert result == {"ok": False, "reason": "invalid_parts", "conversation_id": None}
    row = await message_row(conn, item["id"])
    assert (row["status"], row["message_parts"]) == ("generating", None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"p_generated_message": "x" * 70_000, "p_parts": ["x" * 70_000]}, "invalid_message"),
        ({"p_parts": ["Oi", "y" * 70_000]}, "invalid_parts"),
        ({"p_parts": [f"parte {i}" for i in range(21)]}, "invalid_parts"),
    ],
    ids=["enormous message", "enormous part", "too many parts"],
)
async def test_save_refuses_a_runaway_text(
    conn: asyncpg.Connection, rpc: PostgresRpc, changes: dict[str, Any], reason: str
) -> None:
    item = await started(conn, rpc)
    result = await save_with(rpc, item, **changes)
    assert result == {"ok": False, "reason": reason, "conversation_id": None}
    assert (await message_row(conn, item["id"]))["generated_message"] is None


@pytest.mark.parametrize(
    ("answer_sql", "inbox_status"),
    [
        ('\'{"connected": "maybe", "status": "flaky"}\'::jsonb', "flaky"),
        ('\'{"connected": null, "status": "unknown"}\'::jsonb', "unknown"),
        ('\'{"connected": {"a": 1}}\'::jsonb', None),
        ("'[true]'::jsonb", None),
        ("'\"connected\"'::jsonb", None),
        ("null::jsonb", None),
    ],
)
async def test_save_treats_an_odd_inbox_answer_as_not_connected(
    conn: asyncpg.Connection, rpc: PostgresRpc, answer_sql: str, inbox_status: str | None
) -> None:
    item = await started(conn, rpc)
    await conn.execute(
        f"""create or replace function check_campaign_instance_status(p_inbox_id uuid)
            returns jsonb language sql as $$ select {answer_sql} $$"""
    )
    result = await save(rpc, item)
    assert result == {
        "ok": False,
        "reason": "inbox_disconnected",
        "conversation_id": None,
        "inbox_status": inbox_status,
    }


@pytest.mark.parametrize("connected", ["true", '"true"', '"t"', "1", '"yes"'])
async def test_save_accepts_every_spelling_of_connected(
    conn: asyncpg.Connection, rpc: PostgresRpc, connected: str
) -> None:
    item = await started(conn, rpc)
    answer = f'{{"connected": {connected}, "status": "open"}}'
    await conn.execute(
        f"""create or replace function check_campaign_instance_status(p_inbox_id uuid)
            returns jsonb language sql as $$ select '{answer}'::jsonb $$"""
    )
    assert (await save(rpc, item))["ok"] is True


@pytest.mark.parametrize("stored_parts", [{"0": "Oi"}, "Oi", [1, 2], [], None], ids=json.dumps)
async def test_save_refuses_to_resume_parts_it_cannot_read(
    conn: asyncpg.Connection, rpc: PostgresRpc, stored_parts: Any
) -> None:
    # Part 1 went out, but the stored parts are not a list of texts: which text the lead got
    # is unknown, so nothing more is sent (no half-old, half-new message).
    item = await started(conn, rpc)
    await conn.execute(
        "update campaign_messages set parts_sent = 1, message_parts = $2 where id = $1",
        item["id"],
        stored_parts,
    )
    result = await save(rpc, item)
    assert result == {"ok": False, "reason": "invalid_parts", "conversation_id": None}
    assert (await message_row(conn, item["id"]))["status"] == "generating"


@pytest.mark.parametrize("stored_parts", [{"0": "Oi"}, "Oi", 3, None], ids=json.dumps)
async def test_mark_part_sent_answers_when_the_stored_parts_are_not_a_list(
    conn: asyncpg.Connection, rpc: PostgresRpc, stored_parts: Any
) -> None:
    _, item = await to_sending(conn, rpc)
    await conn.execute(
        "update campaign_messages set message_parts = $2 where id = $1", item["id"], stored_parts
    )
    result = await rpc.call(
        "mark_message_part_sent", {**fence(item), "p_part_index": 0, "p_provider_message_id": "w"}
    )
    assert result == {"ok": False, "reason": "invalid_parts", "completed": False}
    row = await message_row(conn, item["id"])
    assert (row["status"], row["parts_sent"]) == ("sending", 0)


@pytest.mark.parametrize("index", [2_147_483_647, -2_147_483_648, 3])
async def test_mark_part_sent_refuses_an_index_out_of_range(
    conn: asyncpg.Connection, rpc: PostgresRpc, index: int
) -> None:
    _, item = await to_sending(conn, rpc)
    result = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": index, "p_provider_message_id": "w"},
    )
    assert result == {"ok": False, "reason": "out_of_order", "completed": False}


async def test_fail_with_a_negative_retry_count_counts_from_zero(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    item = await started(conn, rpc)
    await conn.execute("update campaign_messages set retry_count = -4 where id = $1", item["id"])
    before = datetime.now(UTC)
    result = await rpc.call("fail_campaign_message", {**fence(item), "p_error": "HTTP 503"})
    assert (result["ok"], result["status"], result["retry_count"]) == (True, "pending", 1)
    row = await message_row(conn, item["id"])
    assert (row["status"], row["retry_count"]) == ("pending", 1)
    assert timedelta(minutes=4) < row["scheduled_at"] - before <= timedelta(minutes=5, seconds=1)
