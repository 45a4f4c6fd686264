"""The run buttons over real HTTP: each POST changes the database as its action says, 303s
back to /console with the filter and page, and #flash says what changed; a refused action and
a form without its CSRF token change nothing."""

from __future__ import annotations

import asyncpg

from app.sandbox.seed import seed_campaign
from tests.console.helpers import Console, run_rows, run_status


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
    assert flash == f"Cancelled run {short}…: running → cancelled; 3 pending message(s) skipped."
    assert await run_state(conn, run) == "cancelled"
    statuses = await conn.fetch("select status, error_message from campaign_messages")
    assert {(r["status"], r["error_message"]) for r in statuses} == {("skipped", "cancelled")}
