"""The console's SQL in Postgres (sql/055_console.sql): campaign_queue_status's offset and
status filter (bad values refused naming the argument; the offset pages the same order the
limit does), and each run's failure groups, which requeue_campaign_run_failures matches
exactly."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign


async def status(conn: asyncpg.Connection, **args: Any) -> dict[str, Any]:
    named = ", ".join(f"{name} => ${i}" for i, name in enumerate(args, start=1))
    text = await conn.fetchval(f"select campaign_queue_status({named})::text", *args.values())
    return dict(json.loads(text))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"p_status": "sent"}, "p_status"),
        ({"p_offset": -1}, "p_offset"),
        ({"p_offset": 1_000_001}, "p_offset"),
    ],
)
async def test_a_bad_offset_or_status_is_refused_naming_it(
    conn: asyncpg.Connection, args: dict[str, Any], named: str
) -> None:
    await seed_campaign(conn, leads=1)
    with pytest.raises(asyncpg.InvalidParameterValueError, match=named):
        await status(conn, **args)


async def test_the_offset_pages_the_order_the_limit_shows(conn: asyncpg.Connection) -> None:
    first = await seed_campaign(conn, leads=1)
    for _ in range(4):
        await seed_campaign(conn, leads=1, inbox_id=first.inbox_id)
    await seed_campaign(conn, leads=1, run_status="paused")
    whole = [r["run_id"] for r in (await status(conn, p_limit=6))["runs"]]
    assert len(whole) == 6
    for offset in range(6):
        page = await status(conn, p_limit=2, p_offset=offset)
        assert [r["run_id"] for r in page["runs"]] == whole[offset : offset + 2]
        assert page["runs_total"] == 6
    # the old call, without the new arguments, answers as before
    assert [r["run_id"] for r in (await status(conn))["runs"]] == whole
    running = await status(conn, p_status="running", p_limit=3, p_offset=3)
    assert [r["run_id"] for r in running["runs"]] == whole[3:5]
    assert running["runs_total"] == 5
    assert running["queue"] == (await status(conn))["queue"]  # the queue: every active run


async def test_each_failure_group_is_what_the_requeue_of_it_takes(
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    other = await seed_campaign(conn, leads=1)
    errors = [
        "send failed: HTTP 400 for 5511900000001",
        "send failed: HTTP 400 for 5511900000002",
        "send failed: HTTP 500 (request 3f2a9c1e-7d4b-4c1a-9e8f-0a1b2c3d4e5f)",
        "",
        None,
    ]
    failing = [*seeded.message_ids[:5], other.message_ids[0]]
    for message_id, error in zip(failing, [*errors, "x"], strict=True):
        await conn.execute(
            "update campaign_messages set status = 'failed', error_message = $2 where id = $1",
            message_id,
            error,
        )
    runs = [str(seeded.run_id), str(other.run_id)]
    groups = json.loads(await conn.fetchval("select campaign_console_run_failures($1)::text", runs))
    assert groups[str(other.run_id)] == [{"reason": "x", "count": 1}]
    assert groups[str(seeded.run_id)] == [
        {"reason": "send failed: HTTP 400 for <n>", "count": 2},
        {"reason": "unknown error", "count": 2},
        {"reason": "send failed: HTTP 500 (request <id>)", "count": 1},
    ]
    for group in groups[str(seeded.run_id)]:
        answer = json.loads(
            await conn.fetchval(
                "select requeue_campaign_run_failures($1, $2)::text",
                seeded.run_id,
                group["reason"],
            )
        )
        assert answer["messages_changed"] == group["count"], group
    assert await conn.fetchval("select campaign_console_run_failures($1)::text", runs) == (
        f'{{"{other.run_id}": [{{"count": 1, "reason": "x"}}]}}'
    )
