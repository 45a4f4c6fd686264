"""SIGTERM drains the service (app/shutdown.py): the call in progress finishes the messages it
started, gives back the ones it had not, and answers; then the process exits. The service
runs as its own process (uvicorn), as on a platform, and gets a real signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import ROOT, ServiceProcess
from app.sandbox.stubs import Latency
from tests.processing.invariants import assert_no_lease_left
from tests.stubs import CRON_SECRET, Stubs

GRACE_S = 10.0  # Cloud Run's: what the platform waits after SIGTERM before it kills


async def wait_for_generating(conn: asyncpg.Connection, count: int) -> None:
    for _ in range(200):  # 10 s at most
        n = await conn.fetchval(
            "select count(*) from campaign_messages where status = 'generating'"
        )
        if n >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the call never started its messages")


async def wait_for_status(conn: asyncpg.Connection, status: str) -> None:
    for _ in range(200):  # 10 s at most
        if await conn.fetchval("select count(*) from campaign_messages where status = $1", status):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message reached {status}")


async def test_sigterm_lets_the_call_finish_what_it_started_and_give_back_the_rest(
    stubs: Stubs, db_dsn: str, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=12)
    stubs.openrouter.latency = Latency(fixed_ms=1500)
    service = ServiceProcess(
        {
            "DATABASE_URL": db_dsn,
            **stubs.env(),
            "CRON_SECRET": CRON_SECRET,
            "LOCK_TIMEOUT_S": "60",
            "MAX_CONCURRENCY": "2",
            "BATCH_SIZE": "12",
            "INBOX_MIN_GAP_S": "0",
            "INBOX_DAILY_CAP": "0",
        }
    )
    service.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            call = asyncio.create_task(
                http.post(
                    service.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
            )
            await wait_for_generating(conn, 2)
            os.kill(service.pid, signal.SIGTERM)
            response = await call
        exited = await asyncio.to_thread(wait_for_exit, service)
    finally:
        service.stop()

    assert response.status_code == 200, response.text
    answer = response.json()
    # The two being written went out; the ten claimed behind them were given back untouched.
    assert (answer["claimed"], answer["processed"], answer["released"]) == (12, 2, 10), answer
    # It ended by itself once the call answered (uvicorn re-raises the signal it drained on).
    assert exited in (0, -signal.SIGTERM)
    await assert_no_lease_left(conn)
    rows = await conn.fetch(
        "select status, retry_count, count(*) from campaign_messages group by 1, 2 order by 1"
    )
    assert [tuple(r) for r in rows] == [("pending", 0, 10), ("sent", 0, 2)]


async def slot_40_s_away(conn: asyncpg.Connection, where: str) -> uuid.UUID:
    """A message a worker claimed, then died with (its lease expired): the call reclaims it,
    writes it, saves it, and waits 40 s for its inbox's slot. Its id.

    "claim": another message of the inbox took the slot meanwhile, so the claim says the slot
    opens in 40 s. "delivery": the slot is open, but the inbox's last first part was delivered
    just now, so taking the slot says to wait the 40 s gap from that delivery.
    """
    seeded = await seed_campaign(conn, leads=2 if where == "delivery" else 1)
    [claimed] = await conn.fetchval("select get_and_lock_campaign_messages(p_batch_size => 1)")
    message_id = uuid.UUID(claimed["id"])
    await conn.execute("update campaign_messages set locked_at = now() - interval '11 minutes'")
    if where == "claim":
        await conn.execute(
            """with overrides as (
                 insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s)
                 values ($1, 40, 60))
               insert into campaign_inbox_pacing_state (inbox_id, next_slot_at)
               values ($1, now() + interval '40 seconds')""",
            seeded.inbox_id,
        )
        return message_id
    [other] = [m for m in seeded.message_ids if m != message_id]
    await conn.execute(
        """update campaign_messages set status = 'sent', parts_sent = 1, first_part_at = now()
            where id = $1""",
        other,
    )
    await conn.execute(
        """with overrides as (
             insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s)
             values ($1, 40, 60))
           insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_message_id)
           values ($1, now(), $2)""",
        seeded.inbox_id,
        other,
    )
    return message_id


@pytest.mark.parametrize("where", ["claim", "delivery"])
async def test_sigterm_ends_a_wait_for_the_inboxs_slot_and_gives_the_message_back_untouched(
    stubs: Stubs, db_dsn: str, conn: asyncpg.Connection, where: str
) -> None:
    """A message written and saved, waiting 40 s for its inbox's slot: SIGTERM ends the wait
    at once, inside the platform's 10 s grace. The message goes back as the budget-out path
    gives it back: pending, no lease, no retry spent, its text kept for the next call."""
    message_id = await slot_40_s_away(conn, where)
    service = ServiceProcess(
        {
            "DATABASE_URL": db_dsn,
            **stubs.env(),
            "CRON_SECRET": CRON_SECRET,
            "LOCK_TIMEOUT_S": "60",
            "TIME_BUDGET_S": "120",
        }
    )
    service.start()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            call = asyncio.create_task(
                http.post(
                    service.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
            )
            await wait_for_status(conn, "sending")  # written, saved: now waiting for the slot
            retries = await conn.fetchval(
                "select retry_count from campaign_messages where id = $1", message_id
            )
            os.kill(service.pid, signal.SIGTERM)
            response = await asyncio.wait_for(call, GRACE_S)
        exited = await asyncio.to_thread(wait_for_exit, service)
    finally:
        service.stop()

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["claimed"], answer["processed"], answer["failed"]) == (1, 0, 0), answer
    assert exited in (0, -signal.SIGTERM)
    await assert_no_lease_left(conn)
    row = await conn.fetchrow(
        """select status, retry_count, parts_sent, generated_message
             from campaign_messages where id = $1""",
        message_id,
    )
    assert (row["status"], row["retry_count"], row["parts_sent"]) == ("pending", retries, 0)
    assert row["generated_message"]  # kept: the next call sends it without writing it again
    assert stubs.send.deliveries == []


def wait_for_exit(service: ServiceProcess) -> int | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and service.alive:
        time.sleep(0.05)
    return None if service.alive else service.returncode


async def test_sigterm_drains_the_process_command_as_it_drains_the_service(
    stubs: Stubs, db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """`python -m app process` (as an operator or a job runs it) on SIGTERM: finishes the two
    messages it is writing, gives back the ten it claimed behind them, prints the answer and
    exits, inside the grace."""
    await seed_campaign(conn, leads=12)
    stubs.openrouter.latency = Latency(fixed_ms=1500)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_dsn,
        **stubs.env(),
        "CRON_SECRET": CRON_SECRET,
        "LOCK_TIMEOUT_S": "60",
        "INBOX_MIN_GAP_S": "0",
        "INBOX_MAX_GAP_S": "0",
        "INBOX_DAILY_CAP": "0",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "app", "process", "--concurrency", "2", "--batch-size", "12"],
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_generating(conn, 2)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), GRACE_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0, err.decode()
    [line] = out.decode().splitlines()
    answer = json.loads(line)
    assert (answer["claimed"], answer["processed"], answer["released"]) == (12, 2, 10), answer
    await assert_no_lease_left(conn)
    rows = await conn.fetch(
        "select status, retry_count, count(*) from campaign_messages group by 1, 2 order by 1"
    )
    assert [tuple(r) for r in rows] == [("pending", 0, 10), ("sent", 0, 2)]


def test_without_a_server_handler_sigterm_still_terminates() -> None:
    """Outside a server (no handler before ours), the signal does what it did: it ends the
    process, after the drain."""
    code = (
        "import os, signal, time\n"
        "from app.shutdown import on_sigterm\n"
        "on_sigterm(lambda: print('drained', flush=True))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
        "print('still alive', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout == "drained\n"
    assert result.returncode == -signal.SIGTERM


def test_the_process_commands_first_sigterm_drains_and_a_second_terminates() -> None:
    """`python -m app process` stays up after the first SIGTERM to end its call by itself; an
    impatient second one ends it at once, as SIGTERM did before."""
    code = (
        "import os, signal, time\n"
        "from app.shutdown import drain_on_sigterm\n"
        "drain_on_sigterm(lambda: print('drained', flush=True))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('still alive', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
        "print('never', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout == "drained\nstill alive\n"
    assert result.returncode == -signal.SIGTERM
