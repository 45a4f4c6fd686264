"""The run buttons over real HTTP: each POST changes the database as its action says, 303s
back to /console with the filter and page, and #flash says what changed; a refused action and
a form without its CSRF token change nothing."""

from __future__ import annotations

import html
import re
import uuid

import asyncpg
import httpx

from app.sandbox.seed import seed_campaign
from tests.console.helpers import (
    OPERATOR_TOKEN,
    Console,
    basic,
    csrf_of,
    run_rows,
    run_status,
)
from tests.service import Service


async def run_state(conn: asyncpg.Connection, run_id: object) -> str:
    return str(await conn.fetchval("select status from campaign_runs where id = $1", run_id))


async def test_pause_resume_and_cancel_change_the_run_and_say_so(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    run = seeded.run_id
    page = await console.page()
    assert run_rows(page) == [str(run)]
    assert run_status(page, run) == "running"
    assert 'data-action="pause"' in page

    flash = await console.act(f"/console/runs/{run}/pause")
    assert flash == f"Paused run {str(run)[:8]}…: running → paused."
    assert await run_state(conn, run) == "paused"
    assert run_status(await console.page(), run) == "paused"

    flash = await console.act(f"/console/runs/{run}/resume")
    assert flash.startswith(f"Resumed run {str(run)[:8]}…: paused → running")
    assert await run_state(conn, run) == "running"

    flash = await console.act(f"/console/runs/{run}/cancel")
    short = str(run)[:8]
    assert flash == f"Cancelled run {short}…: running → cancelled; 3 pending messages skipped."
    assert await run_state(conn, run) == "cancelled"
    statuses = await conn.fetch("select status, error_message from campaign_messages")
    assert {(r["status"], r["error_message"]) for r in statuses} == {("skipped", "cancelled")}


def requeue_options(page: str, run_id: object) -> list[str]:
    row = page.split(f'<tr data-run-id="{run_id}"', 1)[1].split("</tr>", 1)[0]
    select = row.split('<select name="reason"', 1)[1].split("</select>", 1)[0]
    return [html.unescape(v) for v in re.findall(r'<option value="([^"]*)"', select)]


async def fail(conn: asyncpg.Connection, message_ids: list[uuid.UUID], errors: list[str]) -> None:
    for message_id, error in zip(message_ids, errors, strict=True):
        await conn.execute(
            "update campaign_messages set status = 'failed', error_message = $2 where id = $1",
            message_id,
            error,
        )
    await conn.execute("update campaign_runs set leads_failed = $1", len(message_ids))


async def test_requeue_offers_the_runs_reason_groups_and_requeues_just_the_one_chosen(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    run, ids = seeded.run_id, seeded.message_ids
    errors = [
        "send failed: HTTP 400 invalid number 5511900000001",
        "send failed: HTTP 400 invalid number 5511900000002",
        "generate failed: timeout after 30 s",
    ]
    await fail(conn, ids[:3], errors)
    page = await console.page()
    options = requeue_options(page, run)
    assert options == [
        "",
        "send failed: HTTP 400 invalid number <n>",
        "generate failed: timeout after <n> s",
    ]
    assert "5511900000001" not in page

    flash = await console.act(f"/console/runs/{run}/requeue", {"reason": options[1]})

    assert flash == (
        f"Requeued 2 failed messages of run {str(run)[:8]}… "
        "(“send failed: HTTP 400 invalid number <n>”): pending again."
    )
    rows = await conn.fetch("select id, status from campaign_messages")
    by_id = {r["id"]: r["status"] for r in rows}
    assert [by_id[m] for m in ids] == ["pending", "pending", "failed", "pending"]
    assert requeue_options(await console.page(), run) == ["", options[2]]

    flash = await console.act(f"/console/runs/{run}/requeue", {"reason": ""})
    assert flash.startswith(f"Requeued 1 failed message of run {str(run)[:8]}… (every reason)")
    statuses = await conn.fetch("select status from campaign_messages")
    assert {r["status"] for r in statuses} == {"pending"}
    assert 'data-action="requeue"' not in await console.page()


async def test_a_refused_action_changes_nothing_and_says_why(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2, run_status="paused")
    run = seeded.run_id
    short = str(run)[:8]

    assert await console.act(f"/console/runs/{run}/pause") == (
        f"Refused: pause run {short}…: it is not running (paused). Nothing changed."
    )
    assert await console.act(f"/console/runs/{run}/requeue", {"reason": ""}) == (
        f"Refused: requeue run {short}…: it has no failed message to requeue (paused). "
        "Nothing changed."
    )
    nowhere = uuid.uuid4()
    assert await console.act(f"/console/runs/{nowhere}/resume") == (
        f"Refused: resume run {str(nowhere)[:8]}…: no such run. Nothing changed."
    )
    assert await run_state(conn, run) == "paused"
    statuses = await conn.fetch("select status from campaign_messages")
    assert [r["status"] for r in statuses] == ["pending", "pending"]


async def test_a_form_without_its_csrf_token_is_403_and_changes_nothing(
    console: Console, console_service: Service, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    path = f"/console/runs/{seeded.run_id}/pause"
    # a token of another session (signed in separately) is not this session's
    async with httpx.AsyncClient() as other:
        await other.post(console.url + "/console/sign-in", data={"token": OPERATOR_TOKEN})
        page = await other.get(console.url + "/console")
        others = csrf_of(page.text)
    assert others != await console.csrf()

    for csrf in ("", "forged", others):
        response = await console.post(path, csrf=csrf)
        assert response.status_code == 403, csrf
        assert "CSRF" in response.text
    missing = await console.http.post(console.url + path, data={})
    assert missing.status_code == 403
    # Basic: the Basic session's token, not a cookie session's
    basic_post = await console_service.http.post(
        console.url + path, data={"csrf": others}, headers=basic(OPERATOR_TOKEN)
    )
    assert basic_post.status_code == 403
    assert await run_state(conn, seeded.run_id) == "running"


async def test_a_reason_postgres_cannot_hold_is_refused_naming_it(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await fail(conn, seeded.message_ids, ["send failed: HTTP 400"])

    flash = await console.act(f"/console/runs/{seeded.run_id}/requeue", {"reason": "a\x00b"})

    assert flash.startswith(f"Refused: requeue run {str(seeded.run_id)[:8]}…: reason: ")
    assert "NUL" in flash
    assert await conn.fetchval("select status from campaign_messages") == "failed"
