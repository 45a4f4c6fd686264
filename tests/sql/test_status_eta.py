"""The status's ETA counts number health's holds (docs/architecture.md, "Status"): a run's
eta_s and its inbox's next_slot_at wait out a brake, count a warm-up's lower daily caps (growing
day by day) and the hourly cap as a rate, as the claim and take_inbox_slot would hold them
(cq_inbox_hold, 040_inbox_hold.sql).

The inbox's state is put where a test needs it, as the queue's functions or the passing of
time would leave it; a run's messages are all due, so its last scheduled_at does not count.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.clock import midday_zone
from tests.sql.test_pacing import set_pacing, set_state
from tests.sql.test_status import run_of, status

ZONE = "America/Sao_Paulo"  # INBOX_TIMEZONE's default: the day the caps count
# The hourly cap's tests span two hours; the estimate starts each day's hours afresh at its
# midnight (docs/architecture.md, "Status"), so they count in a zone where it is about noon.
MIDDAY_ZONE = midday_zone()


async def now(conn: asyncpg.Connection) -> datetime:
    value: datetime = await conn.fetchval("select clock_timestamp()")
    return value


async def to_midnight_s(conn: asyncpg.Connection) -> float:
    value: float = await conn.fetchval(
        """select extract(epoch from (((now() at time zone $1)::date + 1)::timestamp
                  at time zone $1) - clock_timestamp())::float""",
        ZONE,
    )
    return value


async def paced(
    conn: asyncpg.Connection,
    seeded: SeededCampaign,
    gap_s: float,
    zone: str = ZONE,
    **overrides: Any,
) -> None:
    """The inbox's overrides (a fixed gap, and `overrides`), its next slot now."""
    await set_pacing(
        conn, seeded.inbox_id, min_gap_s=gap_s, max_gap_s=gap_s, timezone=zone, **overrides
    )
    await set_state(conn, seeded.inbox_id, next_slot_at=await now(conn), day_timezone=zone)


async def eta_and_inbox(
    rpc: PostgresRpc, run_id: uuid.UUID, **settings: Any
) -> tuple[float, dict[str, Any]]:
    answer = await status(rpc, **settings)
    [inbox] = answer["inboxes"]
    return float(run_of(answer, run_id)["eta_s"]), inbox


# --- the failure brake -----------------------------------------------------------------------


async def test_a_braked_inboxs_run_goes_after_the_brakes_end(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await paced(conn, seeded, 10)
    brake_until = await now(conn) + timedelta(hours=3)
    await set_state(conn, seeded.inbox_id, brake_until=brake_until, brake_reason="failed sends")

    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id)

    # The brake's 3 hours, then 2 gaps of 10 s (it was 20 s: the brake was not counted).
    assert eta_s == pytest.approx(3 * 3600 + 20, abs=2)
    assert datetime.fromisoformat(inbox["next_slot_at"]) == brake_until
    assert inbox["held"] == "brake"

    # Lifted (lift_inbox_brake sets it to now): the gaps alone again.
    await rpc.call("lift_inbox_brake", {"p_inbox_id": seeded.inbox_id})
    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id)
    assert eta_s == pytest.approx(20, abs=2)
    assert datetime.fromisoformat(inbox["next_slot_at"]) <= await now(conn)


async def test_an_unpaced_braked_inboxs_run_goes_after_the_brakes_end(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, daily_cap=0)
    await set_state(
        conn, seeded.inbox_id, brake_until=await now(conn) + timedelta(hours=2), brake_reason="x"
    )
    # One sent a minute after the run's start: 1 a minute, so its other 1 a minute after the
    # brake.
    await conn.execute(
        "update campaign_runs set started_at = now() - '1 minute'::interval where id = $1",
        seeded.run_id,
    )
    message_id = await conn.fetchval(
        "select id from campaign_messages where run_id = $1 limit 1", seeded.run_id
    )
    await conn.execute(
        """update campaign_messages set status = 'sent', sent_at = now(), parts_sent = 1
            where id = $1""",
        message_id,
    )

    eta_s, _ = await eta_and_inbox(rpc, seeded.run_id)

    assert eta_s == pytest.approx(2 * 3600 + 60, abs=2)


# --- warm-up ---------------------------------------------------------------------------------


async def test_a_warming_inboxs_eta_counts_todays_lower_cap_and_the_next_days_growing_ones(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=25)
    today = await conn.fetchval("select (now() at time zone $1)::date", ZONE)
    # Day 0 today: caps 10, then 19, then 28 (10 + 90 * d / 10); 8 sent today.
    await paced(conn, seeded, 10, daily_cap=100, warmup_days=10, warmup_start_cap=10)
    await set_state(conn, seeded.inbox_id, first_sent_day=today, sent_day=today, sent_today=8)

    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id)

    # 2 more today; 19 tomorrow; the last 4 the day after, 3 gaps into it. (Without the
    # warm-up: 92 left today, 24 gaps of 10 s.)
    assert eta_s == pytest.approx(await to_midnight_s(conn) + 86400 + 3 * 10, abs=2)
    assert (inbox["warmup_day"], inbox["today_cap"], inbox["daily_cap"]) == (0, 10, 100)


