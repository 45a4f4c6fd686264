"""End to end (both stores): what each message cost, OpenRouter's session, fallbacks and refusals.

POST /process-queue against the loopback stubs: usage.cost is saved on the message
(generation plus split) and summed into the run's metrics; the run id goes out as the
session id with the same system prompt first; a moderation 403 fails that message for good
and never opens the circuit; a 403 from the send endpoint still does.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.sandbox.stubs import Fault
from tests.service import Service
from tests.sql.helpers import message_row, run_row


@pytest.mark.parametrize("split", [False, True])
async def test_each_messages_cost_is_saved_and_summed_into_its_run(
    service: Service, conn: asyncpg.Connection, split: bool
) -> None:
    seeded = await seed_campaign(
        conn, leads=4, split_messages=split, max_split_parts=3, min_chars_to_split=50
    )

    body = (await service.process()).json()

    assert body["processed"] == 4
    stub = service.stubs.openrouter
    assert stub.splits == (4 if split else 0)
    costs = [(await message_row(conn, m))["ai_cost_usd"] for m in seeded.message_ids]
    assert all(isinstance(c, Decimal) and c > 0 for c in costs)
    # Every answer's usage.cost is on exactly one message: generation plus split.
    assert float(sum(costs)) == pytest.approx(sum(stub.costs), abs=1e-9)
    assert len(stub.costs) == (8 if split else 4)
    run = await run_row(conn, seeded.run_id)
    assert run["metrics"]["ai_cost_usd"] == pytest.approx(float(sum(costs)), abs=1e-12)


async def test_the_run_id_is_the_session_and_the_system_prompt_comes_first_unchanged(
    service: Service, conn: asyncpg.Connection
) -> None:
    one = await seed_campaign(conn, leads=3, ai_instructions="Sell shoes. Be brief.")
    two = await seed_campaign(conn, leads=2, ai_instructions="Sell hats.")

    assert (await service.process()).json()["processed"] == 5

    by_session: dict[str, set[str]] = {}
    for request in service.stubs.openrouter.seen:
        messages = request.body["messages"]
        assert messages[0]["role"] == "system"
        by_session.setdefault(request.body["session_id"], set()).add(messages[0]["content"])
    assert by_session == {
        str(one.run_id): {"Sell shoes. Be brief."},
        str(two.run_id): {"Sell hats."},
    }


async def test_a_moderation_refusal_fails_that_message_for_good_and_the_rest_goes_on(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    service.stubs.openrouter.faults.script = deque([Fault.MODERATION])

    response = await service.process({"concurrency": 1})

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["circuit_open"] is None
    assert (body["processed"], body["failed"], body["retried"], body["released"]) == (2, 1, 0, 0)
    rows = [await message_row(conn, m) for m in seeded.message_ids]
    [refused] = [r for r in rows if r["status"] == "failed"]
    assert refused["retry_count"] == 0  # no retry: the same input would be refused again
    assert "moderation" in refused["error_message"]
    assert service.stubs.openrouter.requests == 3  # the refusal was asked once
    run = await run_row(conn, seeded.run_id)
    assert (run["status"], run["leads_processed"], run["leads_failed"]) == ("completed", 2, 1)


async def test_many_moderation_refusals_in_a_row_never_open_the_circuit(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=7)  # more than the 5 failures in a row that open it
    service.stubs.openrouter.faults.ratios = {Fault.MODERATION: 1.0}

    response = await service.process({"concurrency": 1, "batch_size": 7})

    body = response.json()
    assert response.status_code == 200
    assert body["circuit_open"] is None
    assert (body["failed"], body["released"]) == (7, 0)
    failed = await conn.fetchval("select count(*) from campaign_messages where status = 'failed'")
    assert failed == 7


async def test_a_403_from_the_send_endpoint_is_still_a_key_problem(
    service: Service, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=4)
    service.stubs.send.faults.ratios = {Fault.STATUS: 1.0}
    service.stubs.send.faults.status = 403

    response = await service.process({"concurrency": 1, "batch_size": 4})

    assert response.status_code == 502
    body = response.json()
    assert body["success"] is False
    assert "403" in (body["circuit_open"] or "")
    assert body["failed"] == 0
    pending = await conn.fetchval("select count(*) from campaign_messages where status = 'pending'")
    assert pending == 4


async def test_an_error_inside_a_200_is_retried_and_the_message_sent(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    service.stubs.openrouter.faults.script = deque([Fault.ERROR_IN_BODY])
    service.stubs.openrouter.faults.status = 502

    body = (await service.process()).json()

    assert body["processed"] == 1
    assert service.stubs.openrouter.requests == 2
    row = await message_row(conn, seeded.message_ids[0])
    assert row["ai_cost_usd"] == Decimal(str(service.stubs.openrouter.costs[0]))
