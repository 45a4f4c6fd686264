"""Operators' actions on an inbox as RPCs (sql/053_operator_inboxes.sql), on real Postgres:
lift a brake, the number-health overrides and the warm-up's day 0. Each changes what it says,
or refuses a bad id, a wrong state or a bad value and changes nothing. The contact actions:
test_operator_contact_actions.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
from tests.sql.test_failure_brake import brake, fail_at_send, is_braked, record
from tests.sql.waiting import connection, wait_until_blocked

NOWHERE = uuid.UUID("00000000-0000-4000-8000-000000000000")


async def lift(rpc: PostgresRpc, inbox_id: uuid.UUID | None) -> dict[str, Any]:
    answer: dict[str, Any] = await rpc.call("operator_lift_inbox_brake", {"p_inbox_id": inbox_id})
    return answer


async def state_row(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "select * from campaign_inbox_pacing_state where inbox_id = $1", inbox_id
    )
    return None if row is None else dict(row)


async def pacing_row(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("select * from campaign_inbox_pacing where inbox_id = $1", inbox_id)
    return None if row is None else dict(row)


# --- lift an inbox's brake -------------------------------------------------------------------


async def test_a_lifted_brake_answers_what_changed_and_the_inbox_is_claimed_again(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    first = await claim(rpc, 5)
    for item in first:
        await fail_at_send(rpc, item, 404)
    before = await brake(conn, seeded.inbox_id)
    assert before is not None
    assert before["braked"]
    assert await claim(rpc) == []  # the sixth message waits for the brake

    answer = await lift(rpc, seeded.inbox_id)

    now = await conn.fetchval("select now()")
    assert answer["ok"] is True
    assert (answer["reason"], answer["inbox_id"]) == (None, str(seeded.inbox_id))
    assert datetime.fromisoformat(answer["brake_until_before"]) == before["brake_until"]
    assert answer["brake_reason_before"] == before["brake_reason"]
    assert answer["brake_reason_before"].startswith("5 of the last 5 sends failed for good")
    assert datetime.fromisoformat(answer["brake_until_after"]) <= now
    assert answer["brake_reason_after"] is None
    assert not await is_braked(conn, seeded.inbox_id)
    assert await record(conn, seeded.inbox_id) == []
    [sixth] = await claim(rpc)
    assert sixth["id"] not in {item["id"] for item in first}


async def test_an_inbox_not_braked_is_refused_and_keeps_its_send_record(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    for item in await claim(rpc, 2):
        await fail_at_send(rpc, item, 404)

    never = await lift(rpc, seeded.inbox_id)

    assert (never["ok"], never["reason"], never["brake_until_before"]) == (
        False,
        "not_braked",
        None,
    )
    assert await record(conn, seeded.inbox_id) == [404, 404]

    # A brake that ran out by itself is not braked either: its end and reason stay.
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() - interval '1 hour', 'old brake')""",
        seeded.inbox_id,
    )
    before = await state_row(conn, seeded.inbox_id)
    ran_out = await lift(rpc, seeded.inbox_id)
    assert (ran_out["ok"], ran_out["reason"], ran_out["brake_reason_before"]) == (
        False,
        "not_braked",
        "old brake",
    )
    assert ran_out["brake_until_after"] == ran_out["brake_until_before"]
    assert await state_row(conn, seeded.inbox_id) == before
    assert await record(conn, seeded.inbox_id) == [404, 404]


@pytest.mark.parametrize("inbox_id", [NOWHERE, None])
async def test_lifting_an_unknown_inbox_is_refused_and_creates_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc, inbox_id: uuid.UUID | None
) -> None:
    await seed_campaign(conn, leads=1)
    answer = await lift(rpc, inbox_id)
    assert (answer["ok"], answer["reason"]) == (False, "inbox_not_found")
    assert await conn.fetchval("select count(*) from campaign_inbox_pacing_state") == 0
    assert await conn.fetchval("select count(*) from campaign_inbox_send_outcomes") == 0


