"""RPC over PostgREST with supabase-py (SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from app.store.rpc import DatabaseError


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
            raise DatabaseError(f"{function} failed: {exc.code}: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise DatabaseError(f"{function} failed: {type(exc).__name__}") from exc
        return response.data

    async def ping(self) -> None:
        # The cheapest call every deployment has: an empty log batch.
        await self.call("log_campaign_steps", {"p_entries": []})

    async def close(self) -> None:
        await self._client.postgrest.aclose()
