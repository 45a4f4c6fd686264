"""Suppression list and stop-on-reply: suppress/unsuppress_campaign_contact, the stop reasons
get_lead_contexts answers with the contexts, and take_inbox_slot's re-check."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row
from tests.sql.messages import fence
from tests.sql.test_skip_late import scan_counters

# seed_campaign's leads: '+55119' followed by the lead's number on 8 digits.
FIRST_PHONE_DIGITS = "5511900000001"


async def suppress(rpc: PostgresRpc, workspace: uuid.UUID, phone: str, reason: str = "STOP") -> Any:
    return await rpc.call(
        "suppress_campaign_contact",
        {"p_workspace_id": workspace, "p_phone": phone, "p_reason": reason},
    )


async def suppressions(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "select workspace_id, phone_normalized, reason from campaign_suppressions order by 2"
    )
    return [dict(r) for r in rows]


async def stop_reasons(
    rpc: PostgresRpc, seeded: SeededCampaign, days: int | None = None
) -> dict[str, str]:
    args: dict[str, Any] = {"p_lead_ids": seeded.lead_ids, "p_message_ids": seeded.message_ids}
    if days is not None:
        args["p_reply_stop_days"] = days
    answer: dict[str, Any] = await rpc.call("get_lead_contexts", args)
    for lead_id in seeded.lead_ids:  # the contexts are all still there
        assert answer[str(lead_id)]["id"] == str(lead_id)
    reasons: dict[str, str] = answer["stop_reasons"]
    return reasons


async def replied_history(
    conn: asyncpg.Connection, workspace: uuid.UUID, days_ago: float, leads: int = 1
) -> SeededCampaign:
    """Another run of the workspace whose messages (same phones) were answered days_ago."""
    history = await seed_campaign(conn, leads=leads, workspace_id=workspace)
    await conn.execute(
        """update campaign_messages
              set status = 'replied', updated_at = now() - make_interval(secs => $2 * 86400)
            where run_id = $1""",
        history.run_id,
        days_ago,
    )
    return history


@pytest.mark.parametrize(
    "phone",
    ["+55 (11) 90000-0001", "5511900000001", " +55.11.900000001 ", "+55-11-9000-00001"],
)
async def test_the_phone_is_kept_as_its_digits_like_phone_normalized(
    conn: asyncpg.Connection, rpc: PostgresRpc, phone: str
) -> None:
    workspace = uuid.uuid4()
    answer = await suppress(rpc, workspace, phone)

    assert answer == {"suppressed": True, "created": True, "phone_normalized": FIRST_PHONE_DIGITS}
    assert await suppressions(conn) == [
        {"workspace_id": workspace, "phone_normalized": FIRST_PHONE_DIGITS, "reason": "STOP"}
    ]
    # ... the key the seeded message of that phone has in phone_normalized
    seeded = await seed_campaign(conn, leads=1, workspace_id=workspace)
    row = await message_row(conn, seeded.message_ids[0])
    assert row["phone_normalized"] == FIRST_PHONE_DIGITS


@pytest.mark.parametrize(
    ("phone", "why"),
    [
        ("call me", "only digits"),
        ("+55 11 9000O-0001", "only digits"),  # a letter O for a zero
        ("1234567", "7 digits"),
        ("+1234567890123456", "16 digits"),
        ("", "0 digits"),
        (None, "only digits"),
    ],
)
async def test_a_phone_that_is_not_one_is_refused_naming_p_phone_and_nothing_changes(
    conn: asyncpg.Connection, rpc: PostgresRpc, phone: str | None, why: str
) -> None:
    workspace = uuid.uuid4()
    await suppress(rpc, workspace, "+55 11 90000-0002")
    before = await suppressions(conn)

    for call in (
        "select suppress_campaign_contact($1, $2, 'STOP')",
        "select unsuppress_campaign_contact($1, $2)",
    ):
        with pytest.raises(asyncpg.InvalidParameterValueError) as error:
            await conn.fetchval(call, workspace, phone)
        assert "p_phone" in str(error.value)
        assert why in str(error.value)
        assert phone is None or phone == "" or phone not in str(error.value)

    assert await suppressions(conn) == before


async def test_a_missing_workspace_is_refused(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    with pytest.raises(asyncpg.NullValueNotAllowedError, match="p_workspace_id"):
        await conn.fetchval("select suppress_campaign_contact(null, '+5511900000001', 'STOP')")
    assert await suppressions(conn) == []


async def test_suppress_and_unsuppress_are_idempotent(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    workspace = uuid.uuid4()
    assert (await suppress(rpc, workspace, "+5511900000001", "STOP"))["created"] is True
    again = await suppress(rpc, workspace, "55 11 900000001", "opted out by support")
    assert again == {"suppressed": True, "created": False, "phone_normalized": FIRST_PHONE_DIGITS}
    assert [r["reason"] for r in await suppressions(conn)] == ["STOP"]  # the first one kept

    args = {"p_workspace_id": workspace, "p_phone": "+55 11 90000-0001"}
    removed = await rpc.call("unsuppress_campaign_contact", args)
    assert removed == {"removed": True, "phone_normalized": FIRST_PHONE_DIGITS}
    assert await rpc.call("unsuppress_campaign_contact", args) == {
        "removed": False,
        "phone_normalized": FIRST_PHONE_DIGITS,
    }
    assert await suppressions(conn) == []


@pytest.mark.parametrize("role", ["anon", "authenticated"])
async def test_only_service_role_can_suppress_or_read_the_list(
    conn: asyncpg.Connection, role: str
) -> None:
    workspace = uuid.uuid4()
    call = "select suppress_campaign_contact($1, '+5511900000001', 'STOP')"
    for statement, args in (
        (call, [workspace]),
        ("select unsuppress_campaign_contact($1, '+5511900000001')", [workspace]),
        ("select * from campaign_suppressions", []),
    ):
        async with conn.transaction():
            await conn.execute(f"set local role {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(statement, *args)
    assert await suppressions(conn) == []
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert (await conn.fetchval(call, workspace)) is not None
    assert len(await suppressions(conn)) == 1


async def test_a_suppressed_contact_is_stopped_in_its_workspace_only(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    elsewhere = await seed_campaign(conn, leads=3)  # same phones, another workspace
    await suppress(rpc, seeded.workspace_id, "+55 11 90000-0002")

    assert await stop_reasons(rpc, seeded) == {str(seeded.message_ids[1]): "opted out"}
    assert await stop_reasons(rpc, elsewhere) == {}

    await rpc.call(
        "unsuppress_campaign_contact",
        {"p_workspace_id": seeded.workspace_id, "p_phone": "5511900000002"},
    )
    assert await stop_reasons(rpc, seeded) == {}


async def test_without_message_ids_the_answer_is_the_contexts_alone(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await suppress(rpc, seeded.workspace_id, "+5511900000001")

    answer = await rpc.call("get_lead_contexts", {"p_lead_ids": seeded.lead_ids})

    assert sorted(answer) == sorted(str(i) for i in seeded.lead_ids)


async def test_a_reply_within_the_window_stops_the_contact(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await replied_history(conn, seeded.workspace_id, days_ago=10)  # lead 1's phone answered
    stopped = {str(seeded.message_ids[0]): "replied"}

    assert await stop_reasons(rpc, seeded) == stopped  # default: 30 days
    assert await stop_reasons(rpc, seeded, days=11) == stopped
    assert await stop_reasons(rpc, seeded, days=9) == {}  # older than the window
    assert await stop_reasons(rpc, seeded, days=0) == {}  # 0: stop-on-reply off


async def test_a_reply_in_another_workspace_does_not_stop_the_contact(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await replied_history(conn, uuid.uuid4(), days_ago=1, leads=2)

    assert await stop_reasons(rpc, seeded) == {}


async def test_the_opt_out_is_named_before_the_reply(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await replied_history(conn, seeded.workspace_id, days_ago=1)
    await suppress(rpc, seeded.workspace_id, "+5511900000001")

    assert await stop_reasons(rpc, seeded) == {str(seeded.message_ids[0]): "opted out"}


async def test_the_reply_lookup_probes_its_index(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await replied_history(conn, seeded.workspace_id, days_ago=2, leads=3)
    await conn.execute("analyze campaign_messages")

    async with conn.transaction():
        await conn.execute("set local enable_seqscan = off")  # tiny table: a large one's plan
        before = await scan_counters(conn)
        answer = await conn.fetchval(
            "select get_lead_contexts($1, $2, 30)", seeded.lead_ids, seeded.message_ids
        )
        after = await scan_counters(conn)
    assert len(answer["stop_reasons"]) == 3
    probes = "idx_campaign_messages_replied_phone"
    assert after[probes] - before[probes] >= 3


async def test_the_slot_is_refused_to_a_contact_who_opted_out_during_generation(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, p_run_id=seeded.run_id)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    await suppress(rpc, seeded.workspace_id, "+55 11 90000-0001")  # while it is written

    answer = await rpc.call("take_inbox_slot", fence(item))

    assert answer == {"ok": False, "reason": "opted out", "wait_s": None}
    row = await message_row(conn, item["id"])
    assert (row["status"], str(row["lock_token"])) == ("generating", item["lock_token"])
    assert await conn.fetchval("select count(*) from campaign_inbox_pacing_state") == 0


async def test_the_slot_is_refused_after_a_reply_only_while_stop_on_reply_is_on(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc, p_run_id=seeded.run_id)
    await replied_history(conn, seeded.workspace_id, days_ago=0)

    off = await rpc.call("take_inbox_slot", {**fence(item), "p_reply_stop_days": 0})
    assert off["ok"] is True

    seeded2 = await seed_campaign(conn, leads=1, workspace_id=seeded.workspace_id)
    [item2] = await claim(rpc, p_run_id=seeded2.run_id)
    on = await rpc.call("take_inbox_slot", {**fence(item2), "p_reply_stop_days": 30})
    assert on == {"ok": False, "reason": "replied", "wait_s": None}


async def test_a_contact_not_stopped_takes_its_slot(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    items = {item["id"]: item for item in await claim(rpc, p_run_id=seeded.run_id)}
    await suppress(rpc, seeded.workspace_id, "+5511900000002")  # the second lead

    free = await rpc.call("take_inbox_slot", fence(items[str(seeded.message_ids[0])]))
    stopped = await rpc.call("take_inbox_slot", fence(items[str(seeded.message_ids[1])]))

    assert free["ok"] is True
    assert stopped == {"ok": False, "reason": "opted out", "wait_s": None}


async def test_a_message_whose_first_part_went_out_is_not_stopped(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set parts_sent = 1 where id = $1", seeded.message_ids[0]
    )
    await suppress(rpc, seeded.workspace_id, "+5511900000001")
    await suppress(rpc, seeded.workspace_id, "+5511900000002")

    assert await stop_reasons(rpc, seeded) == {str(seeded.message_ids[1]): "opted out"}
