"""The inbox's and the contact's buttons, clicked as a person does: a braked inbox's brake
lifted, a contact suppressed and unsuppressed; the database must agree with the page."""

from __future__ import annotations

import asyncpg
from playwright.async_api import Locator, Page, expect

from tests.browser.helpers import BROWSER_MARKS, Console, sign_in

pytestmark = BROWSER_MARKS

# Made up, in the demo's shape (+55 11 9xxxx-xxxx); never a real person's.
PHONE = "+55 (11) 97777-0042"
DIGITS = "5511977770042"


async def click_and_follow(page: Page, button: Locator) -> None:
    async with page.expect_navigation():
        await button.click()


async def test_the_lift_brake_button_ends_a_braked_inboxs_brake(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    inbox_id = str(
        await db.fetchval(
            """select c.inbox_id from campaign_runs r
                 join campaign_configs c on c.id = r.config_id
                where r.status = 'running' order by r.started_at desc limit 1"""
        )
    )
    # As a send that trips the brake leaves it (sql/043_failure_brake.sql).
    await db.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1::uuid, now() + interval '6 hours', '5 of the last 20 sends failed')
           on conflict (inbox_id) do update
             set brake_until = excluded.brake_until, brake_reason = excluded.brake_reason""",
        inbox_id,
    )
    await sign_in(page, console)
    row = page.locator(f'section#inboxes tr[data-inbox-id="{inbox_id}"]')
    await expect(row).to_contain_text("5 of the last 20 sends failed")

    await click_and_follow(page, row.locator("button[data-action=lift-brake]"))

    await expect(page.locator("#flash")).to_contain_text(
        f"Lifted the brake of inbox {inbox_id[:8]}"
    )
    assert await db.fetchval(
        "select brake_until <= now() from campaign_inbox_pacing_state where inbox_id = $1::uuid",
        inbox_id,
    )
    await expect(row.locator("button[data-action=lift-brake]")).to_have_count(0)


async def test_a_contact_is_suppressed_then_unsuppressed_and_never_shown_whole(
    page: Page, console: Console, db: asyncpg.Connection
) -> None:
    workspace_id = str(await db.fetchval("select workspace_id from campaign_configs limit 1"))
    listed = """select reason from campaign_suppressions
                 where workspace_id = $1::uuid and phone_normalized = $2"""
    await sign_in(page, console)

    suppress = page.locator("section#contacts form[data-action=suppress]")
    await suppress.get_by_label("workspace id").fill(workspace_id)
    await suppress.get_by_label("phone").fill(PHONE)
    await suppress.get_by_label("reason (optional)").fill("asked to stop")
    await click_and_follow(page, suppress.locator("button[data-action=suppress]"))

    await expect(page.locator("#flash")).to_have_text(
        "Suppressed contact ***0042: no campaign message goes to it from now on."
    )
    assert await db.fetchval(listed, workspace_id, DIGITS) == "asked to stop"
    assert DIGITS not in await page.content()

    unsuppress = page.locator("section#contacts form[data-action=unsuppress]")
    await unsuppress.get_by_label("workspace id").fill(workspace_id)
    await unsuppress.get_by_label("phone").fill(PHONE)
    await click_and_follow(page, unsuppress.locator("button[data-action=unsuppress]"))

    await expect(page.locator("#flash")).to_have_text(
        "Unsuppressed contact ***0042: campaigns may message it again."
    )
    assert await db.fetchval(listed, workspace_id, DIGITS) is None
    assert DIGITS not in await page.content()
