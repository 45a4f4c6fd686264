"""RPC over a direct asyncpg pool (DATABASE_URL): the embedded default and the tests."""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg

from app.store.rpc import DatabaseError

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


async def init_connection(conn: asyncpg.Connection) -> None:
    """json/jsonb as Python values both ways, as PostgREST does."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def create_pool(
    dsn: str, *, statement_cache_size: int = 100, max_size: int = 10
) -> asyncpg.Pool:
    """A pool that also works behind a transaction-mode pooler when statement_cache_size=0."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            statement_cache_size=statement_cache_size,
            init=init_connection,
            command_timeout=60,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to the database: {type(exc).__name__}") from exc
    return pool


class PostgresRpc:
    """Calls a SQL function by name with named arguments: `select fn(p_x => $1, ...)`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        if not _IDENTIFIER.match(function) or not all(_IDENTIFIER.match(k) for k in args):
            raise ValueError(f"not a function or argument name: {function}")
        placeholders = ", ".join(f"{name} => ${i}" for i, name in enumerate(args, start=1))
        query = f"select public.{function}({placeholders})"
        try:
            return await self._pool.fetchval(query, *args.values())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseError(f"{function} failed: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._pool.fetchval("select 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseError(f"database unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._pool.close()
