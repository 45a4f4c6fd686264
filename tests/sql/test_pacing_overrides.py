"""Invalid overrides are refused when written, with an error naming the column; a bad row
written before the constraints existed neither fails the upgrade nor the functions that read
it: they take it as unset."""

from __future__ import annotations

import math
import uuid
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import OVERRIDES_MIGRATION, claim, write_before_the_constraints
from tests.sql.test_pacing import pacing, set_pacing, take

MIGRATION = OVERRIDES_MIGRATION


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        ({"min_gap_s": math.nan}, "min_gap_s"),
        ({"min_gap_s": math.inf}, "min_gap_s"),
        ({"min_gap_s": -1.0}, "min_gap_s"),
        ({"max_gap_s": math.nan}, "max_gap_s"),
        ({"max_gap_s": math.inf}, "max_gap_s"),
        ({"min_gap_s": 30.0, "max_gap_s": 10.0}, "max_gap_s: not below min_gap_s"),
        ({"daily_cap": -5}, "daily_cap"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": " "}, "timezone"),
    ],
)
async def test_an_invalid_override_is_refused_naming_its_column(
    conn: asyncpg.Connection, columns: dict[str, Any], named: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=20.0, max_gap_s=60.0, daily_cap=100)

    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await set_pacing(conn, seeded.inbox_id, **columns)  # an upsert: an update here
    with pytest.raises(asyncpg.CheckViolationError):
        await set_pacing(conn, uuid.uuid4(), **columns)  # an insert

    assert named in str(refused.value)
    row = await conn.fetchrow(
        "select min_gap_s, max_gap_s, daily_cap, timezone from campaign_inbox_pacing"
    )
    assert tuple(row) == (20.0, 60.0, 100, None)  # nothing changed


async def test_valid_overrides_are_taken(conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await set_pacing(
        conn, seeded.inbox_id, min_gap_s=0.0, max_gap_s=0.0, daily_cap=0, timezone="Asia/Tokyo"
    )
    await set_pacing(conn, seeded.inbox_id, min_gap_s=45.0, max_gap_s=None, daily_cap=None)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=None, max_gap_s=5.0, timezone=None)


async def test_a_bad_row_written_before_neither_fails_the_upgrade_nor_the_readers(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await write_before_the_constraints(
        conn, seeded.inbox_id, min_gap_s=math.nan, max_gap_s=math.inf, timezone="Mars/Base"
    )
    # The constraints exist, not valid while the row breaks them, enforced on new writes.
    states = await conn.fetch(
        """select conname, convalidated from pg_constraint
            where conrelid = 'campaign_inbox_pacing'::regclass and contype = 'c'"""
    )
    assert len(states) == 5
    assert {r["conname"] for r in states if not r["convalidated"]} == {
        "min_gap_s: null or a finite number of seconds >= 0",
        "max_gap_s: null or a finite number of seconds >= 0",
        "max_gap_s: not below min_gap_s",  # NaN is above every number in Postgres
        "timezone: null or a time zone Postgres knows",
    }
    with pytest.raises(asyncpg.CheckViolationError):
        await set_pacing(conn, uuid.uuid4(), min_gap_s=math.nan)

    # Read as unset: the service's settings (a 0.2 s gap, the setting's zone) apply.
    status = await rpc.call(
        "campaign_queue_status",
        {**pacing(0.2, 0.2), "p_inbox_timezone": "Asia/Tokyo"},
    )
    [inbox] = status["inboxes"]
    assert (inbox["min_gap_s"], inbox["max_gap_s"], inbox["timezone"]) == (0.2, 0.2, "Asia/Tokyo")
    first, second = await claim(rpc, 5, **pacing(0))  # no gap: both at once
    assert (await take(rpc, first, **pacing(0.2, 0.2)))["ok"] is True
    refused = await take(rpc, second, **pacing(0.2, 0.2))
    assert (refused["reason"], float(refused["wait_s"]) < 0.3) == ("gap", True)

    # Fixed, and applied again: validated.
    await set_pacing(conn, seeded.inbox_id, min_gap_s=None, max_gap_s=None, timezone=None)
    await conn.execute(MIGRATION.read_text(encoding="utf-8"))
    assert await conn.fetchval(
        """select bool_and(convalidated) from pg_constraint
            where conrelid = 'campaign_inbox_pacing'::regclass and contype = 'c'"""
    )


async def test_a_huge_finite_gap_is_read_as_the_claim_reads_it_a_day_at_most(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # A finite gap passes the constraints however large; the claim and take_inbox_slot read it
    # as a day at most (cq_inbox_limits). The status read it raw: its ETA overflowed bigint
    # and GET /status answered 503 for every inbox.
    seeded = await seed_campaign(conn, leads=3)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=3e38, max_gap_s=3e38)

    status = await rpc.call("campaign_queue_status", pacing(0))

    [inbox] = status["inboxes"]
    assert (inbox["min_gap_s"], inbox["max_gap_s"]) == (86400, 86400)
    [run] = status["runs"]
    assert run["eta_s"] >= 2 * 86400
