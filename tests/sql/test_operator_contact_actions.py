"""Operators' actions on a contact as RPCs (sql/054_operator_contacts.sql), on real Postgres:
suppress and unsuppress answer what changed with the phone masked, or refuse a bad phone, a
workspace with no inbox or a wrong state and change nothing."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.test_suppressions import FIRST_PHONE_DIGITS, stop_reasons

FIRST_PHONE = "+55 (11) 90000-0001"  # seed_campaign's first lead


async def suppressed(conn: asyncpg.Connection) -> list[tuple[uuid.UUID, str, str]]:
    rows = await conn.fetch(
        "select workspace_id, phone_normalized, reason from campaign_suppressions order by 1, 2"
    )
    return [(r["workspace_id"], r["phone_normalized"], r["reason"]) for r in rows]


async def suppress(
    rpc: PostgresRpc, workspace: uuid.UUID | None, phone: str | None, reason: str | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = await rpc.call(
        "operator_suppress_campaign_contact",
        {"p_workspace_id": workspace, "p_phone": phone, "p_reason": reason},
    )
    return answer


async def unsuppress(
    rpc: PostgresRpc, workspace: uuid.UUID | None, phone: str | None
) -> dict[str, Any]:
    answer: dict[str, Any] = await rpc.call(
        "operator_unsuppress_campaign_contact", {"p_workspace_id": workspace, "p_phone": phone}
    )
    return answer


async def test_suppress_then_unsuppress_answer_what_changed_with_the_phone_masked(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    workspace = seeded.workspace_id

    added = await suppress(rpc, workspace, FIRST_PHONE, "asked by phone")

    at = await conn.fetchval("select created_at from campaign_suppressions")
    assert {k: v for k, v in added.items() if k != "suppressed_at"} == {
        "ok": True,
        "reason": None,
        "workspace_id": str(workspace),
        "phone": "***0001",
        "suppressed_before": False,
        "suppressed_after": True,
        "suppression_reason": "asked by phone",
    }
    assert datetime.fromisoformat(added["suppressed_at"]) == at
    assert await suppressed(conn) == [(workspace, FIRST_PHONE_DIGITS, "asked by phone")]
    assert await stop_reasons(rpc, seeded) == {str(seeded.message_ids[0]): "opted out"}

    again = await suppress(rpc, workspace, FIRST_PHONE_DIGITS, "another reason")
    assert (again["ok"], again["reason"], again["suppressed_before"]) == (
        False,
        "already_suppressed",
        True,
    )
    assert (again["suppression_reason"], again["suppressed_at"]) == (
        "asked by phone",
        added["suppressed_at"],
    )
    assert await suppressed(conn) == [(workspace, FIRST_PHONE_DIGITS, "asked by phone")]

    removed = await unsuppress(rpc, workspace, "5511900000001")
    assert (removed["ok"], removed["reason"], removed["phone"]) == (True, None, "***0001")
    assert (removed["suppressed_before"], removed["suppressed_after"]) == (True, False)
    assert removed["suppression_reason"] == "asked by phone"  # what was taken off
    assert await suppressed(conn) == []
    assert await stop_reasons(rpc, seeded) == {}

    gone = await unsuppress(rpc, workspace, FIRST_PHONE)
    assert (gone["ok"], gone["reason"], gone["suppressed_before"]) == (
        False,
        "not_suppressed",
        False,
    )
    for answer in (added, again, removed, gone):
        assert "900000001" not in json.dumps(answer)  # never more than the last 4 digits


async def test_a_blank_reason_is_the_operators(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded = await seed_campaign(conn, leads=1)
    answer = await suppress(rpc, seeded.workspace_id, FIRST_PHONE, "   ")
    assert answer["suppression_reason"] == "suppressed by an operator"


@pytest.mark.parametrize(
    ("phone", "error"),
    [
        ("+55 11 900", "phone: not a phone number: 7 digits, 8 to 15 expected"),
        ("call 5511900000001", "phone: not a phone number: only digits, spaces"),
        ("", "phone: not a phone number: 0 digits"),
        (None, "phone: not a phone number: only digits, spaces"),
    ],
)
async def test_a_bad_phone_is_named_never_echoed_and_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc, phone: str | None, error: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await suppress(rpc, seeded.workspace_id, FIRST_PHONE)
    before = await suppressed(conn)

    for answer in (
        await suppress(rpc, seeded.workspace_id, phone),
        await unsuppress(rpc, seeded.workspace_id, phone),
    ):
        assert (answer["ok"], answer["reason"], answer["field"]) == (
            False,
            "invalid_value",
            "phone",
        )
        assert answer["error"].startswith(error), answer["error"]
        assert answer["phone"] is None
        assert "9000" not in json.dumps(answer)
    assert await suppressed(conn) == before


async def test_a_workspace_without_an_inbox_is_refused_but_its_entries_can_be_removed(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=1)
    unknown = uuid.uuid4()
    answer = await suppress(rpc, unknown, FIRST_PHONE)
    assert (answer["ok"], answer["reason"], answer["phone"]) == (
        False,
        "workspace_not_found",
        "***0001",
    )
    assert await suppressed(conn) == []
    missing = await suppress(rpc, None, FIRST_PHONE)
    assert (missing["reason"], missing["field"], missing["error"]) == (
        "invalid_value",
        "workspace_id",
        "workspace_id: required",
    )
    gone = await unsuppress(rpc, unknown, FIRST_PHONE)
    assert (gone["ok"], gone["reason"]) == (False, "workspace_not_found")

    # The product may list a contact of a workspace with no inbox here: it can be taken off.
    await rpc.call(
        "suppress_campaign_contact",
        {"p_workspace_id": unknown, "p_phone": FIRST_PHONE, "p_reason": "STOP"},
    )
    removed = await unsuppress(rpc, unknown, FIRST_PHONE)
    assert (removed["ok"], removed["suppression_reason"]) == (True, "STOP")
    assert await suppressed(conn) == []


@pytest.mark.parametrize("role", ["anon", "authenticated"])
@pytest.mark.parametrize(
    "call",
    [
        "operator_suppress_campaign_contact($1, '+5511900000001', null)",
        "operator_unsuppress_campaign_contact($1, '+5511900000001')",
    ],
)
async def test_only_the_service_role_may_act(
    conn: asyncpg.Connection, role: str, call: str
) -> None:
    nowhere = uuid.UUID("00000000-0000-4000-8000-000000000000")
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"select {call}", nowhere)
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert await conn.fetchval(f"select {call}", nowhere) is not None
