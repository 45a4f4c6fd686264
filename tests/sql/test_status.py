"""campaign_queue_status (docs/architecture.md, "Status") and the cost a message carries
into its run.

States are reached through the queue's own functions (claim, save, mark, fail, skip), so a
run's counters are what the service would leave.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from app.store.store import Pacing, Store
from tests.sql.helpers import claim, message_row, run_row
from tests.sql.messages import PARTS, fence, send_all_parts

NO_PACING = Pacing(0, 0, 0)


async def status(rpc: PostgresRpc, run_id: uuid.UUID | None = None, **pacing: Any) -> Any:
    return await rpc.call("campaign_queue_status", {"p_run_id": run_id, **pacing})


async def work(
    rpc: PostgresRpc,
    run_id: uuid.UUID,
    *,
    sent: int = 0,
    failed: int = 0,
    skipped: int = 0,
    cost: float | None = 0.001,
    error: str = "send: HTTP 400",
) -> None:
    """Claims messages of one run and ends them: sent (with a cost), failed, skipped."""
    items = await claim(rpc, batch=sent + failed + skipped, p_run_id=run_id)
    assert len(items) == sent + failed + skipped
    for item in items[:sent]:
        assert (await rpc.call("start_campaign_message", fence(item)))["ok"]
        saved = await rpc.call(
            "save_generated_message",
            {
                **fence(item),
                "p_generated_message": " ".join(PARTS),
                "p_parts": PARTS,
                "p_ai_tokens_used": 100,
                "p_ai_generation_time_ms": 10,
                "p_split_time_ms": None,
                "p_ai_cost_usd": cost,
            },
        )
        assert saved["ok"]
        assert (await send_all_parts(rpc, item))["completed"]
    for item in items[sent : sent + failed]:
        answer = await rpc.call(
            "fail_campaign_message", {**fence(item), "p_error": error, "p_retryable": False}
        )
        assert answer["status"] == "failed"
    for item in items[sent + failed :]:
        assert (
            await rpc.call("skip_campaign_message", {**fence(item), "p_reason": "lead not found"})
        )["ok"]


def run_of(answer: dict[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
    [run] = [r for r in answer["runs"] if r["run_id"] == str(run_id)]
    assert isinstance(run, dict)
    return run


async def test_an_empty_queue(rpc: PostgresRpc) -> None:
    answer = await status(rpc)
    assert answer["queue"] == {"due": 0, "scheduled": 0, "in_flight": 0, "oldest_due_s": None}
    assert (answer["runs"], answer["inboxes"], answer["failures"]) == ([], [], [])
    assert answer["throughput"] == {"sent_5m": 0, "sent_60m": 0}
    assert datetime.fromisoformat(answer["at"]) <= datetime.now(UTC) + timedelta(seconds=5)


async def test_depth_lag_progress_and_cost_of_the_running_and_paused_runs(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    running = await seed_campaign(
        conn, leads=8, first_scheduled_at=now - timedelta(minutes=10), spacing=timedelta(minutes=4)
    )  # due: -10, -6, -2 min; then 2, 6, ... minutes ahead
    paused = await seed_campaign(conn, leads=2, first_scheduled_at=now - timedelta(hours=2))
    done = await seed_campaign(conn, leads=1)
    await work(rpc, done.run_id, sent=1)  # completed: not shown
    await conn.execute("update campaign_runs set status = 'paused' where id = $1", paused.run_id)

    await work(rpc, running.run_id, sent=1, failed=1, cost=0.0123)  # the two oldest
    [in_flight] = await claim(rpc, batch=1, p_run_id=running.run_id)  # the third due one

    answer = await status(rpc)

    assert [r["run_id"] for r in answer["runs"]] == [str(running.run_id), str(paused.run_id)]
    run = run_of(answer, running.run_id)
    assert {k: run[k] for k in ("status", "total", "sent", "failed", "skipped", "pending")} == {
        "status": "running",
        "total": 8,
        "sent": 1,
        "failed": 1,
        "skipped": 0,
        "pending": 5,
    }
    assert run["in_flight"] == 1
    assert run["ai_tokens"] == 100
    assert run["ai_cost_usd"] == pytest.approx(0.0123)
    assert run["inbox_id"] == str(running.inbox_id)
    assert datetime.fromisoformat(run["started_at"]) <= datetime.now(UTC)
    other = run_of(answer, paused.run_id)
    assert (other["status"], other["pending"], other["eta_s"]) == ("paused", 2, None)
    # The queue is what the service would work: the running run's pending ones, none due now
    # (the three due were ended or claimed), five ahead; the paused run's are not in it.
    assert answer["queue"] == {"due": 0, "scheduled": 5, "in_flight": 1, "oldest_due_s": None}
    assert in_flight["id"]


async def test_oldest_due_is_the_lag_of_the_oldest_due_message(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    now = datetime.now(UTC)
    await seed_campaign(conn, leads=3, first_scheduled_at=now - timedelta(minutes=5))
    answer = await status(rpc)
    assert answer["queue"]["due"] == 3
    assert 295 <= answer["queue"]["oldest_due_s"] <= 330


async def test_one_run_asked_for_answers_about_it_and_its_inbox_only(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    one = await seed_campaign(conn, leads=3)
    two = await seed_campaign(conn, leads=4)
    await work(rpc, one.run_id, failed=1, error="openrouter: HTTP 500")
    await work(rpc, two.run_id, sent=1, failed=2, error="send: HTTP 400")

    answer = await status(rpc, two.run_id)

    assert [r["run_id"] for r in answer["runs"]] == [str(two.run_id)]
    assert [i["inbox_id"] for i in answer["inboxes"]] == [str(two.inbox_id)]
    assert answer["failures"] == [{"reason": "send: HTTP 400", "count": 2}]
    assert answer["queue"]["due"] == 1
    assert answer["throughput"] == {"sent_5m": 1, "sent_60m": 1}
    completed = await seed_campaign(conn, leads=1)
    await work(rpc, completed.run_id, sent=1)
    answer = await status(rpc, completed.run_id)  # a finished run can be asked about too
    assert run_of(answer, completed.run_id)["status"] == "completed"
    assert run_of(answer, completed.run_id)["eta_s"] is None
    assert (await status(rpc, uuid.uuid4()))["runs"] == []


async def test_failures_of_the_last_day_are_grouped_by_reason_without_ids_or_numbers(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=9)
    items = await claim(rpc, batch=9)
    errors = [
        "database error: lock on 3f1e2d4c-5b6a-4789-8a0b-1c2d3e4f5a6b timed out after 30 s",
        "database error: lock on 9a8b7c6d-5e4f-4321-8fed-cba987654321 timed out after 5 s",
        "send: HTTP 400",
        "send: HTTP 400",
        "openrouter: HTTP 500",
        "generated message too short: 3 characters (minimum 10)",
        "generated message too short: 7 characters (minimum 10)",
        "lease expired after 3 retries: the worker processing it stopped each time",
        "old failure",
    ]
    for item, error in zip(items, errors, strict=True):
        await rpc.call(
            "fail_campaign_message", {**fence(item), "p_error": error, "p_retryable": False}
        )
    await conn.execute(
        """update campaign_messages set updated_at = now() - interval '25 hours'
            where error_message = 'old failure'"""
    )

    answer = await status(rpc)

    assert answer["failures"] == [
        {"reason": "database error: lock on <id> timed out after <n> s", "count": 2},
        {"reason": "generated message too short: <n> characters (minimum <n>)", "count": 2},
        {"reason": "send: HTTP 400", "count": 2},
        {
            "reason": "lease expired after <n> retries: the worker processing it stopped each time",
            "count": 1,
        },
        {"reason": "openrouter: HTTP 500", "count": 1},
    ]
    assert (await run_row(conn, seeded.run_id))["leads_failed"] == 9


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("openrouter: error in answer (code 502)", "openrouter: error in answer (code 502)"),
        ("send: +5511999990000 is not a WhatsApp number", "send: +<n> is not a WhatsApp number"),
        ("skipped at 2026-11-25T10:00:01.5+00:00 late", "skipped at <n>+<n> late"),
        ("request 0123456789abcdef0123 failed", "request <id> failed"),
        ("lock on ABCDEF12-5b6a-4789-8a0b-1c2d3e4f5a6b, 3 tries", "lock on <id>, <n> tries"),
        ("cost 12.50 then 1,000 left.", "cost <n> then <n> left."),
        ("HTTP 500 after 3 tries, then HTTP 502", "HTTP 500 after <n> tries, then HTTP 502"),
        ("model gpt4o down", "model gpt4o down"),  # a number inside a word is part of it
        (None, "unknown error"),
        ("   ", "unknown error"),
        ("x" * 500, "x" * 200),
    ],
)
async def test_failure_reasons(conn: asyncpg.Connection, error: str | None, reason: str) -> None:
    assert await conn.fetchval("select cq_failure_reason($1)", error) == reason


async def test_throughput_counts_sends_of_the_last_5_and_60_minutes(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    await work(rpc, seeded.run_id, sent=4)
    for message_id, minutes in zip(seeded.message_ids, [1, 4, 30, 90], strict=False):
        await conn.execute(
            """update campaign_messages set sent_at = now() - make_interval(mins => $2)
                where id = $1 and status = 'sent'""",
            message_id,
            minutes,
        )
    assert (await status(rpc))["throughput"] == {"sent_5m": 2, "sent_60m": 3}


OVERRIDES = ("min_gap_s", "max_gap_s", "daily_cap", "timezone")


async def pace(
    conn: asyncpg.Connection, seeded: SeededCampaign, *, next_slot_in_s: float, **row: Any
) -> None:
    """The inbox's override row (its columns in `row`) and its pacing state (the others)."""
    overrides = {k: v for k, v in row.items() if k in OVERRIDES}
    state = {k: v for k, v in row.items() if k not in OVERRIDES}
    for table, columns in (
        ("campaign_inbox_pacing", overrides),
        ("campaign_inbox_pacing_state", {"next_slot_at": None, **state}),
    ):
        names = ", ".join(["inbox_id", *columns])
        values = ", ".join(f"${i}" for i in range(1, 2 + len(columns)))
        await conn.execute(
            f"insert into {table} ({names}) values ({values})", seeded.inbox_id, *columns.values()
        )
    await conn.execute(
        "update campaign_inbox_pacing_state set next_slot_at = now() + make_interval(secs => $2)"
        " where inbox_id = $1",
        seeded.inbox_id,
        next_slot_in_s,
    )


