"""Signing in to the console, as a person does: the form, HTTP Basic, a wrong token."""

from __future__ import annotations

import base64
import re

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.helpers import (
    BROWSER_MARKS,
    Console,
    OpenPage,
    sign_in,
)

pytestmark = BROWSER_MARKS


async def _shown_ids(page: Page, selector: str, attribute: str) -> set[str]:
    rows = page.locator(selector)
    return {str(await rows.nth(i).get_attribute(attribute)) for i in range(await rows.count())}


async def test_the_form_signs_in_and_the_page_shows_the_runs_and_the_inboxes(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    await page.goto(console.url)
    assert page.url == console.at("/console/sign-in")  # not signed in: sent to the form
    assert await page.get_attribute("form#sign-in input[name=token]", "type") == "password"

    await sign_in(page, console)

    runs = {
        str(r["id"]): r["status"] for r in await db.fetch("select id, status from campaign_runs")
    }
    active = {run_id for run_id, status in runs.items() if status in ("running", "paused")}
    assert active, "the demo leaves a run running"
    shown_runs = await _shown_ids(page, "section#runs tr[data-run-id]", "data-run-id")
    assert active <= shown_runs <= set(runs)
    for run_id in shown_runs:
        row = page.locator(f'section#runs tr[data-run-id="{run_id}"]')
        await expect(row.locator("[data-field=status]")).to_have_text(runs[run_id])

    inboxes = {
        str(r["inbox_id"])
        for r in await db.fetch(
            "select distinct c.inbox_id from campaign_configs c "
            "join campaign_runs r on r.config_id = c.id where r.status = 'running'"
        )
    }
    known = {str(r["inbox_id"]) for r in await db.fetch("select inbox_id from campaign_configs")}
    shown_inboxes = await _shown_ids(page, "section#inboxes tr[data-inbox-id]", "data-inbox-id")
    assert inboxes <= shown_inboxes <= known

    for part in ("queue", "failures", "contacts"):
        await expect(page.locator(f"section#{part}")).to_be_visible()
    await expect(page.locator("svg#sent-per-minute")).to_be_attached()

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["cq_console"]["httpOnly"] is True
    assert cookies["cq_console"]["sameSite"] == "Strict"
    assert cookies["cq_console"]["path"] == "/console"

    html, digits = await page.content(), re.sub(r"\D", "", await page.inner_text("body"))
    phones = [
        r["phone_number"] for r in await db.fetch("select phone_number from campaign_messages")
    ]
    assert phones
    whole = [p for p in phones if p in html or re.sub(r"\D", "", p) in digits]
    assert not whole, f"{len(whole)} phone number(s) shown whole"


async def test_http_basic_with_the_token_as_password_signs_in_for_the_request(
    open_page: OpenPage, console: Console
) -> None:
    # Sent with every request, as curl -u does: a browser's own credentials go only in answer
    # to a 401 challenge, and the console sends the signed-out to its form instead (303).
    basic = base64.b64encode(f"operator:{console.token}".encode()).decode()
    page = await open_page(extra_http_headers={"Authorization": f"Basic {basic}"})
    response = await page.goto(console.url)
    assert response is not None
    assert response.status == 200
    assert page.url == console.url
    await expect(page.locator("section#runs")).to_be_visible()
    assert await page.locator("section#runs tr[data-run-id]").count() > 0


async def test_a_wrong_token_shows_the_sign_in_error_and_signs_nobody_in(
    page: Page, console: Console
) -> None:
    await page.goto(console.at("/console/sign-in"))
    await page.fill("form#sign-in input[name=token]", "not-the-token-" + "x" * 16)
    async with page.expect_navigation() as navigation:
        await page.click("form#sign-in button[type=submit]")
    response = await navigation.value
    assert response is not None
    assert response.status == 401
    await expect(page.locator("#sign-in-error")).to_be_visible()
    assert (await page.inner_text("#sign-in-error")).strip()
    await expect(page.locator("form#sign-in")).to_be_visible()
    assert "cq_console" not in {c["name"] for c in await page.context.cookies()}

    # Still not signed in (asked with the page's cookies, so its screenshot shows the error).
    answer = await page.context.request.get(console.url, max_redirects=0)
    assert answer.status == 303
    assert answer.headers["location"].endswith("/console/sign-in")
