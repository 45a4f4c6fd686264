"""The lift-brake and suppress/unsuppress buttons over real HTTP: each changes the database as
its operator action says and #flash says so; a refused one changes nothing. The contact's
phone never comes back whole on the page."""

from __future__ import annotations

import re

import asyncpg

from app.sandbox.seed import seed_campaign
from tests.console.helpers import Console

PHONE = "+55 (11) 90000-0001"  # seed_campaign's first lead
DIGITS = "5511900000001"


async def test_lift_brake_lifts_it_and_says_so(console: Console, conn: asyncpg.Connection) -> None:
    seeded = await seed_campaign(conn, leads=1)
    inbox, short = seeded.inbox_id, str(seeded.inbox_id)[:8]
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + interval '6 hours', '5 of the last 5 sends failed for good')""",
        inbox,
    )
    page = await console.page()
    row = page.split(f'<tr data-inbox-id="{inbox}"', 1)[1].split("</tr>", 1)[0]
    assert "5 of the last 5 sends failed for good" in row
    assert 'data-action="lift-brake"' in row

    flash = await console.act(f"/console/inboxes/{inbox}/lift-brake")

    assert flash == (
        f"Lifted the brake of inbox {short}… (it was: 5 of the last 5 sends failed for good)."
    )
    assert not await conn.fetchval(
        "select brake_until > now() from campaign_inbox_pacing_state where inbox_id = $1", inbox
    )
    assert 'data-action="lift-brake"' not in await console.page()
    again = await console.act(f"/console/inboxes/{inbox}/lift-brake")
    assert again == f"Refused: lift brake of inbox {short}…: it is not braked. Nothing changed."


async def test_suppress_and_unsuppress_a_contact(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    workspace = str(seeded.workspace_id)
    page = await console.page()
    assert 'data-action="suppress"' in page
    assert 'data-action="unsuppress"' in page

    fields = {"workspace_id": workspace, "phone": PHONE, "reason": "asked by phone"}
    flash = await console.act("/console/contacts/suppress", fields)

    assert flash == "Suppressed contact ***0001: no campaign message goes to it from now on."
    rows = await conn.fetch(
        "select workspace_id, phone_normalized, reason from campaign_suppressions"
    )
    assert [tuple(r) for r in rows] == [(seeded.workspace_id, DIGITS, "asked by phone")]
    again = await console.act("/console/contacts/suppress", fields)
    assert again == (
        "Refused: suppress contact ***0001: it is already suppressed. Nothing changed."
    )

    flash = await console.act(
        "/console/contacts/unsuppress", {"workspace_id": workspace, "phone": PHONE}
    )
    assert flash == "Unsuppressed contact ***0001: campaigns may message it again."
    assert not await conn.fetchval("select count(*) from campaign_suppressions")

    bad = await console.act("/console/contacts/suppress", {"workspace_id": "nope", "phone": PHONE})
    assert bad.startswith("Refused: suppress: workspace_id: ")
    assert not await conn.fetchval("select count(*) from campaign_suppressions")
    page = await console.page()
    assert DIGITS not in re.sub(r"\D", "", page)


async def test_setting_the_warm_ups_day_0_says_it_changed(
    console: Console, conn: asyncpg.Connection
) -> None:
    # The answer carries first_sent_day before and after; the flash showed the overrides
    # only, so a change of day 0 alone read as "none → none".
    seeded = await seed_campaign(conn, leads=1)
    inbox, short = seeded.inbox_id, str(seeded.inbox_id)[:8]
    before = await conn.fetchval(
        "select first_sent_day from campaign_inbox_pacing_state where inbox_id = $1", inbox
    )
    day = await conn.fetchval("select (now() - interval '3 days')::date")

    flash = await console.act(f"/console/inboxes/{inbox}/pacing", {"first_sent_day": str(day)})

    assert (
        await conn.fetchval(
            "select first_sent_day from campaign_inbox_pacing_state where inbox_id = $1", inbox
        )
        == day
    )
    assert flash == f"Set pacing of inbox {short}…: warm-up day 0 {before or 'not set'} → {day}."
