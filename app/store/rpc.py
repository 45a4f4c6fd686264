"""The narrow seam between the queue and its database: call a SQL function by name."""

from __future__ import annotations

from typing import Any, Protocol


class DatabaseError(Exception):
    """The database could not answer (unreachable, timed out, or the call itself failed)."""


class Rpc(Protocol):
    """Calls a Postgres function by name with named arguments and returns its JSON result.

    Arguments are Python values (str, int, float, bool, None, datetime, UUID, list, dict);
    each implementation encodes them for its transport.
    """

    async def call(self, function: str, args: dict[str, Any]) -> Any: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
