"""The daily cap counts the calendar day of the inbox (its override row's timezone, else the
service's INBOX_TIMEZONE), whatever the time zones of the campaigns sharing it.

Days end for real here: a campaign's zone is a POSIX offset (to the second) chosen so that
its midnight comes a second or two after the test starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.test_pacing import (
    claim_unpaced,
    log_slots,
    pacing,
    second_run,
    set_pacing,
    state_row,
    take,
)

INBOX_ZONE = "America/Sao_Paulo"  # INBOX_TIMEZONE's default


def zone_with_midnight_in(utc_epoch_s: float, seconds: float) -> str:
    """A POSIX zone whose local midnight comes `seconds` after `utc_epoch_s`."""
    offset = round(86_400 - seconds - utc_epoch_s % 86_400) % 86_400  # east of UTC
    if offset > 43_200:
        offset -= 86_400
    sign = "-" if offset >= 0 else "+"  # POSIX counts west of UTC as positive
    hours, rest = divmod(abs(offset), 3600)
    return f"CQT{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


async def seconds_to_midnight(conn: asyncpg.Connection, zone: str) -> float:
    left: float = await conn.fetchval(
        """select extract(epoch from (((now() at time zone $1)::date + 1)::timestamp
                                      at time zone $1) - now())::float8""",
        zone,
    )
    return left


async def test_campaigns_whose_days_end_never_pass_the_cap_in_one_day_of_the_inbox(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now_s = await conn.fetchval("select extract(epoch from now())::float8")
    east = await seed_campaign(conn, leads=6, timezone=zone_with_midnight_in(now_s, 1.5))
    west = await second_run(conn, east, leads=6, timezone=zone_with_midnight_in(now_s, 3.0))
    items = await claim_unpaced(rpc, 12)
    await log_slots(conn)
    runs = [str(east.run_id), str(west.run_id)]
    queue = sorted(items, key=lambda m: (runs.index(m["run_id"]), m["id"]))
    queue = [m for pair in zip(queue[:6], queue[6:], strict=True) for m in pair]  # alternating
    refusals: list[dict[str, Any]] = []

    stop_at = time.monotonic() + 4.5  # both campaigns' midnights pass meanwhile
    while queue and time.monotonic() < stop_at:
        answer = await take(rpc, queue[0], **pacing(0, cap=2))
        if answer["ok"]:
            queue.pop(0)
            continue
        refusals.append(answer)
        queue.append(queue.pop(0))  # the other campaign's message asks next
        await asyncio.sleep(0.1)

    per_day = Counter(
        r["day"]
        for r in await conn.fetch(
            "select (taken_at at time zone $1)::date as day from slot_log", INBOX_ZONE
        )
    )
    assert sum(per_day.values()) >= 2
    assert max(per_day.values()) <= 2, per_day
    assert refusals
    assert {a["reason"] for a in refusals} == {"daily_cap"}
    # The wait is for the inbox's next day, not a campaign's.
    to_midnight = await seconds_to_midnight(conn, INBOX_ZONE)
    assert abs(float(refusals[-1]["wait_s"]) - to_midnight) < 10


async def test_the_day_is_the_inbox_rows_zone_else_the_setting(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    own = await seed_campaign(conn, leads=2, timezone="Pacific/Kiritimati")
    setting = await seed_campaign(conn, leads=2, timezone="Pacific/Kiritimati")
    items = await claim_unpaced(rpc, 4)
    await set_pacing(conn, own.inbox_id, daily_cap=1, timezone="Asia/Tokyo")
    await set_pacing(conn, setting.inbox_id, daily_cap=1)
    service = {**pacing(0), "p_inbox_timezone": "Europe/Lisbon"}

    for seeded, zone in ((own, "Asia/Tokyo"), (setting, "Europe/Lisbon")):
        first, second = [m for m in items if m["run_id"] == str(seeded.run_id)]
        assert (await take(rpc, first, **service))["ok"] is True
        refused = await take(rpc, second, **service)
        assert refused["reason"] == "daily_cap"
        assert abs(float(refused["wait_s"]) - await seconds_to_midnight(conn, zone)) < 10
        state = await state_row(conn, seeded.inbox_id)
        assert state is not None
        local_today = await conn.fetchval("select (now() at time zone $1)::date", zone)
        assert (state["day_timezone"], state["sent_day"]) == (zone, local_today)

    answer = await rpc.call(
        "campaign_queue_status", {"p_run_id": None, "p_inbox_timezone": "Europe/Lisbon"}
    )
    zones = {i["inbox_id"]: (i["timezone"], i["sent_today"]) for i in answer["inboxes"]}
    assert zones == {
        str(own.inbox_id): ("Asia/Tokyo", 1),
        str(setting.inbox_id): ("Europe/Lisbon", 1),
    }


async def test_the_status_shows_the_zone_the_next_day_opens_in(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Before the inbox's first slot, and after its day ended: the zone of its next day."""
    fresh = await seed_campaign(conn, leads=1)
    moved = await seed_campaign(conn, leads=1)
    await set_pacing(conn, moved.inbox_id, timezone="Asia/Tokyo")
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, sent_day, sent_today, day_timezone)
           values ($1, date '2020-01-01', 9, 'Europe/Lisbon')""",
        moved.inbox_id,
    )

    answer = await rpc.call("campaign_queue_status", {"p_inbox_timezone": "America/Bogota"})

    zones = {i["inbox_id"]: (i["timezone"], i["sent_today"]) for i in answer["inboxes"]}
    assert zones == {
        str(fresh.inbox_id): ("America/Bogota", 0),
        str(moved.inbox_id): ("Asia/Tokyo", 0),
    }
