"""Number health's hold (040_inbox_hold.sql): the warm-up, the hourly cap and the brake hold an
inbox's first parts in take_inbox_slot, the claim, campaign_queue_next_start and the late rule;
each rule once holding a message back and once letting it through.

Times an hour or days away are reached by moving the state's stamps back, as an operator's SQL
or the passing of time would leave them; a local midnight passes for real (a POSIX zone whose
midnight comes seconds after the test starts).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, hour_ago, message_row
from tests.sql.test_pacing import claim_unpaced, pacing, set_pacing, state_row, take
from tests.sql.test_pacing_day import seconds_to_midnight, zone_with_midnight_in

INBOX_ZONE = "America/Sao_Paulo"  # INBOX_TIMEZONE's default


def health(warmup_days: int = 0, start_cap: int = 20, hourly_cap: int = 0) -> dict[str, Any]:
    """The service's INBOX_WARMUP_DAYS, INBOX_WARMUP_START_CAP and INBOX_HOURLY_CAP."""
    return {
        "p_warmup_days": warmup_days,
        "p_warmup_start_cap": start_cap,
        "p_hourly_cap": hourly_cap,
    }


async def next_start(rpc: PostgresRpc, **settings: Any) -> float | None:
    value = await rpc.call("campaign_queue_next_start", {"p_one_hour_ago": hour_ago(), **settings})
    return None if value is None else float(value)


async def skip_late(rpc: PostgresRpc) -> int:
    return int(
        await rpc.call("mark_old_campaign_messages_as_skipped", {"p_one_hour_ago": hour_ago()})
    )


