"""RPC over a direct asyncpg pool (DATABASE_URL): the embedded default and the tests."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg

from app.store.rpc import DatabaseError, is_data_error

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# InternalClientError: asyncpg's own state gets confused when the server cuts a connection
# mid-operation (seen with pg_terminate_backend during a pool release).
_DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


async def init_connection(conn: asyncpg.Connection) -> None:
    """json/jsonb as Python values both ways, as PostgREST does."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)  # UUIDs and datetimes inside JSON arguments


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
    except _DB_ERRORS as exc:
        raise _database_error("cannot connect to the database", exc) from exc
    return pool


def _database_error(what: str, exc: BaseException) -> DatabaseError:
    """`<what>: <ErrorClass> (SQLSTATE <code>)`. The server's message is left out: it can
    echo an argument (`invalid input syntax for type uuid: "<value>"`)."""
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    return DatabaseError(
        f"{what}: {type(exc).__name__}{code}", data_error=is_data_error(sqlstate), sqlstate=sqlstate
    )


class PostgresRpc:
    """Calls a SQL function by name with named arguments: `select fn(p_x => $1, ...)`.

    The pool is created on first use, not at start-up: a cold start stays light, and a
    database that is down answers 503 per request instead of stopping the service.
    """

    def __init__(self, dsn: str, *, statement_cache_size: int = 100, max_size: int = 10) -> None:
        self._dsn = dsn
        self._statement_cache_size = statement_cache_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await create_pool(
                        self._dsn,
                        statement_cache_size=self._statement_cache_size,
                        max_size=self._max_size,
                    )
        return self._pool

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        if not _IDENTIFIER.match(function) or not all(_IDENTIFIER.match(k) for k in args):
            raise ValueError(f"not a function or argument name: {function}")
        placeholders = ", ".join(f"{name} => ${i}" for i, name in enumerate(args, start=1))
        query = f"select public.{function}({placeholders})"
        pool = await self._get_pool()
        try:
            return await pool.fetchval(query, *args.values())
        except _DB_ERRORS as exc:
            raise _database_error(f"{function} failed", exc) from exc

    async def ping(self) -> None:
        pool = await self._get_pool()
        try:
            await pool.fetchval("select 1")
        except _DB_ERRORS as exc:
            raise _database_error("database unreachable", exc) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
