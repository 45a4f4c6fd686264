"""Pacing per inbox and fair share, in Postgres (docs/architecture.md, "Pacing"):
take_inbox_slot, the turn
the claim reserves, the claim's spread over inboxes and runs, and lateness under pacing.

Gaps are tiny (0.2-0.3 s) and real time is used, bounded; several connections where order
matters (tests/sql/waiting.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, make_stale, message_row, write_before_the_constraints
from tests.sql.messages import fence, save
from tests.sql.test_skip_late import scan_counters
from tests.sql.waiting import connection, wait_until_blocked


def pacing(min_gap_s: float, max_gap_s: float | None = None, cap: int = 0) -> dict[str, Any]:
    """The service's settings, as it hands them to the database."""
    return {
        "p_min_gap_s": min_gap_s,
        "p_max_gap_s": min_gap_s if max_gap_s is None else max_gap_s,
        "p_daily_cap": cap,
    }


async def take(rpc: PostgresRpc, item: dict[str, Any], **settings: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rpc.call("take_inbox_slot", {**fence(item), **settings})
    return result


async def state_row(conn: asyncpg.Connection, inbox_id: uuid.UUID) -> dict[str, Any] | None:
    """The inbox's pacing state, as the functions keep it."""
    row = await conn.fetchrow(
        "select * from campaign_inbox_pacing_state where inbox_id = $1", inbox_id
    )
    return None if row is None else dict(row)


async def upsert(conn: asyncpg.Connection, table: str, inbox_id: uuid.UUID, **columns: Any) -> None:
    names = ["inbox_id", *columns]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names)
    await conn.execute(
        f"""insert into {table} ({", ".join(names)})
            values ({", ".join(f"${i + 1}" for i in range(len(names)))})
            on conflict (inbox_id) do update set {updates}""",
        inbox_id,
        *columns.values(),
    )


async def set_pacing(conn: asyncpg.Connection, inbox_id: uuid.UUID, **columns: Any) -> None:
    """Upserts the inbox's override row, as an operator would."""
    await upsert(conn, "campaign_inbox_pacing", inbox_id, **columns)


async def set_state(conn: asyncpg.Connection, inbox_id: uuid.UUID, **columns: Any) -> None:
    """Puts the inbox's pacing state where a test needs it (the functions keep it)."""
    await upsert(conn, "campaign_inbox_pacing_state", inbox_id, **columns)


async def second_run(
    conn: asyncpg.Connection, on: SeededCampaign, leads: int, **seed: Any
) -> SeededCampaign:
    """Another campaign (config and run) sending through `on`'s inbox."""
    other = await seed_campaign(conn, leads=leads, workspace_id=on.workspace_id, **seed)
    await conn.execute(
        "update campaign_configs set inbox_id = $1 where id = $2", on.inbox_id, other.config_id
    )
    await conn.execute("delete from inboxes where id = $1", other.inbox_id)
    return SeededCampaign(**{**other.__dict__, "inbox_id": on.inbox_id})


async def claim_unpaced(rpc: PostgresRpc, batch: int) -> list[dict[str, Any]]:
    """Claims as an older caller does: inboxes without a row are not paced."""
    return await claim(rpc, batch)


async def take_until_ok(rpc: PostgresRpc, item: dict[str, Any], **settings: Any) -> float:
    """Waits for the slot as the service does; returns the monotonic time it was taken."""
    for _ in range(50):
        answer = await take(rpc, item, **settings)
        if answer["ok"]:
            return time.monotonic()
        assert answer["reason"] in ("gap", "in_flight"), answer
        await asyncio.sleep(max(float(answer["wait_s"]), 0.001))
    raise AssertionError("no slot")


async def log_slots(conn: asyncpg.Connection) -> None:
    """Records each slot taken, stamped by the database: gaps measured there, not by a client
    whose event loop a busy machine may delay."""
    await conn.execute(
        """create table slot_log (inbox_id uuid, taken_at timestamptz);
           create function log_slot() returns trigger language plpgsql as $$
           begin
             if new.last_slot_at is distinct from old.last_slot_at then
               insert into slot_log values (new.inbox_id, new.last_slot_at);
             end if;
             return new;
           end $$;
           create trigger log_slot after update on campaign_inbox_pacing_state
             for each row execute function log_slot();"""
    )


