"""Small helpers for calling the SQL functions and reading rows in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.store.postgres import PostgresRpc


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
