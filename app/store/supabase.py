"""RPC over PostgREST with supabase-py (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from app.store.rpc import DatabaseError, is_data_error


class SupabaseRpc:
    """Calls `POST /rest/v1/rpc/{function}` with the arguments as a JSON object."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, url: str, service_role_key: str, timeout_s: float = 30.0) -> SupabaseRpc:
        options = AsyncClientOptions(
            httpx_client=httpx.AsyncClient(timeout=timeout_s),
            postgrest_client_retry=False,  # the queue decides what is safe to repeat
            auto_refresh_token=False,
            persist_session=False,
        )
        return cls(await acreate_client(url, service_role_key, options=options))

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        params = json.loads(json.dumps(args, default=str))  # UUIDs and datetimes as strings
        try:
            response = await self._client.rpc(function, params).execute()
        except APIError as exc:
            # PostgREST's code is the SQLSTATE for a database error (PGRST... for its own);
            # the message can echo an argument, so it is left out.
            code = exc.code if isinstance(exc.code, str) else None
            sqlstate = code if code and len(code) == 5 else None
            raise DatabaseError(
                f"{function} failed: APIError ({'SQLSTATE' if sqlstate else 'code'} {code})",
                data_error=is_data_error(sqlstate),
                sqlstate=sqlstate,
            ) from exc
        except httpx.HTTPError as exc:
            raise DatabaseError(f"{function} failed: {type(exc).__name__}{_where(exc)}") from exc
        except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 body can carry it
            raise DatabaseError(
                f"{function} failed: {type(exc).__name__} (an argument is not valid UTF-8)",
                data_error=True,
            ) from exc
        return response.data

    async def ping(self) -> None:
        # The cheapest call every deployment has: an empty log batch.
        await self.call("log_campaign_steps", {"p_entries": []})

    async def close(self) -> None:
        await self._client.postgrest.aclose()


def _where(exc: httpx.HTTPError) -> str:
    """Which server could not be reached, and what to check (never the key: it is a header)."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised before any request was made
        return ""
    where = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f": cannot reach {where}; is SUPABASE_URL right, and its project up?"
    return f" ({where})"