async def slot_gaps(conn: asyncpg.Connection) -> dict[uuid.UUID, list[float]]:
    """Per inbox, the seconds between consecutive slots."""
    rows = await conn.fetch("select inbox_id, taken_at from slot_log order by inbox_id, taken_at")
    stamps: dict[uuid.UUID, list[datetime]] = {}
    for row in rows:
        stamps.setdefault(row["inbox_id"], []).append(row["taken_at"])
    return {
        inbox: [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        for inbox, times in stamps.items()
    }


# --- take_inbox_slot: the gap ----------------------------------------------------------------


async def test_slots_are_at_least_min_gap_apart_each_gap_drawn_in_bounds(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    items = await claim_unpaced(rpc, 6)
    await log_slots(conn)
    taken, drawn = [], []
    for item in items:
        taken.append(await take_until_ok(rpc, item, **pacing(0.2, 0.3)))
        row = await state_row(conn, seeded.inbox_id)
        assert row is not None
        drawn.append((row["next_slot_at"] - row["last_slot_at"]).total_seconds())

    [gaps] = (await slot_gaps(conn)).values()
    assert len(gaps) == 5
    assert min(gaps) >= 0.2, gaps
    # As the caller saw them too (the 50 ms margin covers a reply's delay on a busy machine).
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(taken)), taken
    assert all(0.2 + 0.05 - 1e-6 <= g <= 0.3 + 0.05 + 1e-6 for g in drawn), drawn
    assert len({round(g, 4) for g in drawn}) > 1  # drawn, not fixed
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert row["sent_today"] == 6
    assert row["paced"] is True


async def test_concurrent_takes_never_both_succeed_inside_a_gap(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await seed_campaign(conn, leads=12)
    items = await claim_unpaced(rpc, 12)
    await log_slots(conn)
    successes = 0
    stop_at = time.monotonic() + 1.6

    async def sender(mine: list[dict[str, Any]]) -> None:
        nonlocal successes
        for item in mine:
            while time.monotonic() < stop_at:
                answer = await take(rpc, item, **pacing(0.25))
                if answer["ok"]:
                    successes += 1
                    break
                await asyncio.sleep(0.005)  # hammer it: no polite waiting for wait_s

    await asyncio.gather(*(sender(items[i::6]) for i in range(6)))

    [gaps] = (await slot_gaps(conn)).values()
    assert 3 <= successes == len(gaps) + 1 <= 1 + 1.6 / 0.25
    assert min(gaps) >= 0.25, gaps


async def test_a_slot_is_stamped_when_taken_not_when_its_transaction_began(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim_unpaced(rpc, 1)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=1.0, max_gap_s=1.0)
    await set_state(conn, seeded.inbox_id)
    async with connection(db_dsn) as other, connection(db_dsn) as sender:
        pid = await sender.fetchval("select pg_backend_pid()")
        async with other.transaction():  # another slot being taken holds the state a moment
            await other.execute(
                "select 1 from campaign_inbox_pacing_state where inbox_id = $1 for update",
                seeded.inbox_id,
            )
            taking = asyncio.create_task(
                sender.fetchval(
                    "select take_inbox_slot($1, $2)",
                    uuid.UUID(item["id"]),
                    uuid.UUID(item["lock_token"]),
                )
            )
            await wait_until_blocked(conn, pid)
            await asyncio.sleep(0.5)
        answer = await taking
        left = await conn.fetchval(
            """select extract(epoch from next_slot_at - clock_timestamp())
                 from campaign_inbox_pacing_state where inbox_id = $1""",
            seeded.inbox_id,
        )
    assert answer["ok"] is True
    # The next slot is a full gap after the slot was taken, not after the call began.
    assert float(left) > 0.9


# --- the daily cap -------------------------------------------------------------------------


async def test_daily_cap_counts_the_inboxs_calendar_day_and_leaves_the_message_untouched(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its day is never the server's (UTC) day for long
    seeded = await seed_campaign(conn, leads=3, timezone="Pacific/Pago_Pago")
    items = await claim_unpaced(rpc, 3)
    cap = {**pacing(0, cap=2), "p_inbox_timezone": zone}  # INBOX_TIMEZONE
    assert (await take(rpc, items[0], **cap))["ok"] is True
    assert (await take(rpc, items[1], **cap))["ok"] is True
    before = await message_row(conn, items[2]["id"])

    refused = await take(rpc, items[2], **cap)

    assert (refused["ok"], refused["reason"]) == (False, "daily_cap")
    midnight = await conn.fetchval(
        """select extract(epoch from (((now() at time zone $1)::date + 1)::timestamp
                                      at time zone $1) - now())""",
        zone,
    )
    assert abs(float(refused["wait_s"]) - float(midnight)) < 5
    after = await message_row(conn, items[2]["id"])
    renewed = ("locked_at", "updated_at")  # the slot's answer renewed the lease, no more
    assert {k: v for k, v in after.items() if k not in renewed} == {
        k: v for k, v in before.items() if k not in renewed
    }  # no retry, not released, same lease
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    local_today = await conn.fetchval("select (now() at time zone $1)::date", zone)
    assert (row["sent_day"], row["sent_today"], row["capped_day"]) == (local_today, 2, local_today)

    # The next local day: the count starts again.
    await conn.execute(
        "update campaign_inbox_pacing_state set sent_day = sent_day - 1 where inbox_id = $1",
        seeded.inbox_id,
    )
    assert (await take(rpc, items[2], **cap))["ok"] is True
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert (row["sent_day"], row["sent_today"]) == (local_today, 1)


async def test_a_capped_inbox_is_not_claimed_until_its_next_day(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    [first] = await claim(rpc, 1, **pacing(0, cap=1))
    assert (await take(rpc, first, **pacing(0, cap=1)))["ok"] is True

    assert await claim(rpc, 5, **pacing(0, cap=1)) == []
    await conn.execute(
        "update campaign_inbox_pacing_state set sent_day = sent_day - 1 where inbox_id = $1",
        seeded.inbox_id,
    )
    assert len(await claim(rpc, 5, **pacing(0, cap=1))) == 1  # room for one more today


async def test_a_claim_takes_no_more_of_an_inbox_than_its_cap_leaves(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=10)
    await set_pacing(conn, seeded.inbox_id, daily_cap=5)
    items = await claim(rpc, 2, **pacing(0))
    for item in items:
        assert (await take(rpc, item, **pacing(0)))["ok"] is True

    assert len(await claim(rpc, 10, **pacing(0))) == 3


async def test_campaigns_of_other_timezones_on_one_inbox_do_not_reset_its_count(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # 25 hours apart: their calendar dates always differ.
    east = await seed_campaign(conn, leads=3, timezone="Pacific/Kiritimati")
    west = await second_run(conn, east, leads=3, timezone="Pacific/Pago_Pago")
    items = await claim_unpaced(rpc, 6)
    by_run = {str(east.run_id): [], str(west.run_id): []}  # type: dict[str, list[dict[str, Any]]]
    for item in items:
        by_run[item["run_id"]].append(item)
    alternating = [m for pair in zip(*by_run.values(), strict=True) for m in pair]

    answers = [await take(rpc, item, **pacing(0, cap=3)) for item in alternating]

    assert [a["ok"] for a in answers] == [True] * 3 + [False] * 3
    assert {a["reason"] for a in answers[3:]} == {"daily_cap"}


# --- limits: overrides, defaults, zero ------------------------------------------------------


async def test_inbox_overrides_win_over_the_service_settings(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    items = await claim_unpaced(rpc, 3)
    await set_pacing(conn, seeded.inbox_id, min_gap_s=0.3, max_gap_s=0.3, daily_cap=2)
    off = pacing(0, 0, 0)  # the service paces nothing; the row says otherwise

    assert (await take(rpc, items[0], **off))["ok"] is True
    refused = await take(rpc, items[1], **off)
    assert (refused["ok"], refused["reason"]) == (False, "gap")
    assert 0 < float(refused["wait_s"]) <= 0.35 + 0.01
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert (row["next_slot_at"] - row["last_slot_at"]).total_seconds() == pytest.approx(
        0.35, abs=0.001
    )
    await take_until_ok(rpc, items[1], **off)
    assert (await take(rpc, items[2], **off))["reason"] == "daily_cap"

    # Null columns: the service's settings.
    await set_pacing(conn, seeded.inbox_id, min_gap_s=None, max_gap_s=None, daily_cap=None)
    await set_state(
        conn, seeded.inbox_id, sent_today=0, next_slot_at=None, last_slot_message_id=None
    )
    assert (await take(rpc, items[2], **pacing(5, 5, 10)))["ok"] is True
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert (row["next_slot_at"] - row["last_slot_at"]).total_seconds() == pytest.approx(
        5.05, abs=0.001
    )


async def test_zero_means_no_gap_and_no_cap_and_leaves_no_row(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    items = await claim_unpaced(rpc, 3)

    for item in items:  # a max gap with a zero min: still no gap (INBOX_MIN_GAP_S=0)
        assert (await take(rpc, item, **pacing(0, 60, 0)))["ok"] is True

    assert await state_row(conn, seeded.inbox_id) is None
    # So an older caller, which paces only inboxes with a row, does not start pacing it.
    assert len(await claim_unpaced(rpc, 5)) == 3


async def test_a_claim_without_pacing_parameters_paces_only_inboxes_with_a_row(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    paced = await seed_campaign(conn, leads=3)
    free = await seed_campaign(conn, leads=3)
    await set_pacing(conn, paced.inbox_id)  # every column null: the defaults, 20-60 s, 300 a day

    batch = await claim_unpaced(rpc, 10)

    runs = Counter(m["run_id"] for m in batch)
    assert runs == {str(free.run_id): 3, str(paced.run_id): 1}
    [mine] = [m for m in batch if m["run_id"] == str(paced.run_id)]
    assert mine["config"]["slot_in_s"] == 0
    assert [m["config"]["slot_in_s"] for m in batch if m is not mine] == [None] * 3
    assert (await take(rpc, mine))["ok"] is True
    row = await state_row(conn, paced.inbox_id)
    assert row is not None
    assert 20 <= (row["next_slot_at"] - row["last_slot_at"]).total_seconds() <= 60.05
    assert await state_row(conn, free.inbox_id) is None


async def test_take_inbox_slot_is_fenced_and_paces_first_parts_only(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    first, second = await claim_unpaced(rpc, 2)

    lost = await take(rpc, {**first, "lock_token": str(uuid.uuid4())}, **pacing(30))
    assert (lost["ok"], lost["reason"]) == (False, "lock_lost")
    assert (await take(rpc, first, **pacing(30)))["ok"] is True
    await conn.execute("update campaign_messages set parts_sent = 1 where id = $1", second["id"])
    assert (await take(rpc, second, **pacing(30)))["ok"] is True  # a resumed message goes on
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert row["sent_today"] == 1


# --- the turn -------------------------------------------------------------------------------


async def test_concurrent_claims_never_pick_two_messages_of_one_gapped_inbox(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    gapped = [await seed_campaign(conn, leads=10) for _ in range(3)]
    await set_pacing(conn, gapped[0].inbox_id, min_gap_s=1)  # one with a row, two without

    batches = await asyncio.gather(*(claim(rpc, 5, **pacing(1)) for _ in range(8)))

    claimed = [m for batch in batches for m in batch]
    assert Counter(m["config"]["inbox_id"] for m in claimed) == {str(s.inbox_id): 1 for s in gapped}
    turns = await conn.fetch("select turn_message_id from campaign_inbox_pacing_state")
    assert sorted(str(r["turn_message_id"]) for r in turns) == sorted(m["id"] for m in claimed)


async def test_a_claim_racing_a_slot_reserves_no_turn_a_gap_away(
    conn: asyncpg.Connection, rpc: PostgresRpc, db_dsn: str
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    [earlier] = await claim_unpaced(rpc, 1)  # claimed before pacing: no row yet
    async with connection(db_dsn) as sender, connection(db_dsn) as claimer:
        pid = await claimer.fetchval("select pg_backend_pid()")
        async with sender.transaction():
            slot = await sender.fetchval(
                "select take_inbox_slot($1, $2, 30, 30, 0)",
                uuid.UUID(earlier["id"]),
                uuid.UUID(earlier["lock_token"]),
            )
            assert slot["ok"] is True
            # The claim read the inbox as free, and waits to create its row.
            claiming = asyncio.create_task(
                claimer.fetchval(
                    """select get_and_lock_campaign_messages(p_batch_size => 5,
                         p_min_gap_s => 30, p_max_gap_s => 30, p_daily_cap => 0,
                         p_lookahead_s => 3)"""
                )
            )
            await wait_until_blocked(conn, pid)
        batch = await claiming

    assert batch == []  # its slot is 30 s away: nothing to reserve
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert row["turn_message_id"] is None


async def end_turn(
    rpc: PostgresRpc, conn: asyncpg.Connection, how: str, item: dict[str, Any]
) -> None:
    if how == "released":
        await rpc.call(
            "release_campaign_messages",
            {"p_messages": [{"id": item["id"], "lock_token": item["lock_token"]}]},
        )
    elif how == "failed":
        await rpc.call("fail_campaign_message", {**fence(item), "p_error": "LLM timeout"})
    elif how == "sent":
        assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
        assert (await save(rpc, item, ["Oi!"]))["ok"] is True
        assert (await take(rpc, item, **pacing(0.2)))["ok"] is True
        await rpc.call(
            "mark_message_part_sent",
            {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0"},
        )
        assert (await message_row(conn, item["id"]))["status"] == "sent"
    else:  # the worker died: its lease is older than the lock timeout
        await make_stale(conn, item["id"], minutes=11)


@pytest.mark.parametrize("how", ["released", "failed", "sent", "lease_expired"])
async def test_the_turn_frees_when_its_message_ends_or_its_lease_expires(
    conn: asyncpg.Connection, rpc: PostgresRpc, how: str
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    other = await second_run(conn, seeded, leads=2)
    gap = {**pacing(0.2), "p_lookahead_s": 1.0}
    # Claims of the other run only, so the stale-lease step does not take the turn's message.
    only = {"p_run_id": other.run_id} if how == "lease_expired" else {}
    [turn] = await claim(rpc, 5, **gap)
    if how == "lease_expired" and turn["run_id"] == str(other.run_id):
        seeded, other, only = other, seeded, {"p_run_id": seeded.run_id}
    assert await claim(rpc, 5, **gap, **only) == []

    await end_turn(rpc, conn, how, turn)

    [after] = await claim(rpc, 5, **gap, **only)
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    assert str(row["turn_message_id"]) == after["id"]


# --- fair share and round-robin ---------------------------------------------------------------


async def test_a_small_run_is_not_held_behind_a_large_one_on_its_inbox(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    old = datetime.now(UTC) - timedelta(minutes=20)
    large = await seed_campaign(
        conn, leads=200, first_scheduled_at=old, spacing=timedelta(seconds=1)
    )
    small = await second_run(conn, large, leads=10)
    order = []
    for _ in range(8):  # gapped: one message a claim; each one ends before the next claim
        [item] = await claim(rpc, 5, **pacing(30), p_lookahead_s=3)
        order.append("small" if item["run_id"] == str(small.run_id) else "large")
        await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "test"})
    assert order in (["large", "small"] * 4, ["small", "large"] * 4)

    # Without a gap a batch interleaves the two runs.
    batch = await claim(rpc, 6, **pacing(0))
    assert Counter(m["run_id"] for m in batch) == {str(large.run_id): 3, str(small.run_id): 3}


async def test_a_batch_spreads_over_eligible_inboxes_before_any_gets_a_second(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inboxes = [await seed_campaign(conn, leads=4) for _ in range(3)]

    batch = await claim(rpc, 5, **pacing(0))

    counts = Counter(m["config"]["inbox_id"] for m in batch)
    assert len(batch) == 5
    assert set(counts) == {str(s.inbox_id) for s in inboxes}
    assert sorted(counts.values()) == [1, 2, 2]


async def test_inboxes_take_turns_at_the_head_of_the_batch(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inboxes = [await seed_campaign(conn, leads=5) for _ in range(4)]  # no rows: nobody paces them

    first = await claim(rpc, 2, **pacing(0))
    second = await claim(rpc, 2, **pacing(0))

    served = [m["config"]["inbox_id"] for m in first + second]
    assert sorted(served) == sorted(str(s.inbox_id) for s in inboxes)


async def test_gapped_inboxes_get_one_each_and_only_gapless_ones_fill_the_batch(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    gapped = [await seed_campaign(conn, leads=4) for _ in range(2)]
    gapless = await seed_campaign(conn, leads=4)
    # Its gap turned off while a slot drawn earlier is still ahead: no gap means no wait.
    await set_pacing(conn, gapless.inbox_id, min_gap_s=0, daily_cap=0)
    await set_state(conn, gapless.inbox_id, next_slot_at=datetime.now(UTC) + timedelta(seconds=30))

    batch = await claim(rpc, 5, **pacing(30))

    counts = Counter(m["config"]["inbox_id"] for m in batch)
    assert {m["config"]["slot_in_s"] for m in batch} == {0}
    assert counts == {
        str(gapped[0].inbox_id): 1,
        str(gapped[1].inbox_id): 1,
        str(gapless.inbox_id): 3,
    }


async def test_a_lone_gapless_inbox_fills_the_whole_batch(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(
        conn,
        leads=8,
        first_scheduled_at=datetime.now(UTC) - timedelta(minutes=10),
        spacing=timedelta(seconds=1),
    )
    batch = await claim(rpc, 5, **pacing(0, cap=100))
    assert [m["id"] for m in batch] == [str(i) for i in seeded.message_ids[:5]]


# --- lookahead and lateness -------------------------------------------------------------------


async def test_an_inbox_whose_slot_opens_within_the_lookahead_is_claimed_with_its_wait(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await set_pacing(conn, seeded.inbox_id)
    await set_state(
        conn, seeded.inbox_id, paced=True, next_slot_at=datetime.now(UTC) + timedelta(seconds=2)
    )

    assert await claim(rpc, 5, **pacing(30), p_lookahead_s=0) == []
    [item] = await claim(rpc, 5, **pacing(30), p_lookahead_s=3)
    assert 1.0 < item["config"]["slot_in_s"] <= 2.0


async def test_a_served_paced_backlog_is_not_late_but_a_neglected_one_is(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    served = await seed_campaign(conn, leads=3, first_scheduled_at=long_ago)
    neglected = await seed_campaign(conn, leads=3, first_scheduled_at=long_ago)
    never = await seed_campaign(conn, leads=3, first_scheduled_at=long_ago)
    now = datetime.now(UTC)
    await set_state(conn, served.inbox_id, paced=True, last_slot_at=now - timedelta(minutes=1))
    await set_state(conn, neglected.inbox_id, paced=True, last_slot_at=now - timedelta(hours=2))
    # The claim's horizon: only the served inbox's old messages are claimable.
    batch = await claim(rpc, 10, **pacing(0.2))
    assert [m["run_id"] for m in batch] == [str(served.run_id)]

    skipped = await rpc.call(
        "mark_old_campaign_messages_as_skipped",
        {"p_one_hour_ago": datetime.now(UTC) - timedelta(hours=1)},
    )

    assert skipped == 6
    statuses = await conn.fetch(
        "select run_id, status, count(*) from campaign_messages group by 1, 2 order by 1, 2"
    )
    by_run = {(r["run_id"], r["status"]): r["count"] for r in statuses}
    assert by_run[(served.run_id, "pending")] == 2
    assert by_run[(neglected.run_id, "skipped")] == 3
    assert by_run[(never.run_id, "skipped")] == 3


async def test_the_claim_never_walks_through_late_rows(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # A run with a late backlog (older than the horizon, its inbox not served lately) and a
    # few due messages; history around it, so the planner has a table worth indexing.
    now = datetime.now(UTC)
    seeded = await seed_campaign(conn, leads=5)
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at, status)
           select $1, gen_random_uuid(), '+5511900000000', $2::timestamptz - g * interval '1 s',
                  case when g <= 2000 then 'pending' else 'sent' end
             from generate_series(1, 20000) g""",
        seeded.run_id,
        now - timedelta(hours=3),
    )
    await conn.execute("analyze")

    async with conn.transaction():  # the counters of this transaction only (see test_skip_late)
        before = await scan_counters(conn)
        batch = await conn.fetchval(
            """select get_and_lock_campaign_messages(p_batch_size => 5, p_one_hour_ago => $1,
                 p_min_gap_s => 0, p_max_gap_s => 0, p_daily_cap => 0)""",
            now - timedelta(hours=1),
        )
        after = await scan_counters(conn)

    assert sorted(m["id"] for m in batch) == sorted(str(i) for i in seeded.message_ids)
    assert after["seq_scan"] == before["seq_scan"]
    assert after["idx_tup_fetch"] - before["idx_tup_fetch"] < 100  # not the 2,000 late rows


# --- odd data ---------------------------------------------------------------------------------


async def test_the_claim_and_the_slot_never_error_on_a_null_inbox_or_an_unknown_timezone(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await conn.execute("alter table campaign_configs alter column inbox_id drop not null")
    no_inbox = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_configs set inbox_id = null where id = $1", no_inbox.config_id
    )
    mars = await seed_campaign(conn, leads=3, timezone="Mars/Olympus_Mons")
    settings = {**pacing(0, cap=1), "p_lookahead_s": 3}

    batch = await claim(rpc, 10, **settings)  # the cap leaves room for one of mars's
    assert Counter(m["run_id"] for m in batch) == {str(no_inbox.run_id): 2, str(mars.run_id): 1}
    batch += await claim_unpaced(rpc, 10)
    first, second = [m for m in batch if m["run_id"] == str(mars.run_id)][:2]
    assert (await take(rpc, first, **pacing(0, cap=1)))["ok"] is True
    capped = await take(rpc, second, **pacing(0, cap=1))
    assert (capped["ok"], capped["reason"]) == (False, "daily_cap")
    assert 0 < float(capped["wait_s"]) <= 86_400 + 3_600
    for item in batch:
        if item["run_id"] == str(no_inbox.run_id):
            assert (await take(rpc, item, **pacing(30, cap=1)))["ok"] is True
    await rpc.call(
        "release_campaign_messages",
        {"p_messages": [{"id": m["id"], "lock_token": m["lock_token"]} for m in batch]},
    )

    again = await claim(rpc, 10, **settings)
    assert Counter(m["run_id"] for m in again) == {str(no_inbox.run_id): 2}


@pytest.mark.parametrize(
    ("column", "value"), [("min_gap_s", float("inf")), ("max_gap_s", float("nan"))]
)
async def test_odd_numbers_never_make_the_claim_or_the_slot_error(
    conn: asyncpg.Connection, rpc: PostgresRpc, column: str, value: float
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await write_before_the_constraints(conn, seeded.inbox_id, **{column: value})
    [item] = await claim(rpc, 5, **pacing(0.2), p_lookahead_s=float("nan"))
    assert (await take(rpc, item, p_min_gap_s=float("nan"), p_max_gap_s=float("inf")))["ok"]
    # An infinite lookahead is bounded (an hour), not an error; whether the other message
    # is claimed then depends on the gap just drawn (up to 86,400 s with an infinite max).
    again = await claim(rpc, 5, p_lookahead_s=float("inf"))
    assert len(again) <= 1


async def test_claims_slots_and_endings_at_once_never_deadlock_nor_break_a_gap(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    for _ in range(3):
        await seed_campaign(conn, leads=30)
    await log_slots(conn)
    settings = pacing(0.15, 0.2)
    taken: dict[str, list[float]] = {}
    stop_at = time.monotonic() + 2.5

    async def worker(k: int) -> None:
        while time.monotonic() < stop_at:
            for item in await claim(rpc, 3, **settings, p_lookahead_s=0.5):
                answer = await take(rpc, item, **settings)
                lease = [{"id": item["id"], "lock_token": item["lock_token"]}]
                if answer["ok"]:
                    taken.setdefault(item["config"]["inbox_id"], []).append(time.monotonic())
                    await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "sent"})
                elif k % 2:
                    await rpc.call("release_campaign_messages", {"p_messages": lease})
                else:
                    await rpc.call("fail_campaign_message", {**fence(item), "p_error": "x"})
            await asyncio.sleep(0.01)

    await asyncio.gather(*(worker(k) for k in range(6)))

    assert len(taken) == 3
    gaps = await slot_gaps(conn)
    assert len(gaps) == 3
    for inbox, times in taken.items():
        assert len(times) >= 3
        assert len(gaps[uuid.UUID(inbox)]) == len(times) - 1
        assert min(gaps[uuid.UUID(inbox)]) >= 0.15


async def test_a_huge_batch_size_never_makes_the_claim_error(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    inboxes = [await seed_campaign(conn, leads=3) for _ in range(2)]
    batch = await claim(rpc, 2_147_483_647, **pacing(0))
    assert len(batch) == 6
    assert {m["config"]["inbox_id"] for m in batch} == {str(s.inbox_id) for s in inboxes}


# --- a first part delivered late -----------------------------------------------------------


async def sending(rpc: PostgresRpc, item: dict[str, Any]) -> None:
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"]
    assert (await save(rpc, item))["ok"]


async def first_part_sent(rpc: PostgresRpc, item: dict[str, Any]) -> None:
    answer = await rpc.call(
        "mark_message_part_sent",
        {**fence(item), "p_part_index": 0, "p_provider_message_id": "wamid.0"},
    )
    assert answer["ok"]


async def first_slotted(
    conn: asyncpg.Connection, rpc: PostgresRpc, min_gap_s: float
) -> tuple[SeededCampaign, dict[str, Any], dict[str, Any]]:
    """Two messages of one inbox; the first, its text saved, has taken the inbox's slot and
    is about to send its first part."""
    seeded = await seed_campaign(conn, leads=2)
    first, second = await claim_unpaced(rpc, 2)
    await sending(rpc, first)
    assert (await take(rpc, first, **pacing(min_gap_s)))["ok"]
    return seeded, first, second


async def slot_taken_by(conn: asyncpg.Connection, item: dict[str, Any]) -> datetime:
    slot: datetime = await conn.fetchval(
        "select last_slot_at from campaign_inbox_pacing_state where last_slot_message_id = $1",
        uuid.UUID(item["id"]),
    )
    return slot


async def test_the_next_first_part_waits_for_a_late_one_then_keeps_min_gap_from_it(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """A send that retries a 5xx delivers its first part after its slot: the inbox's next
    first part waits for that delivery, then goes min_gap after it, not a gap after the
    slot (which would put the two closer than min_gap at the endpoint)."""
    _, first, second = await first_slotted(conn, rpc, 0.3)
    await asyncio.sleep(0.5)  # the slot's gap is over; the first part is still being retried

    waiting = await take(rpc, second, **pacing(0.3))
    assert (waiting["ok"], waiting["reason"]) == (False, "in_flight")

    await first_part_sent(rpc, first)
    delivered = await message_row(conn, first["id"])
    await take_until_ok(rpc, second, **pacing(0.3))
    slot = await slot_taken_by(conn, second)
    assert slot - delivered["first_part_at"] >= timedelta(seconds=0.3)


async def test_a_first_part_delivered_in_time_adds_no_wait(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, first, second = await first_slotted(conn, rpc, 0.3)
    await first_part_sent(rpc, first)
    row = await state_row(conn, seeded.inbox_id)
    assert row is not None
    await asyncio.sleep(max((row["next_slot_at"] - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    assert (await take(rpc, second, **pacing(0.3)))["ok"]


async def test_a_live_send_holds_its_inbox_however_long_and_a_dead_one_only_its_lease(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """A first part retried for minutes (a 429's Retry-After) is waited for while its worker
    renews the lease; once the lease has expired (the worker died), that worker can send no
    more, and the inbox goes on."""
    seeded, first, second = await first_slotted(conn, rpc, 0.3)
    await conn.execute(
        """update campaign_inbox_pacing_state
              set last_slot_at = last_slot_at - interval '5 min',
                  next_slot_at = next_slot_at - interval '5 min'
            where inbox_id = $1""",
        seeded.inbox_id,
    )
    live = await take(rpc, second, **pacing(0.3), p_lock_timeout_s=60)
    assert (live["ok"], live["reason"]) == (False, "in_flight")  # renewed just now: alive

    await make_stale(conn, first["id"], 2)  # not renewed for 2 minutes: a 60 s lease is over
    assert (await take(rpc, second, **pacing(0.3), p_lock_timeout_s=60))["ok"]


async def test_a_first_part_that_timed_out_keeps_the_gap_from_its_end(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    """A send that timed out may have delivered: the failure is taken as the delivery."""
    _, first, second = await first_slotted(conn, rpc, 0.3)
    await asyncio.sleep(0.4)  # the slot's gap is over
    retry = {"p_error": "send: timed out (ReadTimeout)", "p_retryable": True}
    assert (await rpc.call("fail_campaign_message", {**fence(first), **retry}))["ok"]
    # When the failure was recorded (its transaction's time), not when its answer got here:
    # the answer's way back is no part of the gap (it made this test flaky on a busy machine).
    ended = await conn.fetchval(
        "select updated_at from campaign_messages where id = $1", uuid.UUID(first["id"])
    )

    waiting = await take(rpc, second, **pacing(0.3))
    assert (waiting["ok"], waiting["reason"]) == (False, "gap")
    await take_until_ok(rpc, second, **pacing(0.3))
    slot = await slot_taken_by(conn, second)
    assert slot - ended >= timedelta(seconds=0.3)


async def test_a_last_slot_whose_message_ended_unsent_holds_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    _, first, second = await first_slotted(conn, rpc, 0.2)
    failed = await rpc.call(
        "fail_campaign_message", {**fence(first), "p_error": "send: HTTP 400", "p_retryable": False}
    )
    assert failed["status"] == "failed"
    await take_until_ok(rpc, second, **pacing(0.2))  # no longer than a gap: nothing holds it
