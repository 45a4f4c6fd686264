"""RPC over a direct asyncpg pool (DATABASE_URL): the embedded default and the tests."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg

from app.store.dsn import database_address
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


# Supabase's direct host (db.<project ref>.supabase.co) has only an IPv6 address unless the
# project bought the IPv4 add-on; its poolers (*.pooler.supabase.com) answer on IPv4.
_SUPABASE_DIRECT_HOST = re.compile(r"^db\.[a-z0-9]+\.supabase\.co$", re.IGNORECASE)


def describe_connection_failure(dsn: str, exc: BaseException) -> str | None:
    """One line saying what to check when a connection could not be made, or None when
    `exc` is not about making a connection. Names the host and port, never the password."""
    where = database_address(dsn)
    address = str(where)
    kind = type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    if isinstance(exc, OSError | TimeoutError) or (sqlstate or "").startswith("08"):
        if _SUPABASE_DIRECT_HOST.match(where.host or ""):
            return (
                f"cannot reach {address} ({kind}): Supabase's direct host is IPv6 only unless "
                "you bought the IPv4 add-on: use the session pooler for migrate, the "
                "transaction pooler for the service"
            )
        return (
            f"cannot reach {address} ({kind}): is Postgres running at {address}? check DATABASE_URL"
        )
    if (sqlstate or "").startswith("28"):
        return (
            f"Postgres at {address} refused the login ({kind}): check the user and password "
            "in DATABASE_URL"
        )
    if sqlstate == "3D000":
        return (
            f"Postgres at {address} has no database {where.database!r} ({kind}): check DATABASE_URL"
        )
    return None


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
        raise _database_error("cannot connect to the database", exc, dsn) from exc
    return pool


def _database_error(what: str, exc: BaseException, dsn: str | None = None) -> DatabaseError:
    """`<what>: <ErrorClass> (SQLSTATE <code>)`, or `<what>: <what to check>` when a connection
    could not be made (dsn given). The server's message is left out: it can echo an argument
    (`invalid input syntax for type uuid: "<value>"`)."""
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    hint = describe_connection_failure(dsn, exc) if dsn is not None else None
    code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
    text = f"{what}: {hint}" if hint else f"{what}: {type(exc).__name__}{code}"
    return DatabaseError(text, data_error=is_data_error(sqlstate), sqlstate=sqlstate)


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
            raise _database_error(f"{function} failed", exc, self._dsn_unless_timeout(exc)) from exc

    async def ping(self) -> None:
        pool = await self._get_pool()
        try:
            await pool.fetchval("select 1")
        except _DB_ERRORS as exc:
            raise _database_error(
                "database unreachable", exc, self._dsn_unless_timeout(exc)
            ) from exc

    def _dsn_unless_timeout(self, exc: BaseException) -> str | None:
        """A connection the pool opens anew can fail like the first one: then the error says
        what to check. A timeout here is a statement's (command_timeout), not a connection's."""
        return None if isinstance(exc, TimeoutError) else self._dsn

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