async def test_a_warmup_from_the_settings_starts_on_the_first_send_and_ends_at_the_daily_cap(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=40)
    await paced(conn, seeded, 10, daily_cap=20)  # nothing sent yet: day 0 is today
    settings = {"p_warmup_days": 2, "p_warmup_start_cap": 5}

    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id, **settings)

    # Caps 5 today, 12 tomorrow (5 + 15 / 2), then 20: 5 + 12 + 20 = 37, the last 3 on day 3.
    midnight = await to_midnight_s(conn)
    assert eta_s == pytest.approx(midnight + 2 * 86400 + 2 * 10, abs=2)
    assert (inbox["warmup_day"], inbox["today_cap"]) == (0, 5)

    # Today's warm-up cap reached: the inbox's next slot is the next local midnight.
    await set_state(
        conn,
        seeded.inbox_id,
        sent_day=await conn.fetchval("select (now() at time zone $1)::date", ZONE),
        sent_today=5,
    )
    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id, **settings)
    midnight = await to_midnight_s(conn)
    assert eta_s == pytest.approx(midnight + 2 * 86400 + 7 * 10, abs=2)  # 12, 20, then 8
    next_slot_in_s = (
        datetime.fromisoformat(inbox["next_slot_at"]) - await now(conn)
    ).total_seconds()
    assert next_slot_in_s == pytest.approx(midnight, abs=2)
    assert inbox["held"] == "daily_cap"


# --- the hourly cap --------------------------------------------------------------------------


async def test_an_hourly_cap_tighter_than_the_gap_paces_the_run_by_the_hour(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    await paced(conn, seeded, 20, MIDDAY_ZONE, hourly_cap=2)

    eta_s, _ = await eta_and_inbox(rpc, seeded.run_id)

    # 2 an hour, 20 s apart: 0 and 20 s, 1 h and 1 h 20 s, then the 5th at 2 h (30 minutes a
    # message; the gap alone said 80 s).
    assert eta_s == pytest.approx(2 * 3600, abs=2)


async def test_the_hours_slots_already_taken_count(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await paced(conn, seeded, 20, MIDDAY_ZONE, hourly_cap=2)
    await set_state(conn, seeded.inbox_id, hour_slots=[await now(conn) - timedelta(minutes=10)])

    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id)

    # 1 more this hour (now); the 2nd when the slot of 10 minutes ago leaves the hour (in 50
    # minutes); then each an hour after the one two before it: in 60 and 110 minutes.
    assert eta_s == pytest.approx(110 * 60, abs=2)
    assert inbox["sent_last_hour"] == 1

    # The hour full: the next slot is when its oldest leaves it.
    full = [await now(conn) - timedelta(minutes=m) for m in (40, 10)]
    await set_state(conn, seeded.inbox_id, hour_slots=full)
    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id)
    assert datetime.fromisoformat(inbox["next_slot_at"]) == full[0] + timedelta(hours=1)
    assert eta_s == pytest.approx(110 * 60, abs=2)  # in 20 and 50 minutes, then 80 and 110


async def test_an_hourly_cap_looser_than_the_gap_changes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    await paced(conn, seeded, 20, MIDDAY_ZONE, hourly_cap=2)
    assert (await eta_and_inbox(rpc, seeded.run_id))[0] == pytest.approx(7200, abs=2)

    await set_pacing(conn, seeded.inbox_id, hourly_cap=180)  # 180 * 20 s: the hour, no less
    assert (await eta_and_inbox(rpc, seeded.run_id))[0] == pytest.approx(4 * 20, abs=2)


async def test_a_warmup_of_an_inbox_that_never_sent_counts_from_today(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=40)  # no override, no pacing state yet
    settings = {
        "p_min_gap_s": 10,
        "p_max_gap_s": 10,
        "p_daily_cap": 20,
        "p_warmup_days": 2,
        "p_warmup_start_cap": 5,
    }

    eta_s, inbox = await eta_and_inbox(rpc, seeded.run_id, **settings)

    # As above: caps 5, 12, then 20; the last 3 on day 3 (its midnight in INBOX_TIMEZONE).
    assert eta_s == pytest.approx(await to_midnight_s(conn) + 2 * 86400 + 2 * 10, abs=2)
    assert (inbox["warmup_day"], inbox["today_cap"], inbox["next_slot_at"]) == (0, 5, None)