async def set_day_0(conn: asyncpg.Connection, inbox_id: Any, day: date) -> None:
    """The README's SQL for a number already in use: its warm-up's day 0 set back."""
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, first_sent_day) values ($1, $2)
           on conflict (inbox_id) do update set first_sent_day = excluded.first_sent_day""",
        inbox_id,
        day,
    )


async def local_today(conn: asyncpg.Connection, zone: str = INBOX_ZONE) -> date:
    today: date = await conn.fetchval("select (now() at time zone $1)::date", zone)
    return today


# --- warm-up ---------------------------------------------------------------------------------


async def test_warmup_holds_day_0_at_the_start_cap_and_the_next_local_day_allows_more(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now_s = await conn.fetchval("select extract(epoch from now())::float8")
    zone = zone_with_midnight_in(now_s, 6.0)
    seeded = await seed_campaign(conn, leads=7)
    items = await claim_unpaced(rpc, 7)
    await set_pacing(conn, seeded.inbox_id, timezone=zone, warmup_days=4, warmup_start_cap=2)
    settings = pacing(0, cap=10)  # day 0: 2; day 1: 2 + (10 - 2) * 1 / 4 = 4

    assert (await take(rpc, items[0], **settings))["ok"] is True
    assert (await take(rpc, items[1], **settings))["ok"] is True
    held = await take(rpc, items[2], **settings)
    state = await state_row(conn, seeded.inbox_id)

    assert (held["ok"], held["reason"]) == (False, "daily_cap")
    assert 0 < float(held["wait_s"]) <= 6.5  # until the inbox's local midnight
    assert state is not None
    day_0 = await local_today(conn, zone)
    assert (state["first_sent_day"], state["sent_day"], state["sent_today"]) == (day_0, day_0, 2)
    row = await message_row(conn, items[2]["id"])
    assert (row["status"], row["retry_count"], row["parts_sent"]) == ("queued", 0, 0)

    await asyncio.sleep(max(await seconds_to_midnight(conn, zone), 0) + 0.3)
    answers = [await take(rpc, item, **settings) for item in items[2:]]

    assert [a["ok"] for a in answers] == [True, True, True, True, False]
    assert answers[-1]["reason"] == "daily_cap"
    state = await state_row(conn, seeded.inbox_id)
    assert state is not None
    assert (state["first_sent_day"], state["sent_day"], state["sent_today"]) == (
        day_0,
        day_0 + timedelta(days=1),
        4,
    )


async def test_warmup_counts_days_on_which_the_service_never_ran(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    items = await claim_unpaced(rpc, 6)
    today = await local_today(conn)
    # Day 0 three days ago, one message sent then, and nothing since (the service never ran).
    await set_day_0(conn, seeded.inbox_id, today - timedelta(days=3))
    await conn.execute(
        """update campaign_inbox_pacing_state
              set sent_day = $2, sent_today = 1, day_timezone = $3,
                  last_slot_at = now() - '3 days'::interval
            where inbox_id = $1""",
        seeded.inbox_id,
        today - timedelta(days=3),
        INBOX_ZONE,
    )
    settings = {**pacing(0, cap=7), **health(warmup_days=6, start_cap=1)}  # day 3: 1 + 6*3/6

    answers = [await take(rpc, item, **settings) for item in items[:5]]

    assert [a["ok"] for a in answers] == [True, True, True, True, False]
    assert answers[-1]["reason"] == "daily_cap"


async def test_the_claim_and_next_start_wait_for_the_warmups_next_day(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    today = await local_today(conn)
    await set_day_0(conn, seeded.inbox_id, today)
    await conn.execute(
        """update campaign_inbox_pacing_state
              set sent_day = $2, sent_today = 5, day_timezone = $3, paced = true
            where inbox_id = $1""",
        seeded.inbox_id,
        today,
        INBOX_ZONE,
    )
    warming = {**pacing(0, cap=50), **health(warmup_days=10, start_cap=5)}

    assert await claim(rpc, 3, **warming) == []
    wait_s = await next_start(rpc, **warming)
    to_midnight = await seconds_to_midnight(conn, INBOX_ZONE)
    assert wait_s is not None
    assert abs(wait_s - to_midnight) < 5

    # The same inbox past its warm-up (or without one): its cap of 50 lets it through.
    done = {**pacing(0, cap=50), **health(warmup_days=0)}
    assert await next_start(rpc, **done) == 0
    assert len(await claim(rpc, 3, **done)) == 3


# --- the hourly cap --------------------------------------------------------------------------


async def test_the_hourly_cap_holds_within_a_rolling_hour(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    items = await claim_unpaced(rpc, 4)  # the fifth stays pending, for the claim
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, hourly_cap=2)
    settings = pacing(0)

    assert (await take(rpc, items[0], **settings))["ok"] is True
    assert (await take(rpc, items[1], **settings))["ok"] is True
    held = await take(rpc, items[2], **settings)
    assert (held["ok"], held["reason"]) == (False, "hourly_cap")
    assert 3590 < float(held["wait_s"]) <= 3600
    assert await claim(rpc, 5, **settings) == []
    wait_s = await next_start(rpc, **settings)
    assert wait_s is not None
    assert 3590 < wait_s <= 3600

    # 61 minutes pass for the first slot: it leaves the rolling hour, the second does not.
    await conn.execute(
        """update campaign_inbox_pacing_state
              set hour_slots[1] = hour_slots[1] - '61 minutes'::interval
            where inbox_id = $1""",
        seeded.inbox_id,
    )
    assert (await take(rpc, items[2], **settings))["ok"] is True
    held = await take(rpc, items[3], **settings)
    assert (held["ok"], held["reason"]) == (False, "hourly_cap")
    assert 3590 < float(held["wait_s"]) <= 3600  # an hour after the second slot
    state = await state_row(conn, seeded.inbox_id)
    assert state is not None
    assert len(state["hour_slots"]) == 2  # bounded by the cap

    await conn.execute(
        """update campaign_inbox_pacing_state
              set hour_slots = array(select s - '61 minutes'::interval from unnest(hour_slots) s)
            where inbox_id = $1""",
        seeded.inbox_id,
    )
    assert await next_start(rpc, **settings) == 0
    [claimed] = await claim(rpc, 5, **settings)
    assert claimed["id"] not in {i["id"] for i in items}


async def test_the_hourly_cap_setting_and_the_override(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    items = await claim_unpaced(rpc, 3)
    capped = {**pacing(0), **health(hourly_cap=1)}
    assert (await take(rpc, items[0], **capped))["ok"] is True
    assert (await take(rpc, items[1], **capped))["reason"] == "hourly_cap"
    # The inbox's own row lifts it (0: off), whatever the setting.
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, hourly_cap=0)
    assert (await take(rpc, items[1], **capped))["ok"] is True


# --- the brake -------------------------------------------------------------------------------


async def test_a_braked_inbox_waits_untouched_and_goes_again_when_the_brake_ends(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    [in_hand] = await claim_unpaced(rpc, 1)
    # The backlog is older than the late horizon: held, it is still not late.
    await conn.execute(
        "update campaign_messages set scheduled_at = now() - '3 hours'::interval "
        "where status = 'pending'"
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() + '1 hour'::interval, '5 of the last 20 sends failed (400/404)')""",
        seeded.inbox_id,
    )
    settings = pacing(0)

    held = await take(rpc, in_hand, **settings)
    assert (held["ok"], held["reason"]) == (False, "brake")
    assert 3590 < float(held["wait_s"]) <= 3600
    row = await message_row(conn, in_hand["id"])
    assert (row["status"], row["retry_count"], row["parts_sent"]) == ("queued", 0, 0)
    assert await claim(rpc, 5, **settings) == []
    wait_s = await next_start(rpc, **settings)
    assert wait_s is not None
    assert 3590 < wait_s <= 3600
    assert await skip_late(rpc) == 0
    status = await rpc.call("campaign_queue_status", {**settings, **health()})
    [inbox] = status["inboxes"]
    assert (inbox["held"], inbox["brake_reason"]) == (
        "brake",
        "5 of the last 20 sends failed (400/404)",
    )
    assert inbox["brake_until"] is not None

    # Lifted by the operator's function: the held backlog goes, and is not late.
    await rpc.call("lift_inbox_brake", {"p_inbox_id": seeded.inbox_id})
    assert (await take(rpc, in_hand, **settings))["ok"] is True
    assert await skip_late(rpc) == 0
    assert len(await claim(rpc, 5, **settings)) == 2


