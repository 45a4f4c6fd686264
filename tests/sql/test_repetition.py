"""The repetition guard in Postgres (047_repetition_guard.sql): the probe at save, the record
when the first part's slot is taken, its 24-hour window, per inbox, two instances racing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any
from unittest.mock import ANY

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row
from tests.sql.messages import PARTS, fence
from tests.sql.waiting import connection, wait_until_blocked

HASH = "a" * 64
OTHER_HASH = "b" * 64
UNPACED = {"p_min_gap_s": 0, "p_max_gap_s": 0, "p_daily_cap": 0}


async def started(
    conn: asyncpg.Connection, rpc: PostgresRpc, leads: int = 2, **seed: Any
) -> tuple[SeededCampaign, list[dict[str, Any]]]:
    seeded = await seed_campaign(conn, leads=leads, **seed)
    items = await claim(rpc, leads, p_run_id=seeded.run_id)
    for item in items:
        assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    return seeded, items


async def save(rpc: PostgresRpc, item: dict[str, Any], text_hash: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {
        **fence(item),
        "p_generated_message": " ".join(PARTS),
        "p_parts": PARTS,
        "p_ai_tokens_used": 10,
        "p_ai_generation_time_ms": 100,
        "p_split_time_ms": 0,
    }
    if text_hash is not None:
        args["p_text_hash"] = text_hash
    result: dict[str, Any] = await rpc.call("save_generated_message", args)
    return result


async def take(rpc: PostgresRpc, item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await rpc.call("take_inbox_slot", {**fence(item), **UNPACED})
    return result


async def sent(rpc: PostgresRpc, item: dict[str, Any], text_hash: str = HASH) -> None:
    """Saved with the hash and its first part's slot taken: the inbox sent it."""
    assert (await save(rpc, item, text_hash))["ok"] is True
    assert (await take(rpc, item))["ok"] is True


async def test_save_refuses_a_text_its_inbox_sent_and_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, (first, second) = await started(conn, rpc)
    await sent(rpc, first)
    recorded = await conn.fetchrow("select * from campaign_inbox_sent_texts")
    assert recorded is not None
    assert (recorded["inbox_id"], recorded["text_hash"], str(recorded["message_id"])) == (
        seeded.inbox_id,
        HASH,
        first["id"],
    )
    before = await message_row(conn, second["id"])

    refused = await save(rpc, second, HASH)

    assert (refused["ok"], refused["reason"]) == (False, "repeated")
    assert await message_row(conn, second["id"]) == before
    saved = await save(rpc, second, OTHER_HASH)  # the text written once more, varied
    assert saved["ok"] is True
    assert (await message_row(conn, second["id"]))["text_hash"] == OTHER_HASH
    assert (await message_row(conn, first["id"]))["text_hash"] == HASH


