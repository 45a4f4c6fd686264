"""Two-connection interleavings: a second connection that waits until another is blocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from app.store.postgres import init_connection


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    await init_connection(c)
    try:
        yield c
    finally:
        await c.close()


async def wait_until_blocked(observer: asyncpg.Connection, pid: int, timeout_s: float = 10) -> None:
    """Returns once the backend `pid` waits on a heavyweight lock (a row or a table lock)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        waiting = await observer.fetchval(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")


async def wait_until_blocked_or_done(
    observer: asyncpg.Connection, pid: int, task: asyncio.Future[object], timeout_s: float = 10
) -> None:
    """Returns once the backend `pid` waits on a heavyweight lock, or once `task` (its call)
    has finished: for interleavings where a correct call never waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done() and loop.time() < deadline:
        waiting = await observer.fetchval(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    if not task.done():
        raise AssertionError(f"backend {pid} neither waited on a lock nor finished")
