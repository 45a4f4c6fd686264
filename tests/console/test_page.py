"""What the page shows, over real HTTP on real data: the runs filtered by status and paged,
the chart's bars against the sent_at counts, the inbox buttons, and no phone number whole."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from app.sandbox.seed import seed_campaign
from tests.console.helpers import Console, run_rows


async def test_the_runs_are_filtered_by_status_and_paged(
    console: Console, conn: asyncpg.Connection
) -> None:
    first = await seed_campaign(conn, leads=1)
    running = [first.run_id]
    for _ in range(21):
        running.append((await seed_campaign(conn, leads=1, inbox_id=first.inbox_id)).run_id)
    paused = (await seed_campaign(conn, leads=1, run_status="paused")).run_id
    completed = []
    for days in (3, 1, 2):
        run = (await seed_campaign(conn, leads=0, run_status="completed")).run_id
        await conn.execute(
            "update campaign_runs set completed_at = now() - $2 * interval '1 day' where id = $1",
            run,
            days,
        )
        completed.append(run)

    page1 = await console.page("?status=running")
    assert len(run_rows(page1)) == 20
    assert "Runs <small>(22)</small>" in page1
    assert 'rel="prev"' not in page1
    next_link = re.search(r'<a rel="next" href="([^"]+)"', page1)
    assert next_link
    assert next_link.group(1) == "/console?status=running&amp;page=2"
    page2 = await console.page("?status=running&page=2")
    assert len(run_rows(page2)) == 2
    assert 'rel="next"' not in page2
    assert re.search(r'<a rel="prev" href="/console\?status=running&amp;page=1"', page2)
    assert sorted(run_rows(page1) + run_rows(page2)) == sorted(str(r) for r in running)

    assert run_rows(await console.page("?status=paused")) == [str(paused)]
    # ended runs: the latest ended first
    assert run_rows(await console.page("?status=completed")) == [
        str(completed[1]),
        str(completed[2]),
        str(completed[0]),
    ]
    assert run_rows(await console.page("?status=cancelled")) == []
    everything = run_rows(await console.page("?status=all")) + run_rows(
        await console.page("?status=all&page=2")
    )
    assert len(everything) == 26
    assert everything[-3:] == [str(completed[1]), str(completed[2]), str(completed[0])]
    assert everything[22] == str(paused)  # running, then paused, then ended
    selected = re.search(r'<option value="(\w+)" selected', await console.page("?status=paused"))
    assert selected
    assert selected.group(1) == "paused"

    # an action keeps the filter and the page
    response = await console.post(f"/console/runs/{running[0]}/pause?status=running&page=2")
    assert response.headers["location"] == "/console?status=running&page=2#flash"


async def test_the_charts_bars_are_the_sends_of_each_minute(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=9)
    now = await conn.fetchval("select clock_timestamp()")
    minute = now.replace(second=0, microsecond=0)
    # minutes ago -> sends: this minute, 1, 7 and 59 minutes back; 61 back is out of the hour
    plan = {0: 2, 1: 1, 7: 3, 59: 1, 61: 2}
    ids = iter(seeded.message_ids)
    for back, n in plan.items():
        for _ in range(n):
            sent_at = min(minute - timedelta(minutes=back) + timedelta(seconds=1), now)
            await conn.execute(
                "update campaign_messages set status = 'sent', sent_at = $2 where id = $1",
                next(ids),
                sent_at,
            )
    page = await console.page()
    bars = re.findall(r'<rect [^>]*data-minute="([^"]+)" data-sent="(\d+)"', page)
    assert len(bars) == 60
    by_minute = {datetime.fromisoformat(at): int(n) for at, n in bars}
    start = minute.astimezone(UTC) - timedelta(minutes=59)
    assert sorted(by_minute) == [start + timedelta(minutes=i) for i in range(60)]
    expected = {minute.astimezone(UTC) - timedelta(minutes=b): n for b, n in plan.items()}
    assert by_minute == {m: expected.get(m, 0) for m in by_minute}
    tallest = re.search(r'data-minute="[^"]+" data-sent="3"', page)
    assert tallest
    heights = re.findall(r'height="([\d.]+)" data-minute="[^"]+" data-sent="(\d+)"', page)
    assert {n: float(h) for h, n in heights}["3"] == 120.0


async def test_no_phone_number_is_on_the_page_whole(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    phones = await conn.fetch("select phone_number from campaign_messages")
    await conn.execute(
        "update campaign_messages set status = 'failed', "
        "error_message = 'send failed: invalid number ' || phone_number where id = $1",
        seeded.message_ids[0],
    )
    await conn.execute(
        "update campaign_runs set status = 'paused', leads_failed = 1, "
        "error_message = 'paused: +55 (11) 90000-0002 complained' where id = $1",
        seeded.run_id,
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + interval '1 hour', 'send failed for +5511900000003')
           on conflict (inbox_id) do update
             set brake_until = excluded.brake_until, brake_reason = excluded.brake_reason""",
        seeded.inbox_id,
    )
    page = await console.page("?status=paused")
    assert run_rows(page) == [str(seeded.run_id)]
    assert "complained" in page
    assert 'data-action="lift-brake"' in page
    digits = re.sub(r"\D", "", page)
    for row in phones:
        number = re.sub(r"\D", "", row["phone_number"])
        assert number not in digits
        assert number[-8:] not in re.sub(r"[^\d\s]", "", page)
    assert "…02 complained" in page


