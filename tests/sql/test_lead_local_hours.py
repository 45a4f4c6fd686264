"""Lead-local hours in SQL (049_lead_local_hours.sql): with p_lead_local_window the claim and
the next start no longer close a run by its campaign-zone window, the release keeps the lead's
zone, and the skip counts each message's lateness only in its lead's window.

Windows are times of day in UTC put around the test's own clock, so each test holds at any
hour. The leads' zone is Asia/Tokyo (UTC+9, no daylight saving time): a window open now in
UTC [now - 4 h, now + 1 h) was last open in Tokyo from now - 13 h to now - 8 h.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import asyncpg

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, message_row

SKIP_AFTER = timedelta(minutes=30)
TOKYO = "Asia/Tokyo"


def time_of_day(at: datetime) -> time:
    return at.astimezone(UTC).time().replace(microsecond=0)


async def skip_late(rpc: PostgresRpc, *, lead_local: bool) -> int:
    args = {
        "p_one_hour_ago": datetime.now(UTC) - SKIP_AFTER,
        "p_limit": 5000,
        "p_lead_local_window": lead_local,
    }
    return int(await rpc.call("mark_old_campaign_messages_as_skipped", args))


async def open_in_utc_closed_in_tokyo(conn: asyncpg.Connection, leads: int) -> SeededCampaign:
    now = datetime.now(UTC)
    return await seed_campaign(
        conn,
        leads=leads,
        start_time=time_of_day(now - timedelta(hours=4)),
        end_time=time_of_day(now + timedelta(hours=1)),
        timezone="UTC",
        first_scheduled_at=now - timedelta(hours=3),
    )


async def set_zone(conn: asyncpg.Connection, ids: list[uuid.UUID], zone: str | None) -> None:
    await conn.execute(
        "update campaign_messages set lead_timezone = $2 where id = any($1::uuid[])", ids, zone
    )


async def pending(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> int:
    return int(
        await conn.fetchval(
            """select count(*) from campaign_messages
                where id = any($1::uuid[]) and status = 'pending'""",
            ids,
        )
    )


async def test_a_backlog_held_across_its_leads_closed_window_is_not_late(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # Due 3 h ago; its leads' window (Tokyo) has been closed for the last 8 h: no open time.
    seeded = await open_in_utc_closed_in_tokyo(conn, leads=300)
    await set_zone(conn, seeded.message_ids, TOKYO)

    assert await skip_late(rpc, lead_local=True) == 0
    assert await pending(conn, seeded.message_ids) == 300

    # The campaign's own window (UTC) was open all along: read in it, the backlog is late.
    assert await skip_late(rpc, lead_local=False) == 300


async def test_in_leads_zones_a_message_whose_window_was_open_is_late(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await open_in_utc_closed_in_tokyo(conn, leads=6)
    tokyo, utc, unseen = (
        seeded.message_ids[:2],
        seeded.message_ids[2:4],
        seeded.message_ids[4:],
    )
    await set_zone(conn, tokyo, TOKYO)
    await set_zone(conn, utc, "UTC")  # open for the last 4 h

    # Leads in an open window, and those the service has not seen yet (the campaign's zone),
    # were due 3 h in an open window: late. The Tokyo leads' window was closed: not late.
    assert await skip_late(rpc, lead_local=True) == 4
    assert await pending(conn, tokyo) == 2
    assert await pending(conn, utc + unseen) == 0
    row = await message_row(conn, utc[0])
    assert row["error_message"].startswith("skipped: scheduled before the horizon")


async def test_a_paced_inbox_holding_the_backlog_keeps_it_in_leads_zones_too(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await open_in_utc_closed_in_tokyo(conn, leads=4)
    await set_zone(conn, seeded.message_ids, "UTC")
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at, paced)
           values ($1, now() + interval '40 seconds', now() - interval '5 seconds', true)""",
        seeded.inbox_id,
    )
    assert await skip_late(rpc, lead_local=True) == 0
    assert await pending(conn, seeded.message_ids) == 4


async def closed_campaign_window(conn: asyncpg.Connection) -> SeededCampaign:
    now = datetime.now(UTC)
    return await seed_campaign(
        conn,
        leads=2,
        start_time=time_of_day(now - timedelta(hours=2)),
        end_time=time_of_day(now - timedelta(hours=1)),
        timezone="UTC",
    )


async def test_the_claim_takes_a_run_whose_campaign_window_is_closed_only_with_lead_hours(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await closed_campaign_window(conn)

    assert await claim(rpc) == []
    assert await claim(rpc, p_lead_local_window=False) == []
    claimed = await claim(rpc, p_lead_local_window=True)
    assert sorted(uuid.UUID(c["id"]) for c in claimed) == sorted(seeded.message_ids)


async def test_the_claim_with_lead_hours_takes_a_message_due_before_the_plain_horizon(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """Such a message may be on time in its lead's zone (the skip judges it there): the claim
    does not leave it waiting forever behind the plain horizon."""
    seeded = await open_in_utc_closed_in_tokyo(conn, leads=1)
    await set_zone(conn, seeded.message_ids, TOKYO)
    horizon = datetime.now(UTC) - SKIP_AFTER

    assert await claim(rpc, p_one_hour_ago=horizon) == []
    claimed = await claim(rpc, p_one_hour_ago=horizon, p_lead_local_window=True)
    assert [uuid.UUID(c["id"]) for c in claimed] == seeded.message_ids


async def test_the_next_start_ignores_the_campaign_window_only_with_lead_hours(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await closed_campaign_window(conn)
    args = {"p_one_hour_ago": datetime.now(UTC) - timedelta(hours=1), "p_lookahead_s": 3.0}

    later = await rpc.call("campaign_queue_next_start", args)
    assert later is not None
    assert float(later) > 3600 * 20  # the window opens in ~22 h
    now = await rpc.call("campaign_queue_next_start", {**args, "p_lead_local_window": True})
    assert now == 0


async def test_the_release_keeps_the_leads_zone_and_moves_the_message_to_its_opening(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    first, second = await claim(rpc, p_lead_local_window=True)
    opening = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)

    released = await rpc.call(
        "release_campaign_messages",
        {
            "p_messages": [
                {"id": first["id"], "lock_token": first["lock_token"], "lead_timezone": TOKYO},
                {"id": second["id"], "lock_token": second["lock_token"], "lead_timezone": 9},
            ],
            "p_not_before": opening,
        },
    )

    assert released == 2
    rows = {str(m): await message_row(conn, m) for m in seeded.message_ids}
    held = rows[first["id"]]
    assert (held["status"], held["retry_count"], held["lead_timezone"]) == ("pending", 0, TOKYO)
    assert held["scheduled_at"] == opening
    assert rows[second["id"]]["lead_timezone"] is None  # not a zone: nothing kept

    # A later release without a zone (out of time budget) keeps the one kept before.
    again = await claim(rpc, p_lead_local_window=True, p_one_hour_ago=None)
    assert again == []  # not due before its opening
    await conn.execute(
        "update campaign_messages set scheduled_at = now() - interval '1 minute' where id = $1",
        uuid.UUID(first["id"]),
    )
    (retaken,) = await claim(rpc, p_lead_local_window=True)
    await rpc.call(
        "release_campaign_messages",
        {"p_messages": [{"id": retaken["id"], "lock_token": retaken["lock_token"]}]},
    )
    assert (await message_row(conn, retaken["id"]))["lead_timezone"] == TOKYO
