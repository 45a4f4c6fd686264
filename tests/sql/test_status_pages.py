"""campaign_queue_status's pages (docs/architecture.md, "Status"): at most p_limit runs,
running first and the most recently active first, runs_total counting them all; the queue and
the messages waiting for a retry still count every active run, whatever the page shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
from tests.sql.messages import fence
from tests.sql.test_status import work


async def status(rpc: PostgresRpc, **args: Any) -> Any:
    return await rpc.call("campaign_queue_status", args)


def run_ids(answer: dict[str, Any]) -> list[str]:
    return [r["run_id"] for r in answer["runs"]]


async def started(conn: asyncpg.Connection, run_id: uuid.UUID, hours_ago: float) -> None:
    await conn.execute(
        "update campaign_runs set started_at = now() - make_interval(secs => $2) where id = $1",
        run_id,
        hours_ago * 3600,
    )


async def test_running_runs_come_first_the_most_recently_active_first(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    oldest = await seed_campaign(conn, leads=3)
    older = await seed_campaign(conn, leads=3)
    newer = await seed_campaign(conn, leads=3)
    paused = await seed_campaign(conn, leads=3, run_status="paused")
    await started(conn, oldest.run_id, 3)
    await started(conn, older.run_id, 2)
    await started(conn, newer.run_id, 1)
    await work(rpc, oldest.run_id, sent=1)  # a send just now: the most recently active

    answer = await status(rpc)

    assert run_ids(answer) == [
        str(oldest.run_id),
        str(newer.run_id),
        str(older.run_id),
        str(paused.run_id),
    ]
    assert answer["runs_total"] == 4
    page = await status(rpc, p_limit=2)
    assert run_ids(page) == run_ids(answer)[:2]
    assert page["runs_total"] == 4


async def test_the_queue_and_retrying_count_every_active_run_not_only_the_page(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    runs = [
        await seed_campaign(conn, leads=3, first_scheduled_at=now - timedelta(minutes=m))
        for m in (30, 20, 10)
    ]  # each: 3 due, the oldest 30 minutes late
    await seed_campaign(conn, leads=2, first_scheduled_at=now + timedelta(hours=1))
    await claim(rpc, batch=1, p_run_id=runs[1].run_id)  # one in flight
    items = await claim(rpc, batch=1, p_run_id=runs[2].run_id)
    await rpc.call(
        "fail_campaign_message",
        {**fence(items[0]), "p_error": "openrouter: HTTP 500", "p_retryable": True},
    )

    whole = await status(rpc, p_limit=500)
    page = await status(rpc, p_limit=1)

    assert len(whole["runs"]) == 4
    assert len(page["runs"]) == 1
    assert page["runs_total"] == whole["runs_total"] == 4
    assert page["queue"] == whole["queue"]
    assert page["queue"]["due"] == 7  # 9 due, one in flight, one waiting for its retry
    assert page["queue"]["scheduled"] == 3  # the retry (+5 min) and the run an hour ahead
    assert page["queue"]["in_flight"] == 1
    assert 1790 <= page["queue"]["oldest_due_s"] <= 1860
    assert page["retrying"] == whole["retrying"]
    assert [r["count"] for r in page["retrying"]] == [1]


async def test_the_inboxes_are_those_of_the_runs_shown(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    shown = await seed_campaign(conn, leads=2)
    hidden = await seed_campaign(conn, leads=2)
    await started(conn, hidden.run_id, 1)  # older: after the page of one

    page = await status(rpc, p_limit=1)

    assert run_ids(page) == [str(shown.run_id)]
    assert [i["inbox_id"] for i in page["inboxes"]] == [str(shown.inbox_id)]
    assert (await status(rpc, p_limit=2))["runs_total"] == 2


async def test_a_run_asked_for_is_a_page_of_one(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    one = await seed_campaign(conn, leads=2)
    await seed_campaign(conn, leads=2)
    assert (await status(rpc, p_run_id=one.run_id))["runs_total"] == 1
    assert (await status(rpc, p_run_id=uuid.uuid4()))["runs_total"] == 0


@pytest.mark.parametrize("limit", [0, -1, 501, None])
async def test_a_limit_out_of_range_is_refused(conn: asyncpg.Connection, limit: int | None) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError, match="p_limit must be between 1"):
        await conn.fetchval("select campaign_queue_status(p_limit => $1)", limit)