async def test_a_brake_that_ended_long_ago_holds_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await conn.execute("update campaign_messages set scheduled_at = now() - '3 hours'::interval")
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, brake_until, brake_reason)
           values ($1, now() - '2 hours'::interval, 'failed sends')""",
        seeded.inbox_id,
    )
    # It could send for two hours: its backlog older than the horizon is late.
    assert await skip_late(rpc) == 2


# --- the late rule: a held backlog bigger than the horizon -----------------------------------


async def test_a_daily_capped_backlog_is_not_late_until_an_hour_after_its_day_ended(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await conn.execute("update campaign_messages set scheduled_at = now() - '5 hours'::interval")
    await conn.execute(
        """insert into campaign_inbox_pacing_state
             (inbox_id, paced, last_slot_at, capped_day, capped_until)
           values ($1, true, now() - '6 hours'::interval, current_date - 1,
                   now() - '30 minutes'::interval)""",
        seeded.inbox_id,
    )
    assert await skip_late(rpc) == 0  # its capped day ended 30 minutes ago
    assert len(await claim(rpc, 5, **pacing(0, cap=10))) == 4

    other = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_messages set scheduled_at = now() - '5 hours'::interval "
        "where status = 'pending'"
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state
             (inbox_id, paced, last_slot_at, capped_day, capped_until)
           values ($1, true, now() - '6 hours'::interval, current_date - 1,
                   now() - '2 hours'::interval)""",
        other.inbox_id,
    )
    assert await skip_late(rpc) == 2  # free for two hours and not served: late


# --- bad input -------------------------------------------------------------------------------


