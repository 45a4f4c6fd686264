"""The narrow seam between the queue and its database: call a SQL function by name."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

# SQLSTATE classes that say the data is wrong, not the database: 22 data exception (a NUL
# in text, a bad cast, a number out of range), 23 integrity constraint violation, 54 program
# limit exceeded (a value too large to index or store).
DATA_ERROR_CLASSES = frozenset({"22", "23", "54"})


def is_data_error(sqlstate: str | None) -> bool:
    """True for a SQLSTATE of class 22, 23 or 54 (five characters); False otherwise."""
    return sqlstate is not None and len(sqlstate) == 5 and sqlstate[:2] in DATA_ERROR_CLASSES


class DatabaseError(Exception):
    """The database could not answer (unreachable, timed out, or the call itself failed).

    str() names the function, the error class and the SQLSTATE, never a value: a server's
    message can echo an argument (a lead's name, a phone, generated text), so it is left out.
    data_error: the call failed on the data it was given (SQLSTATE class 22, 23 or 54);
    the same call will fail again, so the message it was for should fail now. Otherwise
    the database is unavailable or misbehaving, and a later attempt may succeed.
    """

    def __init__(
        self, message: str, *, data_error: bool = False, sqlstate: str | None = None
    ) -> None:
        super().__init__(message)
        self.data_error = data_error
        self.sqlstate = sqlstate


class Rpc(Protocol):
    """Calls a Postgres function by name with named arguments and returns its JSON result.

    Arguments are Python values (str, int, float, bool, None, datetime, UUID, list, dict);
    each implementation encodes them for its transport.
    """

    async def call(self, function: str, args: dict[str, Any]) -> Any: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# A call that answered something the service cannot read (a function returning null, a
# gateway's 200 that is not JSON) is a database error: its callers handle DatabaseError on
# every path (release, fail, retry), not a TypeError out of a claim round or the heartbeat.


def answer_object(function: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DatabaseError(f"{function} answered {type(data).__name__}, not a JSON object")
    return data


def answer_int(function: str, data: Any) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        raise DatabaseError(f"{function} answered {type(data).__name__}, not an integer")
    return data


def answer_ids(function: str, data: Any) -> list[uuid.UUID]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise DatabaseError(f"{function} answered {type(data).__name__}, not a JSON array")
    try:
        return [uuid.UUID(str(item)) for item in data]
    except ValueError:
        raise DatabaseError(f"{function} answered an id that is not a uuid") from None
