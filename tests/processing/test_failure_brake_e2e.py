"""The failure brake end to end: the real service over HTTP, the send stub answering 400 or
404 (an invalid or unknown number) for some leads, either store. After five such failures of
its last 20 sends the inbox's state shows the brake; lift_inbox_brake clears it. A model that
answers 400 is no failed send and brakes nothing.

Which leads the stub refuses is read from the text (the OpenRouter stub writes the lead's
name, "<first name> <n>", into it): lead 3 is delivered between the refused ones.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Fault, RequestInfo
from tests.processing.invariants import assert_no_lease_left
from tests.service import Service

INVALID = {1: Fault.INVALID_NUMBER, 2: Fault.STATUS, 4: Fault.INVALID_NUMBER}
UNKNOWN = {5: Fault.STATUS, 6: Fault.STATUS}
REFUSED = INVALID | UNKNOWN  # 400 (invalid number) and 404 (unknown number, the stub's status)


def refuse_some_numbers(info: RequestInfo) -> Fault | None:
    found = re.search(r"Olá \S+ (\d+)!", str(info.body.get("text", "")))
    return REFUSED.get(int(found.group(1))) if found else None


async def process_until_ended(
    service: Service, conn: asyncpg.Connection, lead_numbers: int
) -> None:
    """Calls the service until every refused lead's message failed (bounded)."""
    for _ in range(5):
        await service.process({"concurrency": 1})
        failed = await conn.fetchval(
            "select count(*) from campaign_messages where status = 'failed'"
        )
        if failed == lead_numbers:
            return
    raise AssertionError("the refused messages did not all fail")


async def brake_state(conn: asyncpg.Connection, inbox_id: object) -> asyncpg.Record:
    row = await conn.fetchrow(
        """select brake_until, brake_reason, brake_until - now() as left
             from campaign_inbox_pacing_state where inbox_id = $1""",
        inbox_id,
    )
    assert row is not None
    return row


async def test_five_invalid_numbers_brake_the_inbox_and_the_lift_clears_it(
    service: Service, conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = await seed_campaign(conn, leads=6, spacing=timedelta(seconds=1))
    service.stubs.send.faults.rules.append(refuse_some_numbers)
    service.stubs.send.faults.status = 404

    await process_until_ended(service, conn, len(REFUSED))

    state = await brake_state(conn, seeded.inbox_id)
    assert timedelta(hours=5, minutes=59) < state["left"] <= timedelta(hours=6)
    assert re.fullmatch(
        r"5 of the last [56] sends failed for good at the send endpoint \(invalid or unknown "
        r"numbers\); last error: send: HTTP 40[04]",
        state["brake_reason"],
    ), state["brake_reason"]
    assert sorted(service.stubs.send.faults_served) == sorted(REFUSED.values())
    await assert_no_lease_left(conn)

    # One warning line names the brake and its inbox, never a phone number.
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"brake"' in line]
    [line] = [entry for entry in lines if entry.get("step") == "brake"]
    assert line["severity"] == "WARNING"
    assert line["inbox_id"] == str(seeded.inbox_id)
    assert line["error"] == state["brake_reason"]
    assert "phone" not in line
    assert "+55" not in json.dumps(line)
    assert (
        await conn.fetchval(
            "select count(*) from campaign_logs where step_name = 'brake' and level = 'warning'"
        )
        == 1
    )

    async with conn.transaction():
        await conn.execute("set local role service_role")
        lifted = await conn.fetchval("select lift_inbox_brake($1)", seeded.inbox_id)
    assert lifted["was_braked"] is True
    assert lifted["brake_reason"] == state["brake_reason"]
    cleared = await brake_state(conn, seeded.inbox_id)
    # Ended now, not forgotten: its backlog stays not late for the skip horizon.
    assert cleared["brake_until"] <= await conn.fetchval("select now()")
    assert cleared["brake_reason"] is None
    assert (
        await conn.fetchval(
            "select count(*) from campaign_inbox_send_outcomes where inbox_id = $1",
            seeded.inbox_id,
        )
        == 0
    )


async def test_a_model_answering_400_is_no_failed_send(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    service.stubs.openrouter.faults.ratios = {Fault.STATUS: 1.0}  # 400: the request, not a number

    await process_until_ended(service, conn, 6)

    assert service.stubs.send.requests == 0
    state = await conn.fetchrow(
        "select brake_until from campaign_inbox_pacing_state where inbox_id = $1",
        seeded.inbox_id,
    )
    assert state is None or state["brake_until"] is None
    assert (
        await conn.fetchval(
            "select count(*) from campaign_inbox_send_outcomes where inbox_id = $1",
            seeded.inbox_id,
        )
        == 0
    )
