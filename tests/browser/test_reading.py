"""The console reads well: the pacing form stays out of the way until opened, short values
and headers keep to one line at 1280 px, the chart's times are readable on a phone, an ended
run shows no empty "Actions", and the flash says what an action changed."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.helpers import BROWSER_MARKS, Console, OpenPage, sign_in

pytestmark = BROWSER_MARKS

PACING_LABELS = [
    "min gap (s)",
    "max gap (s)",
    "daily cap",
    "time zone",
    "warm-up days",
    "warm-up start cap",
    "hourly cap",
    "warm-up day 0",
]
REFRESH_TIMEOUT_MS = 12_000  # the page refreshes its inner part every 5 s

# How many lines an element's text takes: the distinct tops of its text's line boxes.
LINES = """(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
}"""


async def test_the_pacing_form_is_closed_until_opened_labels_its_fields_and_sets_and_clears(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    await sign_in(page, console)
    row = page.locator("section#inboxes tr[data-inbox-id]").first
    inbox_id = await row.get_attribute("data-inbox-id")
    form = row.locator("form[data-action=pacing]")
    await expect(form).to_be_hidden()
    await expect(row.locator("button[data-action=clear-pacing]")).to_be_hidden()

    await row.get_by_text("Edit pacing").click()

    await expect(form).to_be_visible()
    for label in PACING_LABELS:
        await expect(form.get_by_label(label, exact=True)).to_be_visible()
    # The 5 s refresh swaps the page's inner part: an opened form stays open.
    async with page.expect_response(
        lambda answer: "/console/part" in answer.url, timeout=REFRESH_TIMEOUT_MS
    ):
        pass
    await expect(row.locator("form[data-action=pacing]")).to_be_visible()

    await form.get_by_label("hourly cap", exact=True).fill("40")
    async with page.expect_navigation():
        await form.locator("button[data-action=pacing]").click()
    await expect(page.locator("#flash")).to_have_text(
        f"Set pacing of inbox {str(inbox_id)[:8]}…: the service's settings → hourly cap 40."
    )
    cap = "select hourly_cap from campaign_inbox_pacing where inbox_id = $1::uuid"
    assert await db.fetchval(cap, inbox_id) == 40

    row = page.locator(f'section#inboxes tr[data-inbox-id="{inbox_id}"]')
    await row.get_by_text("Edit pacing").click()
    async with page.expect_navigation():
        await row.locator("button[data-action=clear-pacing]").click()
    await expect(page.locator("#flash")).to_have_text(
        f"Cleared pacing of inbox {str(inbox_id)[:8]}…: hourly cap 40 → the service's settings."
    )
    assert await db.fetchval(cap, inbox_id) is None


async def test_at_1280_px_headers_paces_and_etas_keep_to_one_line(
    page: Page, console: Console
) -> None:
    await sign_in(page, console)
    # An opened pacing form widens its column: the others still keep to one line.
    await page.locator("section#inboxes summary").first.click()
    cells = page.locator(
        "section#runs th, section#inboxes th, [data-field=pace], [data-field=eta],"
        " [data-field=sent_today], [data-field=warmup], td[data-label=Run] small,"
        " [data-field=ai_cost] small"
    )
    assert await cells.count() > 20
    wrapped = []
    for i in range(await cells.count()):
        cell = cells.nth(i)
        if await cell.evaluate(LINES) > 1:
            wrapped.append(await cell.inner_text())
    assert wrapped == [], f"broken over two lines or more at 1280 px: {wrapped}"


async def test_on_a_phone_the_charts_times_are_readable_and_an_ended_run_has_no_actions(
    open_page: OpenPage, console: Console, db: asyncpg.Connection
) -> None:
    page = await open_page(viewport={"width": 375, "height": 812}, is_mobile=True)
    await sign_in(page, console)
    times = page.locator("section#throughput .axis span")
    assert await times.count() >= 3
    for i in range(await times.count()):
        size = await times.nth(i).evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        box = await times.nth(i).bounding_box()
        assert size >= 11
        assert box is not None
        assert box["height"] >= 11, box
    assert await page.locator("svg#sent-per-minute text").count() == 0

    ended = await db.fetchval(
        "select r.id from campaign_runs r where r.status = 'completed' and not exists"
        " (select 1 from campaign_messages m where m.run_id = r.id and m.status = 'failed')"
    )
    assert ended is not None, "the demo leaves a completed run without failures"
    await expect(page.locator(f'tr[data-run-id="{ended}"] td[data-label=Actions]')).to_be_hidden()
    running = page.locator("tr[data-run-id]", has=page.locator("button[data-action=pause]"))
    await expect(running.first.locator("td[data-label=Actions]")).to_be_visible()

    await page.locator("section#inboxes summary").first.click()  # for the screenshot too
    form = page.locator("section#inboxes form[data-action=pacing]").first
    await expect(form.get_by_label("warm-up start cap", exact=True)).to_be_visible()
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375


async def test_what_a_person_typed_survives_the_refresh_after_they_click_away(
    page: Page, console: Console
) -> None:
    await sign_in(page, console)
    row = page.locator("section#inboxes tr[data-inbox-id]").first
    await row.get_by_text("Edit pacing").click()
    field = row.locator("form[data-action=pacing]").get_by_label("hourly cap", exact=True)
    await field.fill("40")
    await page.locator("h1").click()  # the field loses its focus, its value stays typed

    # Longer than the refresh's 5 s: the page's inner part would have been swapped in.
    await page.wait_for_timeout(6_500)
    await expect(field).to_have_value("40")
    await expect(row.locator("form[data-action=pacing]")).to_be_visible()