async def test_the_inbox_buttons_set_and_clear_its_pacing(
    console: Console, conn: asyncpg.Connection
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    inbox, short = seeded.inbox_id, str(seeded.inbox_id)[:8]
    page = await console.page()
    assert f'<tr data-inbox-id="{inbox}"' in page
    assert 'data-action="pacing"' in page
    assert 'data-action="clear-pacing"' in page

    flash = await console.act(
        f"/console/inboxes/{inbox}/pacing",
        {"min_gap_s": "30", "max_gap_s": "90", "daily_cap": "", "timezone": ""},
    )
    assert flash.startswith(f"Set pacing of inbox {short}…: the service's settings → ")
    assert "min gap 30 s" in flash
    assert "max gap 90 s" in flash
    row = await conn.fetchrow("select * from campaign_inbox_pacing where inbox_id = $1", inbox)
    assert (row["min_gap_s"], row["max_gap_s"], row["daily_cap"]) == (30, 90, None)

    refused = await console.act(f"/console/inboxes/{inbox}/pacing", {"daily_cap": "-1"})
    assert refused.startswith(f"Refused: set pacing of inbox {short}…: daily_cap: ")
    nothing = await console.act(f"/console/inboxes/{inbox}/pacing", {"min_gap_s": ""})
    assert nothing.startswith("Refused: ")
    row = await conn.fetchrow("select * from campaign_inbox_pacing where inbox_id = $1", inbox)
    assert (row["min_gap_s"], row["max_gap_s"], row["daily_cap"]) == (30, 90, None)

    flash = await console.act(f"/console/inboxes/{inbox}/clear-pacing")
    assert flash.startswith(f"Cleared pacing of inbox {short}…: ")
    assert flash.endswith("→ the service's settings.")
    assert not await conn.fetchval("select count(*) from campaign_inbox_pacing")
    again = await console.act(f"/console/inboxes/{inbox}/clear-pacing")
    assert again == (
        f"Refused: clear pacing of inbox {short}…: it has no pacing overrides. Nothing changed."
    )
    unknown = uuid.uuid4()
    assert (await console.act(f"/console/inboxes/{unknown}/clear-pacing")).startswith(
        f"Refused: clear pacing of inbox {str(unknown)[:8]}…: no such inbox."
    )


async def test_a_running_run_with_a_message_due_now_is_not_shown_as_done(
    console: Console, conn: asyncpg.Connection
) -> None:
    # eta_s 0 means its last message is due now; "done" told the operator it had ended.
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute(  # a paced inbox, whose next slot is free now
        "select set_inbox_pacing(p_inbox_id => $1, p_min_gap_s => 30, p_max_gap_s => 60)",
        seeded.inbox_id,
    )
    page = await console.page()
    row = page.split(f'<tr data-run-id="{seeded.run_id}"', 1)[1].split("</tr>", 1)[0]
    eta = re.search(r'data-field="eta"[^>]*>([^<]+)<', row)
    assert eta
    assert eta.group(1) == "now"


async def test_a_page_number_of_other_digits_reads_as_the_first_page(
    console: Console, conn: asyncpg.Connection
) -> None:
    # "²" passes str.isdigit() but not int(): the page answered 500, and so did the redirect
    # of a button posted from such a page, after its action was done.
    seeded = await seed_campaign(conn, leads=1)
    for query in ("?page=%C2%B2", "?status=all&page=%C2%B9%C2%B2"):
        page = await console.page(query)
        assert run_rows(page) == [str(seeded.run_id)]
    response = await console.post(f"/console/runs/{seeded.run_id}/pause?page=%C2%B2")
    assert response.status_code == 303
    assert response.headers["location"] == "/console?status=all&page=1#flash"