async def test_invalid_warmup_and_hourly_overrides_are_refused_naming_the_rule(
    conn: asyncpg.Connection,
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await set_pacing(conn, seeded.inbox_id, daily_cap=100, warmup_days=7, warmup_start_cap=20)
    refused = {
        "warmup_days: null or a whole number of days from 0 to 3650": {"warmup_days": -1},
        "warmup_start_cap: null or a whole number >= 1": {"warmup_start_cap": 0},
        "warmup_start_cap: not above daily_cap": {"warmup_start_cap": 101},
        "hourly_cap: null or a whole number from 0 to 3600": {"hourly_cap": -5},
    }
    for rule, columns in refused.items():
        with pytest.raises(asyncpg.CheckViolationError) as error:
            await set_pacing(conn, seeded.inbox_id, **columns)
        assert error.value.constraint_name == rule

    row = await conn.fetchrow(
        "select daily_cap, warmup_days, warmup_start_cap, hourly_cap from campaign_inbox_pacing"
    )
    assert tuple(row) == (100, 7, 20, None)  # nothing changed
    await set_pacing(conn, seeded.inbox_id, warmup_start_cap=100, hourly_cap=3600)  # the bounds


async def pass_time(conn: asyncpg.Connection, inbox_id: Any, minutes: int) -> None:
    """`minutes` pass for the inbox's pacing state: every time it keeps moves back."""
    await conn.execute(
        """update campaign_inbox_pacing_state
              set hour_slots = array(select s - make_interval(mins => $2)
                                       from unnest(hour_slots) s),
                  last_slot_at = last_slot_at - make_interval(mins => $2),
                  next_slot_at = next_slot_at - make_interval(mins => $2),
                  capped_until = capped_until - make_interval(mins => $2)
            where inbox_id = $1""",
        inbox_id,
        minutes,
    )


async def test_an_hourly_capped_backlog_is_not_late_with_a_horizon_shorter_than_the_hour(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # SKIP_AFTER_MINUTES=30: the hourly cap holds the inbox longer than the horizon after its
    # last slot, and the backlog it holds must not be skipped as late meanwhile.
    seeded = await seed_campaign(conn, leads=5)
    items = await claim_unpaced(rpc, 2)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, hourly_cap=2)
    settings = pacing(0)
    assert (await take(rpc, items[0], **settings))["ok"] is True
    assert (await take(rpc, items[1], **settings))["ok"] is True
    await pass_time(conn, seeded.inbox_id, 50)  # held for 10 more minutes
    await conn.execute(
        "update campaign_messages set scheduled_at = now() - '45 minutes'::interval "
        "where status = 'pending'"
    )
    horizon = {"p_one_hour_ago": await conn.fetchval("select now() - '30 minutes'::interval")}

    assert await claim(rpc, 5, **settings, **horizon) == []
    wait_s = await next_start(rpc, **settings)
    assert wait_s is not None
    assert 590 < wait_s <= 600
    skipped = await rpc.call("mark_old_campaign_messages_as_skipped", horizon)
    assert skipped == 0

    await pass_time(conn, seeded.inbox_id, 11)  # the hold ended a minute ago
    assert await rpc.call("mark_old_campaign_messages_as_skipped", horizon) == 0
    assert len(await claim(rpc, 5, **settings, **horizon)) == 2  # the room the hour leaves


@pytest.mark.parametrize(
    "lowered",
    [{"warmup_days": 10, "warmup_start_cap": 2}, {"daily_cap": 2}],
    ids=["warm-up turned on", "daily cap lowered"],
)
async def test_a_backlog_held_by_a_cap_lowered_below_todays_count_is_not_late(
    conn: asyncpg.Connection, rpc: PostgresRpc, lowered: dict[str, int]
) -> None:
    # The operator's SQL (README) puts an inbox that sent 3 today under a cap of 2, an hour
    # after its last slot: held until its next local day, and its backlog not late meanwhile.
    seeded = await seed_campaign(conn, leads=4)
    items = await claim_unpaced(rpc, 3)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, daily_cap=10)
    for item in items:
        assert (await take(rpc, item, **pacing(0)))["ok"] is True
    await pass_time(conn, seeded.inbox_id, 70)
    await conn.execute(
        "update campaign_messages set scheduled_at = now() - '2 hours'::interval "
        "where status = 'pending'"
    )

    await set_pacing(conn, seeded.inbox_id, **lowered)

    assert await claim(rpc, 5, **pacing(0)) == []
    assert await skip_late(rpc) == 0
    status = await rpc.call("campaign_queue_status", pacing(0))
    [inbox] = status["inboxes"]
    assert (inbox["held"], inbox["today_cap"], inbox["sent_today"]) == ("daily_cap", 2, 3)


async def test_a_slot_that_leaves_the_hour_below_its_cap_stamps_no_hold(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    items = await claim_unpaced(rpc, 3)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0, max_gap_s=0, hourly_cap=2)
    assert (await take(rpc, items[0], **pacing(0)))["ok"] is True
    await pass_time(conn, seeded.inbox_id, 61)
    assert (await take(rpc, items[1], **pacing(0)))["ok"] is True  # one slot in the hour
    state = await state_row(conn, seeded.inbox_id)
    assert state is not None
    assert state["capped_until"] is None

    assert (await take(rpc, items[2], **pacing(0)))["ok"] is True  # the hour is full now
    state = await state_row(conn, seeded.inbox_id)
    assert state is not None
    assert state["capped_until"] == state["hour_slots"][0] + timedelta(hours=1)