async def test_the_window_is_24_hours(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    _, (first, second) = await started(conn, rpc)
    await sent(rpc, first)
    await conn.execute(
        "update campaign_inbox_sent_texts set sent_at = now() - interval '23 hours 59 minutes'"
    )
    assert (await save(rpc, second, HASH))["reason"] == "repeated"
    await conn.execute("update campaign_inbox_sent_texts set sent_at = now() - interval '24 hours'")

    assert (await save(rpc, second, HASH))["ok"] is True
    assert (await take(rpc, second))["ok"] is True  # the old record now names this message
    row = await conn.fetchrow("select * from campaign_inbox_sent_texts")
    assert row is not None
    assert str(row["message_id"]) == second["id"]


async def test_the_guard_is_per_inbox(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded, (first,) = await started(conn, rpc, leads=1)
    _, (elsewhere,) = await started(conn, rpc, leads=1, workspace_id=seeded.workspace_id)
    await sent(rpc, first)

    assert (await save(rpc, elsewhere, HASH))["ok"] is True
    assert (await take(rpc, elsewhere))["ok"] is True
    assert await conn.fetchval("select count(*) from campaign_inbox_sent_texts") == 2


async def test_no_hash_never_repeats_and_records_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, (first, second) = await started(conn, rpc)
    assert (await save(rpc, first, None))["ok"] is True  # an older caller, or the guard off
    assert (await take(rpc, first))["ok"] is True
    assert (await save(rpc, second, None))["ok"] is True
    assert (await take(rpc, second))["ok"] is True
    assert await conn.fetchval("select count(*) from campaign_inbox_sent_texts") == 0


async def test_a_message_asking_again_for_its_slot_is_not_its_own_repeat(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, (first, _) = await started(conn, rpc)
    await sent(rpc, first)
    assert (await take(rpc, first))["ok"] is True  # after a gap, say
    assert (await save(rpc, first, HASH))["ok"] is True  # saved again after a hold-back


async def test_a_message_partly_delivered_is_never_checked_again(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, (first, second) = await started(conn, rpc)
    await sent(rpc, first)
    await conn.execute(
        """update campaign_messages set status = 'sending', parts_sent = 1,
                  generated_message = $2, message_parts = $3::jsonb, text_hash = $4
            where id = $1""",
        uuid.UUID(second["id"]),
        " ".join(PARTS),
        PARTS,
        HASH,
    )

    assert await save(rpc, second, HASH) == {"ok": True, "reason": None, "conversation_id": ANY}
    assert (await take(rpc, second))["ok"] is True
    row = await message_row(conn, second["id"])
    assert (row["generated_message"], row["text_hash"]) == (" ".join(PARTS), HASH)


@pytest.mark.parametrize("first_commits", [True, False])
async def test_two_instances_saving_the_same_text_for_one_inbox_at_once(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str, first_commits: bool
) -> None:
    """The second save waits on the first's claim of the hash, then is refused if it
    committed: never both through."""
    _, (first, second) = await started(conn, rpc)
    before = await message_row(conn, second["id"])
    async with connection(db_dsn) as one, connection(db_dsn) as other:
        pid = await other.fetchval("select pg_backend_pid()")
        tx = one.transaction()
        await tx.start()
        saved = await one.fetchval(
            "select save_generated_message($1, $2, 'Oi', '[\"Oi\"]', 1, 1, 0, null, $3)",
            uuid.UUID(first["id"]),
            uuid.UUID(first["lock_token"]),
            HASH,
        )
        assert saved["ok"] is True
        racing = asyncio.create_task(
            other.fetchval(
                "select save_generated_message($1, $2, 'Oi', '[\"Oi\"]', 1, 1, 0, null, $3)",
                uuid.UUID(second["id"]),
                uuid.UUID(second["lock_token"]),
                HASH,
            )
        )
        await wait_until_blocked(conn, pid)
        await (tx.commit() if first_commits else tx.rollback())
        answer = await racing

    row = await message_row(conn, second["id"])
    holder = await conn.fetchval("select message_id from campaign_inbox_sent_texts")
    if first_commits:
        assert (answer["ok"], answer["reason"]) == (False, "repeated")
        assert row == before
        assert str(holder) == first["id"]
    else:
        assert answer["ok"] is True
        assert row["text_hash"] == HASH
        assert str(holder) == second["id"]


async def test_the_slot_counts_the_24_hours_from_the_send(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Saved, then held back (say, by the daily cap) for hours: the slot claims the hash
    again, so the window starts when the first part goes."""
    _, (first, _) = await started(conn, rpc)
    assert (await save(rpc, first, HASH))["ok"] is True
    await conn.execute("update campaign_inbox_sent_texts set sent_at = now() - interval '20 hours'")

    assert (await take(rpc, first))["ok"] is True

    age = await conn.fetchval(
        "select extract(epoch from clock_timestamp() - sent_at) from campaign_inbox_sent_texts"
    )
    assert float(age) < 60


async def test_a_slot_whose_claim_lapsed_and_was_taken_is_refused_and_its_text_dropped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, (first, second) = await started(conn, rpc)
    assert (await save(rpc, first, HASH))["ok"] is True
    await conn.execute("update campaign_inbox_sent_texts set sent_at = now() - interval '25 hours'")
    await sent(rpc, second)  # the claim lapsed: the same text is the other message's now

    refused = await take(rpc, first)

    assert (refused["ok"], refused["reason"]) == (False, "repeated")
    row = await message_row(conn, first["id"])
    # dropped, so its retry writes a new text instead of reusing this one
    assert (row["generated_message"], row["message_parts"], row["text_hash"]) == (None, None, None)
    failed = await rpc.call("fail_campaign_message", {**fence(first), "p_error": "repeated text"})
    assert (failed["status"], failed["retry_count"]) == ("pending", 1)


async def test_tidy_forgets_records_past_the_window(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, (first, second) = await started(conn, rpc)
    await sent(rpc, first)
    await sent(rpc, second, OTHER_HASH)
    await conn.execute(
        "update campaign_inbox_sent_texts set sent_at = now() - interval '25 hours'"
        " where text_hash = $1",
        HASH,
    )

    tidied = await rpc.call("tidy_campaign_queue", {})

    assert tidied["sent_texts_forgotten"] == 1
    assert await conn.fetch("select text_hash from campaign_inbox_sent_texts") == [(OTHER_HASH,)]


async def test_the_probe_is_one_primary_key_lookup(conn: asyncpg.Connection) -> None:
    """The claim's own statement (read from the function), on a table of 200k records of
    1,000 inboxes: an insert whose conflict is found through the primary key, no scan."""
    await conn.execute(
        """insert into campaign_inbox_sent_texts (inbox_id, text_hash, message_id, sent_at)
           select ('00000000-0000-0000-0000-' || lpad((i % 1000)::text, 12, '0'))::uuid,
                  md5(i::text), gen_random_uuid(), now() - (i % 48) * interval '1 hour'
             from generate_series(1, 200000) i;
           analyze campaign_inbox_sent_texts"""
    )
    body = await conn.fetchval("select prosrc from pg_proc where proname = 'cq_claim_text'")
    statement = body[body.index("insert into") : body.index(";", body.index("insert into"))]
    query = (
        statement.replace("p_inbox_id", "$1::uuid")
        .replace("p_text_hash", "$2::text")
        .replace("p_message_id", "$3::uuid")
    )
    tx = conn.transaction()  # analyze runs the statement: rolled back after
    await tx.start()
    try:
        plan = await conn.fetchval(
            f"explain (analyze, format json) {query}",
            uuid.UUID("00000000-0000-0000-0000-000000000007"),
            hashlib.md5(b"7").hexdigest(),  # a record of that inbox, 7 hours old: a conflict
            uuid.uuid4(),
        )
    finally:
        await tx.rollback()
    [top] = plan if isinstance(plan, list) else json.loads(plan)
    root = top["Plan"]
    print(json.dumps(root, indent=1))  # the bench's evidence: pytest -s shows it
    assert root["Operation"] == "Insert"
    assert root["Conflict Arbiter Indexes"] == ["campaign_inbox_sent_texts_pkey"]
    assert root["Conflicting Tuples"] == 1
    assert not [n for n in _nodes([top]) if "Scan" in n["Node Type"]]


def _nodes(plan: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [entry["Plan"] for entry in plan]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found
