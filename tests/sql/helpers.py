"""Small helpers for calling the SQL functions and reading rows in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.store.migrations import SQL_DIR
from app.store.postgres import PostgresRpc

OVERRIDES_MIGRATION = SQL_DIR / "025_pacing_overrides.sql"


def hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


async def claim(rpc: PostgresRpc, batch: int = 5, **extra: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"p_batch_size": batch, "p_one_hour_ago": hour_ago()}
    args.update(extra)
    result: list[dict[str, Any]] = await rpc.call("get_and_lock_campaign_messages", args)
    return result


async def message_row(conn: asyncpg.Connection, message_id: uuid.UUID | str) -> dict[str, Any]:
    row = await conn.fetchrow("select * from campaign_messages where id = $1", message_id)
    assert row is not None
    return dict(row)


async def run_row(conn: asyncpg.Connection, run_id: uuid.UUID | str) -> dict[str, Any]:
    row = await conn.fetchrow("select * from campaign_runs where id = $1", run_id)
    assert row is not None
    return dict(row)


async def make_stale(conn: asyncpg.Connection, message_id: uuid.UUID | str, minutes: int) -> None:
    await conn.execute(
        "update campaign_messages set locked_at = now() - make_interval(mins => $2) where id = $1",
        message_id,
        minutes,
    )


async def write_before_the_constraints(
    conn: asyncpg.Connection, inbox_id: uuid.UUID, **columns: Any
) -> None:
    """An override row the table took before its constraints (a NaN, an Infinity), then the
    upgrade: the constraints dropped, the row written, the migration applied again."""
    for name in await conn.fetchval(
        """select array_agg(conname) from pg_constraint
            where conrelid = 'campaign_inbox_pacing'::regclass and contype = 'c'"""
    ):
        await conn.execute(f'alter table campaign_inbox_pacing drop constraint "{name}"')
    names = ["inbox_id", *columns]
    await conn.execute(
        f"""insert into campaign_inbox_pacing ({", ".join(names)})
            values ({", ".join(f"${i + 1}" for i in range(len(names)))})""",
        inbox_id,
        *columns.values(),
    )
    await conn.execute(OVERRIDES_MIGRATION.read_text(encoding="utf-8"))
