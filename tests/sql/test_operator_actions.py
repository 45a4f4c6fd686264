"""Operators' actions as RPCs (sql/052_operator_runs.sql, 053_operator_inboxes.sql): each
changes what it says, or refuses a bad id or a wrong state and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row, run_row
from tests.sql.messages import fence, save, send_all_parts, to_sending

NOWHERE = uuid.UUID("00000000-0000-4000-8000-000000000000")
NO_NUMBER_HEALTH = {"warmup_days": None, "warmup_start_cap": None, "hourly_cap": None}


async def statuses(conn: asyncpg.Connection, run_id: uuid.UUID) -> list[tuple[str, Any]]:
    rows = await conn.fetch(
        "select status, error_message from campaign_messages where run_id = $1 order by id",
        run_id,
    )
    return [(r["status"], r["error_message"]) for r in rows]


async def test_pause_then_resume_answer_what_they_changed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    run = seeded.run_id

    paused = await rpc.call("operator_pause_campaign_run", {"p_run_id": run, "p_reason": "check"})
    assert paused == {
        "ok": True,
        "reason": None,
        "run_id": str(run),
        "status_before": "running",
        "status_after": "paused",
        "messages_changed": 0,
    }
    assert (await run_row(conn, run))["error_message"] == "check"
    again = await rpc.call("operator_pause_campaign_run", {"p_run_id": run})
    assert (again["ok"], again["reason"], again["status_after"]) == (False, "not_running", "paused")

    resumed = await rpc.call("operator_resume_campaign_run", {"p_run_id": run})
    assert (resumed["ok"], resumed["status_before"], resumed["status_after"]) == (
        True,
        "paused",
        "running",
    )
    assert resumed["messages_changed"] == 2  # both were due: re-spaced from now
    again = await rpc.call("operator_resume_campaign_run", {"p_run_id": run})
    assert (again["ok"], again["reason"]) == (False, "not_paused")
    assert (await run_row(conn, run))["status"] == "running"


@pytest.mark.parametrize(
    "function",
    [
        "operator_pause_campaign_run",
        "operator_resume_campaign_run",
        "cancel_campaign_run",
        "requeue_campaign_run_failures",
    ],
)
async def test_an_unknown_run_is_refused(rpc: PostgresRpc, function: str) -> None:
    answer = await rpc.call(function, {"p_run_id": NOWHERE})
    assert (answer["ok"], answer["reason"], answer["status_before"]) == (
        False,
        "run_not_found",
        None,
    )


async def test_resume_refuses_while_the_inbox_is_down(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1, run_status="paused", inbox_status="disconnected")
    answer = await rpc.call("operator_resume_campaign_run", {"p_run_id": seeded.run_id})
    assert (answer["ok"], answer["reason"]) == (False, "inbox_disconnected")
    assert (await run_row(conn, seeded.run_id))["status"] == "paused"


async def test_cancel_skips_pending_messages_and_the_run_is_never_claimed_or_completed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    answer = await rpc.call("cancel_campaign_run", {"p_run_id": seeded.run_id})
    assert answer == {
        "ok": True,
        "reason": None,
        "run_id": str(seeded.run_id),
        "status_before": "running",
        "status_after": "cancelled",
        "messages_changed": 3,
    }
    assert await statuses(conn, seeded.run_id) == [("skipped", "cancelled")] * 3
    assert await claim(rpc) == []
    assert await rpc.call("finalize_campaign_runs", {"p_run_ids": [seeded.run_id]}) == []
    run = await run_row(conn, seeded.run_id)
    assert run["status"] == "cancelled"
    assert run["completed_at"] is not None
    refused = await rpc.call("requeue_campaign_run_failures", {"p_run_id": seeded.run_id})
    assert (refused["ok"], refused["reason"]) == (False, "run_cancelled")
    assert (await rpc.call("operator_resume_campaign_run", {"p_run_id": seeded.run_id}))[
        "reason"
    ] == "not_paused"


async def test_cancel_refuses_a_run_that_ended(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded = await seed_campaign(conn, leads=1, run_status="completed")
    answer = await rpc.call("cancel_campaign_run", {"p_run_id": seeded.run_id})
    assert (answer["ok"], answer["reason"], answer["status_after"]) == (
        False,
        "not_cancellable",
        "completed",
    )
    assert await statuses(conn, seeded.run_id) == [("pending", None)]


async def test_a_message_being_written_is_skipped_when_its_worker_gives_it_back(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True

    answer = await rpc.call("cancel_campaign_run", {"p_run_id": seeded.run_id})
    assert answer["messages_changed"] == 0  # leased: the cancel never waits on it
    saved = await save(rpc, item)
    assert (saved["ok"], saved["reason"]) == (False, "run_not_running")
    lease = {"id": item["id"], "lock_token": item["lock_token"]}
    assert await rpc.call("release_campaign_messages", {"p_messages": [lease]}) == 1

    row = await message_row(conn, item["id"])
    assert (row["status"], row["error_message"], row["lock_token"]) == (
        "skipped",
        "cancelled",
        None,
    )
    assert (await run_row(conn, seeded.run_id))["status"] == "cancelled"


async def test_a_message_whose_text_was_saved_finishes_all_its_parts(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, item = await to_sending(conn, rpc)
    first = await rpc.call(
        "mark_message_part_sent", {**fence(item), "p_part_index": 0, "p_provider_message_id": "w"}
    )
    assert first["ok"] is True

    await rpc.call("cancel_campaign_run", {"p_run_id": seeded.run_id})
    last = await send_all_parts(rpc, item)

    assert last == {"ok": True, "reason": None, "completed": True}
    row = await message_row(conn, item["id"])
    assert (row["status"], row["parts_sent"]) == ("sent", 3)
    assert (await run_row(conn, seeded.run_id))["status"] == "cancelled"


async def test_a_retry_scheduled_after_the_cancel_is_skipped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc)
    await rpc.call("cancel_campaign_run", {"p_run_id": seeded.run_id})
    failed = await rpc.call(
        "fail_campaign_message", {**fence(item), "p_error": "HTTP 500", "p_retryable": True}
    )
    assert failed["ok"] is True
    assert await statuses(conn, seeded.run_id) == [("skipped", "cancelled")]


async def fail_for_good(conn: asyncpg.Connection, message_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        "update campaign_messages set status = 'failed', error_message = $2 where id = $1",
        message_id,
        error,
    )


async def test_requeue_one_reason_group_leaves_the_others_failed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    one, two, three = seeded.message_ids
    await fail_for_good(conn, one, "send failed: HTTP 500 after 1200 ms")
    await fail_for_good(conn, two, "send failed: HTTP 500 after 980 ms")
    await fail_for_good(conn, three, "model refused")
    await conn.execute(
        "update campaign_runs set status = 'completed', leads_failed = 3 where id = $1",
        seeded.run_id,
    )

    group = "send failed: HTTP 500 after <n> ms"
    answer = await rpc.call(
        "requeue_campaign_run_failures", {"p_run_id": seeded.run_id, "p_reason": group}
    )

    assert answer == {
        "ok": True,
        "reason": None,
        "run_id": str(seeded.run_id),
        "status_before": "completed",
        "status_after": "running",
        "messages_changed": 2,
    }
    assert [(await message_row(conn, m))["status"] for m in (one, two, three)] == [
        "pending",
        "pending",
        "failed",
    ]
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_failed"]) == ("running", 1)
    none_left = await rpc.call(
        "requeue_campaign_run_failures", {"p_run_id": seeded.run_id, "p_reason": group}
    )
    assert (none_left["ok"], none_left["reason"]) == (False, "nothing_to_requeue")
    rest = await rpc.call("requeue_campaign_run_failures", {"p_run_id": seeded.run_id})
    assert (rest["ok"], rest["messages_changed"]) == (True, 1)


async def pacing_row(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("select * from campaign_inbox_pacing where inbox_id = $1", inbox_id)
    return None if row is None else dict(row)


async def test_set_and_clear_inbox_pacing_keep_the_pacing_state(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    inbox = seeded.inbox_id
    await conn.execute(
        "insert into campaign_inbox_pacing_state (inbox_id, sent_today) values ($1, 7)", inbox
    )

    answer = await rpc.call(
        "set_inbox_pacing",
        {"p_inbox_id": inbox, "p_min_gap_s": 30, "p_max_gap_s": 90, "p_timezone": "UTC"},
    )
    assert answer == {
        "ok": True,
        "reason": None,
        "inbox_id": str(inbox),
        "overrides_before": None,
        "overrides_after": {"min_gap_s": 30, "max_gap_s": 90, "daily_cap": None, "timezone": "UTC"}
        | NO_NUMBER_HEALTH,
        "first_sent_day_before": None,
        "first_sent_day_after": None,
    }
    capped = await rpc.call("set_inbox_pacing", {"p_inbox_id": inbox, "p_daily_cap": 50})
    assert capped["overrides_after"] == {
        "min_gap_s": 30,
        "max_gap_s": 90,
        "daily_cap": 50,
        "timezone": "UTC",
        **NO_NUMBER_HEALTH,
    }

    cleared = await rpc.call("clear_inbox_pacing", {"p_inbox_id": inbox})
    assert (cleared["ok"], cleared["overrides_before"], cleared["overrides_after"]) == (
        True,
        capped["overrides_after"],
        None,
    )
    assert await pacing_row(conn, inbox) is None
    state = await conn.fetchval(
        "select sent_today from campaign_inbox_pacing_state where inbox_id = $1", inbox
    )
    assert state == 7
    again = await rpc.call("clear_inbox_pacing", {"p_inbox_id": inbox})
    assert (again["ok"], again["reason"]) == (False, "no_overrides")


@pytest.mark.parametrize(
    ("values", "field", "error"),
    [
        ({"p_min_gap_s": -1}, "min_gap_s", "min_gap_s: null or a finite number of seconds >= 0"),
        ({"p_min_gap_s": 60, "p_max_gap_s": 10}, "max_gap_s", "max_gap_s: not below min_gap_s"),
        ({"p_daily_cap": -5}, "daily_cap", "daily_cap: null or a whole number >= 0"),
        (
            {"p_timezone": "Mars/Olympus"},
            "timezone",
            "timezone: null or a time zone Postgres knows",
        ),
    ],
)
async def test_set_inbox_pacing_names_a_refused_value_and_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc, values: dict[str, Any], field: str, error: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await rpc.call("set_inbox_pacing", {"p_inbox_id": seeded.inbox_id, "p_daily_cap": 9})
    before = await pacing_row(conn, seeded.inbox_id)

    answer = await rpc.call("set_inbox_pacing", {"p_inbox_id": seeded.inbox_id, **values})

    assert (answer["ok"], answer["reason"], answer["field"], answer["error"]) == (
        False,
        "invalid_value",
        field,
        error,
    )
    assert await pacing_row(conn, seeded.inbox_id) == before


@pytest.mark.parametrize("function", ["set_inbox_pacing", "clear_inbox_pacing"])
async def test_an_unknown_inbox_is_refused(
    conn: asyncpg.Connection, rpc: PostgresRpc, function: str
) -> None:
    answer = await rpc.call(function, {"p_inbox_id": NOWHERE})
    assert (answer["ok"], answer["reason"]) == (False, "inbox_not_found")
    assert await pacing_row(conn, NOWHERE) is None


@pytest.mark.parametrize("role", ["anon", "authenticated"])
@pytest.mark.parametrize(
    "call",
    [
        "operator_pause_campaign_run($1)",
        "operator_resume_campaign_run($1)",
        "cancel_campaign_run($1)",
        "requeue_campaign_run_failures($1)",
        "set_inbox_pacing($1, 1)",
        "clear_inbox_pacing($1)",
    ],
)
async def test_only_the_service_role_may_act(
    conn: asyncpg.Connection, role: str, call: str
) -> None:
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"select {call}", NOWHERE)
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert await conn.fetchval(f"select {call}", NOWHERE) is not None