async def test_a_lift_waits_behind_a_send_being_recorded_without_a_deadlock(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    """The lift takes the send record before the state row, as a send that trips the brake
    does: a lift waiting on the record holds no state row, so the send's trip goes through,
    and the lift then lifts the brake that send tripped. (State row first: a deadlock.)"""
    seeded = await seed_campaign(conn, leads=6)
    items = await claim(rpc, 6)
    for item in items[:4]:
        await fail_at_send(rpc, item, 404)
    await conn.execute(
        "insert into campaign_inbox_pacing_state (inbox_id, sent_today) values ($1, 0)",
        seeded.inbox_id,
    )
    send = "select fail_campaign_message($1, $2, $3, $4, $5)"

    async with connection(db_dsn) as sender, connection(db_dsn) as operator:
        await sender.execute("set deadlock_timeout = '100ms'")
        tx = sender.transaction()
        await tx.start()
        # A retryable failure: the send record row is the sender's now, the state row is not.
        await sender.fetchval(send, items[4]["id"], items[4]["lock_token"], "HTTP 503", True, 503)
        lifting = asyncio.ensure_future(
            operator.fetchval("select operator_lift_inbox_brake($1)", seeded.inbox_id)
        )
        await wait_until_blocked(conn, operator.get_server_pid())
        # The fifth failure for good trips the brake: the sender takes the state row.
        tripped = await sender.fetchval(
            send, items[5]["id"], items[5]["lock_token"], "HTTP 404", False, 404
        )
        await tx.commit()
        answer = await lifting

    assert tripped["brake"]["inbox_id"] == str(seeded.inbox_id)
    assert (answer["ok"], answer["reason"]) == (True, None)
    assert answer["brake_reason_before"].startswith("5 of the last 6 sends failed for good")
    assert not await is_braked(conn, seeded.inbox_id)


# --- the number-health overrides and the warm-up's day 0 ----------------------------------------


async def test_set_inbox_pacing_takes_the_number_health_overrides_and_day_0(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    inbox = seeded.inbox_id
    ten_days_ago: date = await conn.fetchval("select cq_local_date(null, now()) - 10")

    answer = await rpc.call(
        "set_inbox_pacing",
        {
            "p_inbox_id": inbox,
            "p_daily_cap": 200,
            "p_warmup_days": 14,
            "p_warmup_start_cap": 20,
            "p_hourly_cap": 30,
            "p_first_sent_day": ten_days_ago,
        },
    )

    assert answer == {
        "ok": True,
        "reason": None,
        "inbox_id": str(inbox),
        "overrides_before": None,
        "overrides_after": {
            "min_gap_s": None,
            "max_gap_s": None,
            "daily_cap": 200,
            "timezone": None,
            "warmup_days": 14,
            "warmup_start_cap": 20,
            "hourly_cap": 30,
        },
        "first_sent_day_before": None,
        "first_sent_day_after": ten_days_ago.isoformat(),
    }
    # What the claim and the status read: day 10 of 14, 20 + 180 * 10 / 14 = 148 today.
    hold = await conn.fetchrow(
        """select (h).warmup_day, (h).day_cap, (h).hourly_cap
             from (select cq_inbox_hold(s, p, p.daily_cap, 0, 20, 0, now()) as h
                     from campaign_inbox_pacing_state s, campaign_inbox_pacing p
                    where s.inbox_id = $1 and p.inbox_id = $1) x""",
        inbox,
    )
    assert dict(hold) == {"warmup_day": 10, "day_cap": 148, "hourly_cap": 30}

    # A field left out keeps its value; day 0 alone touches no override.
    later = await rpc.call(
        "set_inbox_pacing", {"p_inbox_id": inbox, "p_first_sent_day": ten_days_ago + timedelta(2)}
    )
    assert later["overrides_after"] == later["overrides_before"] == answer["overrides_after"]
    assert (later["first_sent_day_before"], later["first_sent_day_after"]) == (
        ten_days_ago.isoformat(),
        (ten_days_ago + timedelta(2)).isoformat(),
    )
    # Clearing the overrides keeps day 0: it is the inbox's history, not an override.
    assert (await rpc.call("clear_inbox_pacing", {"p_inbox_id": inbox}))["ok"] is True
    state = await state_row(conn, inbox)
    assert state is not None
    assert state["first_sent_day"] == ten_days_ago + timedelta(2)


@pytest.mark.parametrize(
    ("values", "field", "error"),
    [
        ({"p_warmup_days": -1}, "warmup_days", "null or a whole number of days from 0 to 3650"),
        ({"p_warmup_days": 3651}, "warmup_days", "null or a whole number of days from 0 to 3650"),
        ({"p_warmup_start_cap": 0}, "warmup_start_cap", "null or a whole number >= 1"),
        ({"p_warmup_start_cap": 201}, "warmup_start_cap", "not above daily_cap"),
        ({"p_hourly_cap": 3601}, "hourly_cap", "null or a whole number from 0 to 3600"),
        ({"p_hourly_cap": -1}, "hourly_cap", "null or a whole number from 0 to 3600"),
        ({"p_first_sent_day": date.today() + timedelta(3)}, "first_sent_day", "not after today"),
        # one bad value among good ones: none of them is written
        (
            {"p_hourly_cap": 5, "p_first_sent_day": date(2026, 1, 1), "p_warmup_days": -3},
            "warmup_days",
            "null or a whole number of days from 0 to 3650",
        ),
        (
            {"p_hourly_cap": 5, "p_first_sent_day": date.today() + timedelta(3)},
            "first_sent_day",
            "not after today",
        ),
        ({}, "overrides", "give at least one value to set"),
    ],
)
async def test_a_refused_number_health_value_is_named_and_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc, values: dict[str, Any], field: str, error: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    inbox = seeded.inbox_id
    day_0 = date(2025, 6, 1)
    await rpc.call(
        "set_inbox_pacing",
        {"p_inbox_id": inbox, "p_daily_cap": 200, "p_warmup_days": 7, "p_first_sent_day": day_0},
    )
    pacing, state = await pacing_row(conn, inbox), await state_row(conn, inbox)

    answer = await rpc.call("set_inbox_pacing", {"p_inbox_id": inbox, **values})

    assert (answer["ok"], answer["reason"], answer["field"], answer["error"]) == (
        False,
        "invalid_value",
        field,
        f"{field}: {error}",
    )
    assert answer["overrides_after"] == answer["overrides_before"]
    assert answer["first_sent_day_after"] == answer["first_sent_day_before"] == day_0.isoformat()
    assert await pacing_row(conn, inbox) == pacing
    assert await state_row(conn, inbox) == state


async def test_day_0_of_an_unknown_inbox_is_refused_and_creates_no_state(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    answer = await rpc.call(
        "set_inbox_pacing", {"p_inbox_id": NOWHERE, "p_first_sent_day": date(2026, 1, 1)}
    )
    assert (answer["ok"], answer["reason"], answer["first_sent_day_after"]) == (
        False,
        "inbox_not_found",
        None,
    )
    assert await state_row(conn, NOWHERE) is None


# --- who may call them ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["anon", "authenticated"])
@pytest.mark.parametrize(
    "call",
    [
        "operator_lift_inbox_brake($1)",
        "set_inbox_pacing($1, p_hourly_cap => 3, p_first_sent_day => date '2026-01-01')",
    ],
)
async def test_only_the_service_role_may_act(
    conn: asyncpg.Connection, role: str, call: str
) -> None:
    async with conn.transaction():
        await conn.execute(f"set local role {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"select {call}", NOWHERE)
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert await conn.fetchval(f"select {call}", NOWHERE) is not None
