"""Fault injection across processes: nothing is lost, nothing is sent twice without cause.

Three service processes share one queue. The stubs fail by ratio (429 with Retry-After, 5xx,
hangs past the timeout, malformed JSON, empty content); a process is SIGKILLed mid-work and
restarted, again and again; the database cuts the service's connections
(pg_terminate_backend). Scheduler calls keep coming until nothing is due or claimed (leases
expire after LOCK_TIMEOUT_S=3). Then the invariants users rely on are checked.

The short run is part of the suite; `pytest tests/chaos --long` runs a larger, longer one.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.sandbox.scheduler import drive_until_settled
from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import ServiceProcess
from app.sandbox.stubs import Fault, Latency
from tests.stubs import CRON_SECRET, Stubs


@dataclass(frozen=True)
class Size:
    messages: int
    processes: int
    kills: int
    cuts: int


SHORT = Size(messages=120, processes=3, kills=3, cuts=2)
LONG = Size(messages=600, processes=4, kills=12, cuts=8)


@pytest.fixture
def size(request: pytest.FixtureRequest) -> Size:
    return LONG if request.config.getoption("--long") else SHORT


def service_env(stubs: Stubs, dsn: str) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        **stubs.env(),
        "CRON_SECRET": CRON_SECRET,
        "LOCK_TIMEOUT_S": "3",
        "TIME_BUDGET_S": "4",
        "GENERATE_TIMEOUT_S": "1",
        "SPLIT_TIMEOUT_S": "1",
        "SEND_TIMEOUT_S": "1",
        "RETRY_BASE_S": "0.05",
        "RETRY_MAX_WAIT_S": "0.3",
        "MAX_CONCURRENCY": "5",
        "BATCH_SIZE": "5",
        "DATABASE_POOL_MAX_SIZE": "6",
        # Pacing on, with small gaps: the faults must not break the gap either.
        "INBOX_MIN_GAP_S": "0.02",
        "INBOX_MAX_GAP_S": "0.05",
        "INBOX_DAILY_CAP": "0",
    }


@pytest.mark.timeout(900)
async def test_chaos_settles_with_nothing_lost_and_nothing_sent_twice_without_cause(
    stubs: Stubs, db_dsn: str, conn: asyncpg.Connection, size: Size, tmp_path: Path
) -> None:
    half = size.messages // 2
    await seed_campaign(conn, leads=half)
    await seed_campaign(
        conn,
        leads=size.messages - half,
        split_messages=True,
        min_chars_to_split=50,
        max_split_parts=3,
    )
    stubs.openrouter.latency = Latency(median_ms=40, sigma=0.6, seed=9)
    stubs.send.latency = Latency(median_ms=15, sigma=0.4, seed=10)
    stubs.openrouter.faults.ratios = {
        Fault.RATE_LIMIT: 0.05,
        Fault.SERVER_ERROR: 0.04,
        Fault.HANG: 0.02,
        Fault.MALFORMED: 0.03,
        Fault.EMPTY: 0.03,
    }
    stubs.openrouter.faults.retry_after = "0.2"
    stubs.openrouter.faults.hang_s = 3
    stubs.send.faults.ratios = {Fault.RATE_LIMIT: 0.03, Fault.SERVER_ERROR: 0.03, Fault.HANG: 0.02}
    stubs.send.faults.retry_after = "0.2"
    stubs.send.faults.hang_s = 3

    services = [
        ServiceProcess(service_env(stubs, db_dsn), log_path=tmp_path / f"service-{i}.log")
        for i in range(size.processes)
    ]
    for service in services:
        service.start()
    rng = random.Random(4)
    done = asyncio.Event()

    async def kill_and_restart() -> int:
        kills = 0
        while kills < size.kills and not done.is_set():
            await asyncio.sleep(rng.uniform(0.8, 1.6))
            if not stubs.send.deliveries:
                continue  # kill mid-send: only once sending is under way
            victim = rng.choice(services)
            victim.kill()
            kills += 1
            await asyncio.to_thread(victim.start)
        return kills

    async def cut_connections() -> int:
        cuts = 0
        while cuts < size.cuts and not done.is_set():
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            await conn.execute(
                """select pg_terminate_backend(pid) from pg_stat_activity
                    where datname = current_database() and pid <> pg_backend_pid()
                      and application_name <> 'scheduler'"""
            )
            cuts += 1
        return cuts

    chaos = [asyncio.create_task(kill_and_restart()), asyncio.create_task(cut_connections())]
    try:
        outcomes = await drive_until_settled(
            [s.url for s in services], db_dsn, CRON_SECRET, timeout_s=600
        )
        # The chaos must have happened, or this test proves nothing.
        done.set()
        kills, cuts = await asyncio.gather(*chaos)
    finally:
        done.set()
        for task in chaos:
            task.cancel()
        for service in services:
            service.stop()
    assert kills >= 1
    assert cuts >= 1

    # 1. Nothing raised past the endpoint: every answer is 200, or 503 with a JSON error.
    answers = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert answers
    for answer in answers:
        assert answer.status_code in (200, 503), answer.text
        assert isinstance(answer.json(), dict)
    assert all(
        isinstance(o, httpx.HTTPError) for o in outcomes if not isinstance(o, httpx.Response)
    )

    # 2. No message lost: each ends sent, failed or skipped, or pending later with a reason.
    rows = await conn.fetch("select * from campaign_messages")
    assert len(rows) == size.messages
    for row in rows:
        if row["status"] == "pending":
            assert row["scheduled_at"] > await conn.fetchval("select now()"), dict(row)
            assert row["error_message"], dict(row)
        else:
            assert row["status"] in ("sent", "failed", "skipped"), dict(row)
    sent = [r for r in rows if r["status"] == "sent"]
    assert sent

    # 3. Every part of a sent message was delivered, with the text that was saved.
    delivered = {d["idempotency_key"]: d["text"] for d in stubs.send.deliveries}
    for row in sent:
        parts = row["message_parts"]
        if isinstance(parts, str):
            parts = json.loads(parts)
        assert row["parts_sent"] == len(parts)
        for index, text in enumerate(parts):
            assert delivered[f"{row['id']}:{index}"] == text

    # 4. A part that reached the stub twice carried the same key and the same text, and
    #    only for a message whose attempt was cut short (a reclaimed lease or a retry).
    texts_by_key: dict[str, set[str]] = defaultdict(set)
    for request in stubs.send.seen:
        texts_by_key[request.headers.get("idempotency-key", "")].add(str(request.body.get("text")))
    assert all(len(texts) == 1 for texts in texts_by_key.values())
    by_id = {str(r["id"]): r for r in rows}
    # A send the service retried itself: its first try may have been delivered before the
    # answer was lost (a 1 s send timeout on a busy machine), and each retry is logged.
    resent = await asyncio.to_thread(_messages_whose_send_was_retried, tmp_path)
    for key in stubs.send.repeats:  # delivered, then its worker was killed, cut off or retried
        message_id = key.split(":")[0]
        assert by_id[message_id]["retry_count"] > 0 or message_id in resent, key
    assert sum(stubs.send.repeats.values()) == stubs.send.duplicate_keys

    # 5. The run counters agree with the message rows.
    runs = await conn.fetch(
        """select r.id, r.leads_processed, r.leads_failed,
                  count(*) filter (where m.status = 'sent') as sent,
                  count(*) filter (where m.status = 'failed') as failed
             from campaign_runs r join campaign_messages m on m.run_id = r.id
            group by r.id"""
    )
    for run in runs:
        assert (run["leads_processed"], run["leads_failed"]) == (run["sent"], run["failed"])


def _messages_whose_send_was_retried(log_dir: Path) -> set[str]:
    """The message ids of the services' "send retrying" lines (JSON logs, one object a line)."""
    ids = set()
    for path in log_dir.glob("service-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if isinstance(entry, dict) and str(entry.get("message", "")).startswith(
                "send retrying"
            ):
                ids.add(str(entry.get("message_id")))
    return ids
