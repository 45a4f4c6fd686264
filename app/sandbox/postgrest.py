"""A PostgREST-compatible RPC endpoint over a Postgres, for testing the Supabase store.

`POST /rest/v1/rpc/{function}` with named JSON arguments, as PostgREST serves it: the
arguments are typed by the function's own signature (json_to_record), the call runs as the
role `service_role` (so the grants are exercised), and errors come in PostgREST's shape
{code, details, hint, message}. Only what supabase-py's .rpc() uses is implemented.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.store.postgres import init_connection

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_SIGNATURE_SQL = """
select p.proargnames[1:p.pronargs] as names,
       array(select format_type(t, null) from unnest(p.proargtypes) t) as types
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname = 'public' and p.proname = $1
"""


def _error(status: int, code: str, message: str, details: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"code": code, "details": details, "hint": None, "message": message}, status
    )


def create_postgrest_app(dsn: str, service_role_key: str) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, init=init_connection)
        except (OSError, asyncpg.PostgresError):
            pool = None  # a database that is down: every call answers 503, as PostgREST does
        yield
        if pool is not None:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/rest/v1/rpc/{function}")
    async def rpc(function: str, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if request.headers.get("apikey") != service_role_key or bearer != service_role_key:
            return _error(401, "PGRST301", "JWT invalid")
        try:
            args: Any = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "PGRST102", "Empty or invalid json")
        if not isinstance(args, dict) or not _IDENTIFIER.match(function):
            return _error(400, "PGRST102", "Invalid body")
        if pool is None:
            return _error(503, "PGRST000", "Could not connect with the database")
        try:
            async with pool.acquire() as conn:
                signature = await conn.fetchrow(_SIGNATURE_SQL, function)
                names = list(signature["names"] or []) if signature else []
                types = dict(zip(names, signature["types"], strict=False)) if signature else {}
                if signature is None or not set(args) <= set(types):
                    return _error(
                        404,
                        "PGRST202",
                        f"Could not find the function public.{function}"
                        f"({', '.join(sorted(args))}) in the schema cache",
                    )
                columns = ", ".join(f"{name} {types[name]}" for name in args)
                call_args = ", ".join(f"{name} => x.{name}" for name in args)
                sql = f"select to_jsonb(public.{function}({call_args}))" + (
                    f" from json_to_record($1::json) as x({columns})" if args else ""
                )
                async with conn.transaction():
                    await conn.execute("set local role service_role")
                    result = await (conn.fetchval(sql, args) if args else conn.fetchval(sql))
        except asyncpg.InsufficientPrivilegeError as exc:
            return _error(403, exc.sqlstate, str(exc))
        except asyncpg.PostgresError as exc:
            return _error(400, exc.sqlstate or "P0001", str(exc))
        except (OSError, asyncpg.InterfaceError) as exc:
            return _error(503, "PGRST000", f"database unreachable: {type(exc).__name__}")
        return Response(json.dumps(result), media_type="application/json")

    return app