async def test_eta_of_a_paced_inbox_is_its_next_slot_plus_a_mean_gap_per_message(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=5)
    await pace(conn, seeded, next_slot_in_s=30, min_gap_s=20, max_gap_s=60)

    run = run_of(await status(rpc), seeded.run_id)

    assert 189 <= run["eta_s"] <= 191  # 30 s to the slot, then 4 gaps of 40 s
    [inbox] = (await status(rpc))["inboxes"]
    assert (inbox["min_gap_s"], inbox["max_gap_s"], inbox["daily_cap"]) == (20, 60, 300)
    assert inbox["pending"] == 5


async def test_runs_sharing_an_inbox_share_its_pace(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    big = await seed_campaign(conn, leads=5)
    small = await seed_campaign(conn, leads=2)
    await conn.execute(
        "update campaign_configs set inbox_id = $1 where id = $2", big.inbox_id, small.config_id
    )
    await pace(conn, big, next_slot_in_s=0, min_gap_s=10, max_gap_s=10)

    answer = await status(rpc)

    # Interleaved: the small run's 2 go out within the first 4 slots, the big one's last 7th.
    assert run_of(answer, small.run_id)["eta_s"] == 30
    assert run_of(answer, big.run_id)["eta_s"] == 60
    assert (await status(rpc, small.run_id))["runs"][0]["eta_s"] == 30  # asked alone: the same


async def test_eta_past_the_daily_cap_waits_for_the_next_days(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=25, timezone="America/Sao_Paulo")
    today = await conn.fetchval("select (now() at time zone 'America/Sao_Paulo')::date")
    await pace(
        conn,
        seeded,
        next_slot_in_s=0,
        min_gap_s=10,
        max_gap_s=10,
        daily_cap=10,
        sent_today=8,
        sent_day=today,
        day_timezone="America/Sao_Paulo",
    )
    to_midnight = await conn.fetchval(
        """select extract(epoch from (((now() at time zone 'America/Sao_Paulo')::date + 1)
                  ::timestamp at time zone 'America/Sao_Paulo') - now())::float"""
    )

    answer = await status(rpc)

    # 2 more today; 23 left: 10 tomorrow, 10 the day after, the last 3 the third day.
    eta = run_of(answer, seeded.run_id)["eta_s"]
    assert eta == pytest.approx(to_midnight + 2 * 86400 + 2 * 10, abs=2)
    [inbox] = answer["inboxes"]
    assert (inbox["sent_today"], inbox["daily_cap"]) == (8, 10)


async def test_sends_counted_on_another_day_are_not_todays(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await pace(
        conn,
        seeded,
        next_slot_in_s=0,
        sent_today=50,
        sent_day=datetime(2020, 1, 1).date(),
        day_timezone="Not/A_Zone",
    )
    [inbox] = (await status(rpc))["inboxes"]
    assert inbox["sent_today"] == 0


async def test_the_services_pacing_settings_apply_to_inboxes_without_overrides(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    defaults = run_of(await status(rpc), seeded.run_id)
    assert defaults["eta_s"] == 80  # the service's defaults: 2 gaps of (20 + 60) / 2
    paced = await Store(rpc).queue_status(None, Pacing(5, 15, 100))
    assert run_of(paced, seeded.run_id)["eta_s"] == 20
    [inbox] = paced["inboxes"]
    assert (inbox["min_gap_s"], inbox["max_gap_s"], inbox["daily_cap"]) == (5, 15, 100)


async def test_an_unpaced_run_goes_at_its_pace_of_the_last_hour(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=6)
    store = Store(rpc)
    assert run_of(await store.queue_status(None, NO_PACING), seeded.run_id)["eta_s"] is None
    await work(rpc, seeded.run_id, sent=4)  # 4 since it started (a minute at least), 2 to go
    assert run_of(await store.queue_status(None, NO_PACING), seeded.run_id)["eta_s"] == 30
    await conn.execute(
        "update campaign_runs set started_at = now() - interval '1 day' where id = $1",
        seeded.run_id,
    )  # an older run: its pace is that of the last hour
    assert run_of(await store.queue_status(None, NO_PACING), seeded.run_id)["eta_s"] == 1800
    await work(rpc, seeded.run_id, sent=2)
    done = run_of(await store.queue_status(seeded.run_id, NO_PACING), seeded.run_id)
    assert (done["status"], done["pending"], done["eta_s"]) == ("completed", 0, None)


async def test_eta_is_never_before_the_last_scheduled_message(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(
        conn, leads=2, first_scheduled_at=datetime.now(UTC) + timedelta(hours=2)
    )
    eta = run_of(await status(rpc), seeded.run_id)["eta_s"]
    assert 7100 <= eta <= 7201


async def test_odd_metrics_count_as_zero(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute(
        """update campaign_runs
              set metrics = '{"ai_tokens_used": "abc", "ai_cost_usd": "0.5"}' where id = $1""",
        seeded.run_id,
    )
    run = run_of(await status(rpc), seeded.run_id)
    assert (run["ai_tokens"], run["ai_cost_usd"]) == (0, 0.5)
    await conn.execute("update campaign_runs set metrics = '[1]' where id = $1", seeded.run_id)
    run = run_of(await status(rpc), seeded.run_id)
    assert (run["ai_tokens"], run["ai_cost_usd"]) == (0, 0)


async def test_total_is_never_less_than_the_messages_counted(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=4)
    await conn.execute("update campaign_runs set leads_total = 1 where id = $1", seeded.run_id)
    await work(rpc, seeded.run_id, skipped=1)
    run = run_of(await status(rpc), seeded.run_id)
    assert (run["total"], run["skipped"], run["pending"]) == (4, 1, 3)


async def test_only_the_service_role_may_ask(conn: asyncpg.Connection) -> None:
    for role in ("anon", "authenticated"):
        async with conn.transaction():
            await conn.execute(f"set local role {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("select campaign_queue_status()")
    async with conn.transaction():
        await conn.execute("set local role service_role")
        assert await conn.fetchval("select campaign_queue_status()") is not None


# --- the cost a message carries ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "saved"),
    [
        (0.0123, Decimal("0.0123")),
        (0.1 + 0.2, Decimal("0.3")),  # a float's binary noise is dropped (12 decimals)
        (1.5e-7, Decimal("0.00000015")),
        (0, Decimal("0")),
        (None, None),
        (-0.01, None),
        (float("nan"), None),
        (float("inf"), None),
        (2e6, None),
    ],
)
async def test_save_generated_message_keeps_a_plausible_cost(
    conn: asyncpg.Connection, rpc: PostgresRpc, given: float | None, saved: Decimal | None
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await work(rpc, seeded.run_id, sent=1, cost=given)
    row = await message_row(conn, seeded.message_ids[0])
    assert row["ai_cost_usd"] == saved
    metrics = (await run_row(conn, seeded.run_id))["metrics"]
    assert Decimal(str(metrics["ai_cost_usd"])) == (saved or 0)


async def test_a_retry_without_a_new_cost_keeps_the_first_one(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    [item] = await claim(rpc)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"]
    args = {
        **fence(item),
        "p_generated_message": "Oi Ana, tudo bem?",
        "p_parts": ["Oi Ana, tudo bem?"],
        "p_ai_tokens_used": 10,
        "p_ai_generation_time_ms": 1,
        "p_split_time_ms": None,
    }
    assert (await rpc.call("save_generated_message", {**args, "p_ai_cost_usd": 0.002}))["ok"]
    assert (await rpc.call("save_generated_message", args))["ok"]  # the old 7 arguments work
    assert (await message_row(conn, seeded.message_ids[0]))["ai_cost_usd"] == Decimal("0.002")


async def test_the_run_sums_the_cost_of_its_sent_messages(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=3)
    await work(rpc, seeded.run_id, sent=3, cost=0.0001)
    metrics = (await run_row(conn, seeded.run_id))["metrics"]
    assert Decimal(str(metrics["ai_cost_usd"])) == Decimal("0.0003")
    assert metrics["ai_tokens_used"] == 300


async def test_past_500_different_texts_the_rest_are_counted_together(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded = await seed_campaign(conn, leads=1)
    await conn.execute(
        """insert into campaign_messages (run_id, lead_id, phone_number, status, error_message)
           select $1, gen_random_uuid(), '+5511900000000', 'failed',
                  case when g <= 3 then 'send: HTTP 400'
                       else 'message ' || gen_random_uuid() || ' refused' end
             from generate_series(1, 503) g""",
        seeded.run_id,
    )
    failures = (await status(rpc))["failures"]
    assert failures == [
        {"reason": "message <id> refused", "count": 499},  # the 3 repeated ones rank first
        {"reason": "send: HTTP 400", "count": 3},
        {"reason": "(other failures: too many different texts to group)", "count": 1},
    ]
