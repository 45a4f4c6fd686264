"""Pacing end to end (docs/architecture.md, "Pacing"): three services on one database,
overlapping calls.

Four inboxes at a 0.3-0.5 s gap: a plain one, one that splits its messages, one with a daily
cap of 3 (its campaign_inbox_pacing row), and one shared by a large run created first and a
small run created after. Each service is called every 0.6 s without waiting for its previous
call, the services 0.2 s apart, until every uncapped message is sent and the capped inbox
reached its cap. What is checked is correctness, read at the send stub and in the database:
the gap between two first parts of one inbox, the cap, what the cap holds back, parts sent
once, and fair share on the shared inbox. No throughput or timing beyond the gap itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from itertools import pairwise

import asyncpg
import httpx

from app.main import create_app
from app.sandbox.seed import SeededCampaign, seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Fault, Latency, RequestInfo
from tests.processing.invariants import assert_no_lease_left
from tests.stubs import CRON_SECRET, SettingsFactory, Stubs

MIN_GAP_S, MAX_GAP_S = 0.3, 0.5
CAP = 3
SERVICES = 3
PERIOD_S = 0.6  # each service is called this often, whether its last call ended or not
DRAIN_BOUND_S = 30.0  # a bound on the whole drive, not a timing assertion


async def drive(urls: list[str], done: asyncpg.Connection, capped_run: uuid.UUID) -> Counter[int]:
    """Overlapping calls until every uncapped message is sent and the capped run hit its cap."""
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {CRON_SECRET}"}
    async with httpx.AsyncClient(timeout=30) as http:

        async def call(url: str) -> None:
            response = await http.post(url + "/process-queue", json={}, headers=headers)
            statuses[response.status_code] += 1

        calls: list[asyncio.Task[None]] = []
        deadline = time.monotonic() + DRAIN_BOUND_S
        tick = 0
        while time.monotonic() < deadline:
            calls.append(asyncio.create_task(call(urls[tick % len(urls)])))
            tick += 1
            await asyncio.sleep(PERIOD_S / len(urls))
            if await done.fetchval(
                """select count(*) filter (where run_id <> $1 and status <> 'sent') = 0
                      and count(*) filter (where run_id = $1 and status = 'sent') >= $2
                      and count(*) filter (where status in ('queued', 'generating', 'sending'))
                          = 0
                     from campaign_messages""",
                capped_run,
                CAP,
            ):
                break
        await asyncio.gather(*calls)
    return statuses


async def test_pacing_gap_cap_and_fair_share_hold_across_services_and_overlapping_calls(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    stubs.openrouter.latency = Latency(median_ms=40, sigma=0.5, seed=11)
    stubs.send.latency = Latency(fixed_ms=5)
    plain = await seed_campaign(conn, leads=5)
    split = await seed_campaign(
        conn,
        leads=4,
        split_messages=True,
        min_chars_to_split=120,
        delay_between_messages_ms=50,  # parts of one message: the product's delay, not paced
    )
    capped = await seed_campaign(conn, leads=6)
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id, daily_cap) values ($1, $2)",
        capped.inbox_id,
        CAP,
    )
    large = await seed_campaign(conn, leads=8)
    small = await seed_campaign(conn, leads=3, inbox_id=large.inbox_id)
    assert small.inbox_id == large.inbox_id
    seeded: list[SeededCampaign] = [plain, split, capped, large, small]

    settings = make_settings(
        database_url=db_dsn,
        inbox_min_gap_s=MIN_GAP_S,
        inbox_max_gap_s=MAX_GAP_S,
        inbox_daily_cap=0,
        max_concurrency=10,
        batch_size=4,
        time_budget_s=1.5,
    )
    done = await asyncpg.connect(db_dsn)
    try:
        with ExitStack() as services:
            urls = [
                services.enter_context(LoopbackServer(create_app(settings), lifespan=True)).url
                for _ in range(SERVICES)
            ]
            statuses = await drive(urls, done, capped.run_id)
    finally:
        await done.close()
    assert set(statuses) == {200}, statuses

    # First parts at the send stub, by the conversation's inbox, in the order they arrived.
    inbox_of = {
        str(r["id"]): r["inbox_id"]
        for r in await conn.fetch("select id, inbox_id from conversations")
    }
    run_of = {
        r["id"]: r["run_id"] for r in await conn.fetch("select id, run_id from campaign_messages")
    }
    firsts: dict[uuid.UUID, list[tuple[float, uuid.UUID]]] = defaultdict(list)
    parts_per_message: Counter[uuid.UUID] = Counter()
    for delivery in stubs.send.deliveries:
        message, _, index = delivery["idempotency_key"].rpartition(":")
        parts_per_message[uuid.UUID(message)] += 1
        if index == "0":
            firsts[inbox_of[delivery["conversation_id"]]].append(
                (float(delivery["at"]), uuid.UUID(message))
            )

    # The gap: never two first parts of one inbox less than min_gap apart, whichever
    # service sent them.
    for inbox_id, sent in firsts.items():
        sent.sort()
        too_close = [round(b[0] - a[0], 3) for a, b in pairwise(sent) if b[0] - a[0] < MIN_GAP_S]
        assert too_close == [], f"inbox {inbox_id}: first parts {too_close} s apart"

    # Every uncapped message sent, each part delivered exactly once.
    assert stubs.send.duplicate_keys == 0
    keys = Counter(stubs.send.delivered_keys())
    assert all(n == 1 for n in keys.values())
    rows = await conn.fetch(
        """select id, run_id, status, retry_count, parts_sent, error_message, lock_token,
                  sent_at, coalesce(jsonb_array_length(message_parts), 0) as parts
             from campaign_messages"""
    )
    for row in rows:
        if row["run_id"] != capped.run_id:
            assert row["status"] == "sent", dict(row)
        if row["status"] == "sent":
            assert parts_per_message[row["id"]] == row["parts"] == row["parts_sent"], dict(row)
    assert any(row["parts"] > 1 for row in rows if row["run_id"] == split.run_id)

    # The cap: never exceeded; the messages past it wait pending, untouched.
    assert len(firsts[capped.inbox_id]) == CAP
    held = [row for row in rows if row["run_id"] == capped.run_id and row["status"] != "sent"]
    assert len(held) == len(capped.message_ids) - CAP
    for row in held:
        assert row["status"] == "pending", dict(row)
        assert row["retry_count"] == 0, dict(row)
        assert row["parts_sent"] == 0, dict(row)
        assert row["error_message"] is None, dict(row)
        assert row["lock_token"] is None, dict(row)
    sent_today = await conn.fetchval(
        "select sent_today from campaign_inbox_pacing_state where inbox_id = $1",
        capped.inbox_id,
    )
    assert sent_today == CAP

    # Fair share: the small run, created after the large one on the same inbox, is not held
    # behind it: all its messages go out before the large run's last.
    order = "".join("S" if run_of[m] == small.run_id else "L" for _, m in firsts[large.inbox_id])
    assert order.count("S") == len(small.message_ids), order
    assert order.count("L") == len(large.message_ids), order
    assert order.rfind("S") < order.rfind("L"), order

    assert sum(len(s) for s in firsts.values()) == sum(len(c.message_ids) for c in seeded) - (
        len(capped.message_ids) - CAP
    )
    await assert_no_lease_left(conn)


async def test_first_parts_keep_min_gap_at_the_endpoint_when_sends_are_retried(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    """Every other message's first part fails once with a 5xx: its retry delivers it later
    than its slot, about when the next message's slot opens. The gap is kept between what
    reaches the endpoint, not only between slots."""
    seeded = await seed_campaign(conn, leads=8)
    failed_once: set[str] = set()

    def first_try_of_every_other_first_part(info: RequestInfo) -> Fault | None:
        key = info.headers.get("idempotency-key", "")
        if key.endswith(":0") and key not in failed_once and len(failed_once) % 2 == 0:
            failed_once.add(key)
            return Fault.SERVER_ERROR
        if key.endswith(":0"):
            failed_once.add(key)
        return None

    stubs.send.faults.rules.append(first_try_of_every_other_first_part)
    stubs.openrouter.latency = Latency(median_ms=20, sigma=0.3, seed=5)
    settings = make_settings(
        database_url=db_dsn,
        inbox_min_gap_s=0.3,
        inbox_max_gap_s=0.35,
        inbox_daily_cap=0,
        retry_base_s=0.3,  # the retry lands about a gap after the slot
        max_concurrency=4,
        batch_size=4,
        time_budget_s=20,
    )
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            for _ in range(5):  # a few calls, as the scheduler makes them, until all are sent
                response = await http.post(
                    server.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
                assert response.status_code == 200, response.text
                if await conn.fetchval(
                    "select count(*) = 0 from campaign_messages where status <> 'sent'"
                ):
                    break

    firsts = sorted(
        float(d["at"]) for d in stubs.send.deliveries if d["idempotency_key"].endswith(":0")
    )
    assert len(firsts) == len(seeded.message_ids)
    assert len(failed_once) == len(seeded.message_ids)  # half of them did fail once
    gaps = [round(b - a, 3) for a, b in pairwise(firsts)]
    assert min(gaps) >= 0.3, gaps
    await assert_no_lease_left(conn)


async def test_a_first_part_delivered_whose_answer_never_came_keeps_the_gap(
    db_dsn: str, conn: asyncpg.Connection, stubs: Stubs, make_settings: SettingsFactory
) -> None:
    """The first message's first part hangs four times (longer than three polls for a slot),
    then is delivered but its answer never comes: the send times out and the message goes
    back for a retry, its delivery unknown to the service. The next message's first part
    still reaches the endpoint min_gap after it."""
    await seed_campaign(conn, leads=2)
    plans: dict[str, list[Fault]] = {}

    def first_key_hangs_then_delivers_unanswered(info: RequestInfo) -> Fault | None:
        key = info.headers.get("idempotency-key", "")
        if not key.endswith(":0"):
            return None
        if not plans:
            plans[key] = [Fault.HANG] * 4 + [Fault.DELIVER_THEN_HANG]
        plan = plans.get(key)
        return plan.pop(0) if plan else None

    stubs.send.faults.rules.append(first_key_hangs_then_delivers_unanswered)
    stubs.send.faults.hang_s = 3.0
    stubs.openrouter.latency = Latency(fixed_ms=10)
    settings = make_settings(
        database_url=db_dsn,
        inbox_min_gap_s=1.0,
        inbox_max_gap_s=1.0,
        inbox_daily_cap=0,
        send_timeout_s=0.45,
        retry_base_s=0.0,
        retry_max_tries=5,
        max_concurrency=2,
        batch_size=2,
        time_budget_s=10,
    )
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(
                server.url + "/process-queue", headers={"Authorization": f"Bearer {CRON_SECRET}"}
            )
    assert response.status_code == 200, response.text
    # The second message waited for the first one's send (in flight), claimed once: not given
    # back and claimed, started and saved again at each poll.
    answer = response.json()
    assert (answer["claimed"], answer["paused"], answer["processed"]) == (2, 0, 1), answer

    firsts = sorted(
        float(d["at"]) for d in stubs.send.deliveries if d["idempotency_key"].endswith(":0")
    )
    assert len(firsts) == 2
    assert firsts[1] - firsts[0] >= 1.0, firsts
    await assert_no_lease_left(conn)
