"""Reading the database's answers for the Store: a row that cannot be worked, lists, brakes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from app.store.answers import InboxBraked, Lease, UnworkableRow
from app.store.rpc import DatabaseError


def fields_of(exc: ValidationError) -> str:
    """Which fields were wrong and why; never the values (they may be personal data)."""
    problems = [
        ".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "; ".join(problems[:5])


def unworkable_row(item: Any, exc: ValidationError) -> UnworkableRow:
    lease, run_id = None, None
    if isinstance(item, dict):
        try:
            lease = Lease(uuid.UUID(str(item["id"])), uuid.UUID(str(item["lock_token"])))
        except (KeyError, ValueError, TypeError):
            lease = None
        try:
            run_id = uuid.UUID(str(item["run_id"]))
        except (KeyError, ValueError, TypeError):
            run_id = None
    return UnworkableRow(lease, run_id, "unworkable row: " + fields_of(exc))


def as_list(data: Any) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise DatabaseError(f"expected a JSON array, got {type(data).__name__}")
    return data


def braked_inbox(data: object) -> InboxBraked | None:
    """The brake a failure tripped, from fail_campaign_message's `brake` (null: none)."""
    if not isinstance(data, dict):
        return None
    try:
        return InboxBraked(
            uuid.UUID(str(data["inbox_id"])),
            datetime.fromisoformat(str(data["brake_until"])),
            str(data["brake_reason"]),
        )
    except (KeyError, ValueError):
        return None
