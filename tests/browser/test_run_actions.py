"""The run buttons, clicked as a person does; the database must agree with what the page shows.

In the file's order (one worker runs them, on one demo): pause and resume leave the run as it
was; cancel, last, ends a run for good.
"""

from __future__ import annotations

import asyncpg
from playwright.async_api import Dialog, Locator, Page, Request, expect

from tests.browser.helpers import (
    BROWSER_MARKS,
    Console,
    failed_by_reason,
    message_statuses,
    run_statuses,
    sign_in,
)

pytestmark = BROWSER_MARKS


def run_row(page: Page, run_id: str) -> Locator:
    return page.locator(f'section#runs tr[data-run-id="{run_id}"]')


async def running_run_with_pending(db: asyncpg.Connection) -> str:
    run_id = await db.fetchval(
        "select r.id from campaign_runs r where r.status = 'running'"
        "   and exists (select 1 from campaign_messages m"
        "                where m.run_id = r.id and m.status = 'pending')"
        " order by r.started_at desc limit 1"
    )
    assert run_id is not None, "the demo leaves a run running with pending messages"
    return str(run_id)


async def click_and_follow(page: Page, button: Locator) -> None:
    """Clicks a button whose form posts, and waits for the page it is sent back to."""
    async with page.expect_navigation():
        await button.click()


async def test_the_pause_button_pauses_the_run_and_resume_brings_it_back(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    run_id = await running_run_with_pending(db)
    await sign_in(page, console)
    row = run_row(page, run_id)
    await expect(row.locator("[data-field=status]")).to_have_text("running")

    await click_and_follow(page, row.locator("button[data-action=pause]"))

    await expect(row.locator("[data-field=status]")).to_have_text("paused")
    await expect(page.locator("#flash")).to_contain_text("paused")
    assert (await run_statuses(db))[run_id] == "paused"
    await expect(row.locator("button[data-action=pause]")).to_have_count(0)

    await click_and_follow(page, row.locator("button[data-action=resume]"))

    await expect(row.locator("[data-field=status]")).to_have_text("running")
    assert (await run_statuses(db))[run_id] == "running"


async def test_a_requeue_of_one_reason_group_requeues_just_those_messages(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    before = await failed_by_reason(db)
    reasons_by_run: dict[str, list[str]] = {}
    for run_id, reason in before:
        reasons_by_run.setdefault(run_id, []).append(reason)
    run_id, reasons = next(
        ((run, sorted(rs)) for run, rs in sorted(reasons_by_run.items()) if len(rs) >= 2),
        ("", []),
    )
    assert run_id, f"the demo leaves a run with failures of two reasons or more: {before.keys()}"
    reason = reasons[0]
    requeued = before[(run_id, reason)]

    await sign_in(page, console)
    form = run_row(page, run_id).locator("form[data-action=requeue]")
    options = form.locator("select[name=reason] option")
    offered = {await options.nth(i).get_attribute("value") for i in range(await options.count())}
    assert {"", *reasons} <= offered  # all failed messages, or one group
    choice = form.locator("select[name=reason]")
    await choice.focus()  # as a click on it does: the 5 s refresh leaves a focused form alone
    await choice.select_option(value=reason)
    await click_and_follow(page, form.locator("button[data-action=requeue]"))

    flash = page.locator("#flash")
    count = len(requeued)
    await expect(flash).to_contain_text(
        f"Requeued {count} failed message{'' if count == 1 else 's'}"
    )
    await expect(flash).to_contain_text(f"of run {run_id[:8]}… (“{reason}”): pending again")
    await expect(flash).not_to_contain_text("running → running")
    after = await failed_by_reason(db)
    assert (run_id, reason) not in after
    assert after == {group: ids for group, ids in before.items() if group != (run_id, reason)}
    statuses = await message_statuses(db, run_id)
    assert {statuses[message][0] for message in requeued} == {"pending"}
    status = (await run_statuses(db))[run_id]
    await expect(run_row(page, run_id).locator("[data-field=status]")).to_have_text(status)


async def test_cancel_asks_first_then_skips_the_pending_messages_as_cancelled(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    run_id = await running_run_with_pending(db)
    before = await message_statuses(db, run_id)
    pending = {message for message, (status, _) in before.items() if status == "pending"}
    await sign_in(page, console)
    posts: list[str] = []

    def record_post(request: Request) -> None:
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", record_post)
    asked: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.type)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    cancel = run_row(page, run_id).locator("button[data-action=cancel]")
    await cancel.click()  # waits for a navigation the click starts: none, it was dismissed
    assert asked == ["confirm"]
    assert posts == []
    assert (await run_statuses(db))[run_id] == "running"

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.type)
        await dialog.accept()

    page.once("dialog", accept)
    await click_and_follow(page, cancel)

    assert asked == ["confirm", "confirm"]
    await expect(run_row(page, run_id).locator("[data-field=status]")).to_have_text("cancelled")
    await expect(page.locator("#flash")).to_contain_text("cancel")
    assert (await run_statuses(db))[run_id] == "cancelled"
    after = await message_statuses(db, run_id)
    assert {after[message] for message in pending} == {("skipped", "cancelled")}
    assert {m: s for m, s in after.items() if m not in pending} == {
        m: s for m, s in before.items() if m not in pending
    }
