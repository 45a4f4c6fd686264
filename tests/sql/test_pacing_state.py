"""Overrides and pacing state are apart: an operator deleting or editing an inbox's override
row never resets its last slot, last delivery or day count; an upgrade from the schema that
kept the state in the override table's own columns keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.migrations import SQL_DIR
from app.store.postgres import PostgresRpc
from tests.sql.test_pacing import claim_unpaced, pacing, set_pacing, take


async def test_deleting_an_override_keeps_the_inbox_gap(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    first, second = await claim_unpaced(rpc, 2)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=4, max_gap_s=4)
    assert (await take(rpc, first, **pacing(4)))["ok"] is True

    await conn.execute("delete from campaign_inbox_pacing where inbox_id = $1", seeded.inbox_id)

    refused = await take(rpc, second, **pacing(4))
    assert (refused["ok"], refused["reason"]) == (False, "gap")
    assert float(refused["wait_s"]) > 3.5


async def test_editing_an_override_keeps_the_day_count(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    items = await claim_unpaced(rpc, 3)
    await set_pacing(conn, seeded.inbox_id, daily_cap=5)
    for item in items[:2]:
        assert (await take(rpc, item, **pacing(0, cap=5)))["ok"] is True

    # An operator lowers the cap by deleting the row and writing it anew.
    await conn.execute("delete from campaign_inbox_pacing where inbox_id = $1", seeded.inbox_id)
    await set_pacing(conn, seeded.inbox_id, daily_cap=2)

    refused = await take(rpc, items[2], **pacing(0, cap=5))
    assert (refused["ok"], refused["reason"]) == (False, "daily_cap")


async def test_an_upgrade_keeps_the_state_the_override_table_held(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """The schema before the state had its own table: the same state in further columns of
    campaign_inbox_pacing (and its timezone column written by take_inbox_slot)."""
    seeded = await seed_campaign(conn, leads=1)
    [first] = await claim_unpaced(rpc, 1)
    await conn.execute(
        """alter table campaign_inbox_pacing
             add column next_slot_at timestamptz, add column last_slot_at timestamptz,
             add column last_slot_message_id uuid, add column sent_day date,
             add column sent_today int not null default 0, add column capped_day date,
             add column paced boolean not null default false, add column turn_message_id uuid,
             add column turn_until timestamptz;
           delete from campaign_inbox_pacing_state;"""
    )
    now = datetime.now(UTC)
    await conn.execute(
        """insert into campaign_inbox_pacing
             (inbox_id, daily_cap, next_slot_at, last_slot_at, sent_day, sent_today, paced,
              timezone)
           values ($1, 10, $2, $3, (now() at time zone 'Asia/Tokyo')::date, 7, true,
                   'Asia/Tokyo')""",
        seeded.inbox_id,
        now + timedelta(seconds=30),
        now - timedelta(seconds=1),
    )
    migration = (Path(SQL_DIR) / "016_pacing.sql").read_text(encoding="utf-8")

    await conn.execute(migration)
    await conn.execute(migration)  # idempotent: a second run finds nothing to move

    state = await conn.fetchrow(
        "select * from campaign_inbox_pacing_state where inbox_id = $1", seeded.inbox_id
    )
    assert state is not None
    assert (state["sent_today"], state["day_timezone"], state["paced"]) == (7, "Asia/Tokyo", True)
    assert state["next_slot_at"] == now + timedelta(seconds=30)
    override = await conn.fetchrow(
        "select * from campaign_inbox_pacing where inbox_id = $1", seeded.inbox_id
    )
    assert override is not None
    # Only the operator's columns are left; the zone the function wrote was state, not theirs.
    assert set(dict(override)) == {
        "inbox_id",
        "min_gap_s",
        "max_gap_s",
        "daily_cap",
        "timezone",
        "updated_at",
        "warmup_days",  # 040_inbox_hold.sql's
        "warmup_start_cap",
        "hourly_cap",
    }
    assert (override["daily_cap"], override["timezone"]) == (10, None)
    refused = await take(rpc, first, **pacing(1))
    assert (refused["ok"], refused["reason"]) == (False, "gap")
    assert float(refused["wait_s"]) > 25
