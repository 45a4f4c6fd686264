"""A signed-in operator's browser on another site's page that posts a form to the console: the
browser leaves the SameSite=Strict cookie out, so the console sees no session, and nothing
changes. The other site is http://localhost:<port> (a site of its own: cookies and SameSite
go by host name, so 127.0.0.1 on another port would be the same site)."""

from __future__ import annotations

import html

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Page, Response

from app.sandbox.server import LoopbackServer
from tests.browser.helpers import BROWSER_MARKS, Console, run_statuses, sign_in
from tests.browser.test_run_actions import running_run_with_pending

pytestmark = BROWSER_MARKS


def other_site(target: str) -> FastAPI:
    """A page that posts a pause form to the console as soon as it loads."""
    app = FastAPI()
    page = (
        "<!doctype html><title>another site</title>"
        f'<form id=f method=post action="{html.escape(target)}">'
        '<input type=hidden name=csrf value="guessed"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )

    @app.get("/")
    async def attack() -> HTMLResponse:
        return HTMLResponse(page)

    return app


async def test_another_sites_form_post_carries_no_session_and_changes_nothing(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    run_id = await running_run_with_pending(db)
    await sign_in(page, console)  # the same browser context: the session cookie is set
    target = console.at(f"/console/runs/{run_id}/pause")

    with LoopbackServer(other_site(target)) as site:
        attacker = site.url.replace("127.0.0.1", "localhost") + "/"
        async with page.expect_response(lambda r: r.url.startswith(target)) as posted:
            await page.goto(attacker)
        answer: Response = await posted.value

    assert answer.status == 401  # no cookie went with it (with it, the CSRF check says 403)
    assert (await run_statuses(db))[run_id] == "running"
    await page.goto(console.url)  # still signed in on the console's own site
    assert page.url.split("?")[0] == console.url
