"""Suppression and stop-on-reply end to end: the real service over loopback HTTP, the stubs
of OpenRouter and the send endpoint, real Postgres (README, "Number health")."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import asyncpg
import httpx

from app.main import create_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Latency
from app.status import render
from app.status_answer import StatusAnswer
from tests.processing.invariants import assert_ended_runs_completed, assert_no_lease_left
from tests.service import Service
from tests.sql.helpers import message_row, run_row
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs

WAIT_BOUND_S = 20.0  # a bound on polling the database, not a timing assertion


def prompts(stubs: Stubs) -> list[str]:
    """Every message the LLM stub was sent, as one text per request."""
    return [
        " ".join(str(m.get("content", "")) for m in info.body.get("messages") or [])
        for info in stubs.openrouter.seen
    ]


async def lead_name(conn: asyncpg.Connection, lead_id: uuid.UUID) -> str:
    return str(await conn.fetchval("select client_name from leads where id = $1", lead_id))


async def test_opted_out_and_replied_contacts_are_skipped_before_the_llm(
    service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    suppressed = await conn.fetchval(
        "select suppress_campaign_contact($1, '+55 (11) 90000-0002', 'STOP')", seeded.workspace_id
    )
    assert suppressed["created"] is True
    # The third lead's phone answered an earlier campaign of the workspace two days ago.
    history = await seed_campaign(conn, leads=3, workspace_id=seeded.workspace_id)
    await conn.execute(
        """update campaign_messages
              set status = case when phone_normalized = '5511900000003' then 'replied'
                                else 'sent' end,
                  updated_at = now() - interval '2 days'
            where run_id = $1""",
        history.run_id,
    )
    await conn.execute(
        "update campaign_runs set status = 'completed', completed_at = now() where id = $1",
        history.run_id,
    )
    names = [await lead_name(conn, lead) for lead in seeded.lead_ids]

    body = (await service.process({"batch_size": 3})).json()

    assert (body["claimed"], body["processed"], body["skipped"]) == (3, 1, 2)
    rows = [await message_row(conn, m) for m in seeded.message_ids]
    assert [(r["status"], r["error_message"]) for r in rows] == [
        ("sent", None),
        ("skipped", "opted out"),
        ("skipped", "replied"),
    ]
    assert [r["ai_tokens_used"] is None for r in rows] == [False, True, True]
    seen = prompts(service.stubs)
    assert any(names[0] in p for p in seen)  # the one not stopped went through the LLM
    assert not any(names[1] in p or names[2] in p for p in seen)  # the stopped never did
    assert service.stubs.send.delivered_keys() == [f"{seeded.message_ids[0]}:0"]
    assert (await run_row(conn, seeded.run_id))["status"] == "completed"
    await assert_no_lease_left(conn)
    await assert_ended_runs_completed(conn)

    status = (
        await service.http.get(
            service.url + "/status", headers={"Authorization": f"Bearer {CRON_SECRET}"}
        )
    ).json()
    StatusAnswer.model_validate(status)  # the field the OpenAPI document describes
    by_reason = {s["reason"]: s["count"] for s in status["skipped_by_reason"]}
    assert (by_reason["opted out"], by_reason["replied"]) == (1, 1)
    text = render(status)
    skipped = text[text.index("SKIPPED, LAST 24 H (by reason)") :]
    assert "opted out" in skipped
    assert "replied" in skipped


async def test_with_stop_on_reply_off_a_contact_who_replied_is_written_to(
    conn: asyncpg.Connection, db_dsn: str, make_settings: SettingsFactory, stubs: Stubs
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    history = await seed_campaign(conn, leads=1, workspace_id=seeded.workspace_id)
    await conn.execute(
        "update campaign_messages set status = 'replied' where run_id = $1", history.run_id
    )
    settings = make_settings(database_url=db_dsn, reply_stop_days=0)
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(
                server.url + "/process-queue",
                json={},
                headers={"Authorization": f"Bearer {CRON_SECRET}"},
            )
    assert response.json()["processed"] == 1
    assert (await message_row(conn, seeded.message_ids[0]))["status"] == "sent"


async def test_a_stop_during_generation_skips_before_the_first_part_and_keeps_the_cost(
    conn: asyncpg.Connection, db_dsn: str, make_settings: SettingsFactory, stubs: Stubs
) -> None:
    # Pacing on: the first part's slot is taken, and with it the contact checked again.
    settings = make_settings(database_url=db_dsn, inbox_min_gap_s=0.1, inbox_max_gap_s=0.1)
    seeded = await seed_campaign(conn, leads=1)
    message_id = seeded.message_ids[0]
    stubs.openrouter.latency = Latency(fixed_ms=1500)  # the text is being written meanwhile

    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            call = asyncio.create_task(
                http.post(
                    server.url + "/process-queue",
                    json={},
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
            )
            deadline = time.monotonic() + WAIT_BOUND_S
            while time.monotonic() < deadline:
                if stubs.openrouter.seen:  # the generation is under way
                    break
                await asyncio.sleep(0.02)
            assert (await message_row(conn, message_id))["status"] == "generating"
            await conn.fetchval(
                "select suppress_campaign_contact($1, '5511900000001', 'STOP')",
                seeded.workspace_id,
            )
            body = (await call).json()

    assert (body["claimed"], body["skipped"], body["processed"]) == (1, 1, 0)
    row = await message_row(conn, message_id)
    assert (row["status"], row["error_message"], row["parts_sent"]) == ("skipped", "opted out", 0)
    assert stubs.send.delivered_keys() == []
    assert stubs.openrouter.generations == 1
    assert row["ai_tokens_used"] is not None
    assert row["ai_cost_usd"] == Decimal(str(stubs.openrouter.costs[0]))
    assert (await run_row(conn, seeded.run_id))["status"] == "completed"
    await assert_no_lease_left(conn)
