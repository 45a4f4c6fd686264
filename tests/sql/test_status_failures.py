"""What went wrong, in campaign_queue_status: the messages waiting for a retry (by reason),
beside those failed for good; each call's end (record_campaign_queue_call) as the last call;
the circuit's openings. States are reached through the queue's own functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim, run_row
from tests.sql.messages import fence

HTTP_500 = "openrouter: HTTP 500 (Internal Server Error)"


async def status(rpc: PostgresRpc, run_id: uuid.UUID | None = None) -> Any:
    return await rpc.call("campaign_queue_status", {"p_run_id": run_id})


async def fail_attempts(
    rpc: PostgresRpc, run_id: uuid.UUID, n: int, error: str, *, retryable: bool = True
) -> list[dict[str, Any]]:
    """Claims n messages of the run and fails each attempt; returns the answers."""
    items = await claim(rpc, batch=n, p_run_id=run_id)
    assert len(items) == n
    return [
        await rpc.call(
            "fail_campaign_message", {**fence(i), "p_error": error, "p_retryable": retryable}
        )
        for i in items
    ]


async def record_call(rpc: PostgresRpc, worker: str = "host-a:1", **args: Any) -> Any:
    return await rpc.call("record_campaign_queue_call", {"p_worker": worker, **args})


def run_of(answer: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
    [run] = [r for r in answer["runs"] if r["run_id"] == str(run_id)]
    assert isinstance(run, dict)
    return run


# --- waiting for a retry -----------------------------------------------------------------------


async def test_messages_waiting_for_a_retry_show_by_reason_beside_those_failed_for_good(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    retried = await fail_attempts(rpc, seeded.run_id, 3, HTTP_500)
    await fail_attempts(rpc, seeded.run_id, 1, "send: HTTP 503 for message 12345")
    await fail_attempts(rpc, seeded.run_id, 1, "send: HTTP 400", retryable=False)

    answer = await status(rpc)

    first_retry = min(datetime.fromisoformat(a["next_attempt_at"]) for a in retried)
    assert [(r["reason"], r["count"]) for r in answer["retrying"]] == [
        ("openrouter: HTTP 500 (Internal Server Error)", 3),
        ("send: HTTP 503 for message <n>", 1),
    ]
    assert datetime.fromisoformat(answer["retrying"][0]["next_attempt_at"]) == first_retry
    assert first_retry > datetime.now(UTC) + timedelta(minutes=4)  # the +5 min retry
    assert answer["failures"] == [{"reason": "send: HTTP 400", "count": 1}]
    run = run_of(answer, seeded.run_id)
    assert (run["failed"], run["retrying"], run["pending"]) == (1, 4, 5)  # 4 retrying + 1 new
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 1


async def test_retrying_covers_the_runs_shown_only(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    running = await seed_campaign(conn, leads=2)
    paused = await seed_campaign(conn, leads=2)
    cancelled = await seed_campaign(conn, leads=2)
    for seeded in (running, paused, cancelled):
        await fail_attempts(rpc, seeded.run_id, 1, f"openrouter: HTTP 502 ({seeded.run_id})")
    await conn.execute("update campaign_runs set status = 'paused' where id = $1", paused.run_id)
    await conn.execute(
        "update campaign_runs set status = 'cancelled' where id = $1", cancelled.run_id
    )

    answer = await status(rpc)  # the running and paused runs
    [reason] = answer["retrying"]
    assert (reason["reason"], reason["count"]) == ("openrouter: HTTP 502 (<id>)", 2)

    one = await status(rpc, cancelled.run_id)  # asked for: its messages are shown
    assert [(r["count"], run_of(one, cancelled.run_id)["retrying"]) for r in one["retrying"]] == [
        (1, 1)
    ]
    other = await status(rpc, running.run_id)
    assert [r["count"] for r in other["retrying"]] == [1]


async def test_a_message_sent_or_requeued_by_hand_no_longer_waits_for_a_retry(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=2)
    await fail_attempts(rpc, seeded.run_id, 2, HTTP_500, retryable=False)
    assert (await status(rpc))["retrying"] == []  # failed for good: not waiting
    assert await rpc.call("requeue_failed_campaign_messages", {"p_run_id": seeded.run_id}) == 2

    answer = await status(rpc)

    assert answer["retrying"] == []  # a fresh start (retry count 0), not a retry
    assert run_of(answer, seeded.run_id)["retrying"] == 0


# --- the last call -----------------------------------------------------------------------------


async def test_no_call_yet(rpc: PostgresRpc) -> None:
    answer = await status(rpc)
    assert answer["last_call"] is None
    assert answer["circuit"] == {"outage_since": None, "openings_24h": 0, "openings": []}


async def test_each_call_moves_the_last_call_even_when_it_claimed_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    counts = {"p_claimed": 8, "p_processed": 0, "p_failed": 5, "p_retried": 5}
    assert await record_call(rpc, "host-a:1", **counts) is False
    first = (await status(rpc))["last_call"]
    assert first["worker"] == "host-a:1"
    assert (first["claimed"], first["processed"], first["failed"], first["retried"]) == (
        8,
        0,
        5,
        5,
    )
    assert (first["circuit_open"], first["answered_502"]) == (None, False)

    await record_call(rpc, "host-a:1")  # claimed nothing

    second = (await status(rpc))["last_call"]
    assert datetime.fromisoformat(second["at"]) > datetime.fromisoformat(first["at"])
    assert (second["claimed"], second["failed"]) == (0, 0)
    await record_call(rpc, "host-b:7", p_claimed=1, p_processed=1)
    assert (await status(rpc))["last_call"]["worker"] == "host-b:7"
    assert await conn.fetchval("select count(*) from campaign_queue_calls") == 2  # a row a worker


async def test_odd_arguments_are_recorded_leniently(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await record_call(
        rpc, "  ", p_claimed=-3, p_failed=None, p_circuit_open="  ", p_answered_502=True
    )
    last = (await status(rpc))["last_call"]
    assert (last["worker"], last["claimed"], last["failed"]) == ("unknown", 0, 0)
    assert (last["circuit_open"], last["answered_502"]) == (None, False)  # no opening: no 502
    assert await conn.fetchval("select count(*) from campaign_queue_circuit_openings") == 0


async def test_a_worker_gone_for_a_week_is_forgotten_when_a_new_one_calls(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await record_call(rpc, "old:1")
    await record_call(rpc, "recent:2")
    await conn.execute(
        """update campaign_queue_calls set called_at = now() - interval '8 days'
            where worker = 'old:1'"""
    )
    await record_call(rpc, "recent:2")  # an existing worker: nothing else touched
    assert await conn.fetchval("select count(*) from campaign_queue_calls") == 2

    await record_call(rpc, "new:3")

    workers = await conn.fetch("select worker from campaign_queue_calls order by worker")
    assert [w["worker"] for w in workers] == ["new:3", "recent:2"]


# --- the circuit -------------------------------------------------------------------------------


async def test_a_circuit_opening_is_shown_with_its_time_reason_and_whether_it_answered_502(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    before = await conn.fetchval("select now()")
    reason = "5 outbound failures in a row, last: openrouter: HTTP 500"
    assert await record_call(rpc, "host-a:1", p_failed=5, p_retried=5, p_circuit_open=reason)
    assert await record_call(
        rpc, "host-b:2", p_circuit_open="openrouter: HTTP 401 (key)", p_answered_502=True
    )

    answer = await status(rpc)

    circuit = answer["circuit"]
    assert circuit["openings_24h"] == 2
    assert [(o["worker"], o["reason"], o["answered_502"]) for o in circuit["openings"]] == [
        ("host-b:2", "openrouter: HTTP 401 (key)", True),  # newest first
        ("host-a:1", reason, False),
    ]
    for opening in circuit["openings"]:
        assert datetime.fromisoformat(opening["opened_at"]) >= before
    # The first opening opened the provider outage that holds lateness back.
    assert datetime.fromisoformat(circuit["outage_since"]) >= before
    last = answer["last_call"]
    assert (last["worker"], last["circuit_open"], last["answered_502"]) == (
        "host-b:2",
        "openrouter: HTTP 401 (key)",
        True,
    )

    # A call that sent a message ends the outage; one that sent nothing does not.
    assert await record_call(rpc, "host-a:1", p_claimed=0) is True
    assert await record_call(rpc, "host-a:1", p_claimed=1, p_processed=1) is False
    assert (await status(rpc))["circuit"]["outage_since"] is None
    assert (await status(rpc))["circuit"]["openings_24h"] == 2  # openings stay


async def test_the_status_shows_the_10_latest_openings_of_the_last_24_hours(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await conn.execute(
        """insert into campaign_queue_circuit_openings (opened_at, worker, reason, answered_502)
           select now() - g * interval '1 hour', 'w', 'opening ' || g, false
             from generate_series(1, 30) g"""
    )
    circuit = (await status(rpc))["circuit"]
    assert circuit["openings_24h"] == 23  # 1 to 23 hours ago
    assert [o["reason"] for o in circuit["openings"]] == [f"opening {g}" for g in range(1, 11)]


async def test_openings_are_kept_for_a_week_and_1000_at_most(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await conn.execute(
        """insert into campaign_queue_circuit_openings (opened_at, worker, reason, answered_502)
           values (now() - interval '8 days', 'w', 'last week', false)"""
    )
    await conn.execute(
        """insert into campaign_queue_circuit_openings (worker, reason, answered_502)
           select 'w', 'burst ' || g, false from generate_series(1, 1200) g"""
    )
    await record_call(rpc, p_circuit_open="the newest")

    kept = await conn.fetch("select reason from campaign_queue_circuit_openings order by id desc")
    assert len(kept) == 1000
    assert kept[0]["reason"] == "the newest"
    assert "last week" not in {r["reason"] for r in kept}


async def test_only_the_service_role_may_record_a_call(conn: asyncpg.Connection) -> None:
    for role in ("anon", "authenticated"):
        for sql in (
            "select record_campaign_queue_call('w')",
            "select count(*) from campaign_queue_calls",
            "select count(*) from campaign_queue_circuit_openings",
        ):
            async with conn.transaction():
                await conn.execute(f"set local role {role}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval(sql)
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert await conn.fetchval("select record_campaign_queue_call('w')") is False
