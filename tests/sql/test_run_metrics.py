"""Recording a delivered message never depends on the run's metrics bookkeeping.

campaign_runs.metrics is product-owned jsonb: anything may have been written there. Whatever
it holds, the last part's mark_message_part_sent records the delivery (message sent, lease
cleared, lead moved, leads_processed counted); the counters it adds to are summed as numbers.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from app.store.postgres import PostgresRpc
from tests.sql.helpers import message_row, run_row
from tests.sql.messages import PARTS, send_all_parts, to_sending

COMPLETED = {"ok": True, "reason": None, "completed": True}
# What one delivered message adds (to_sending saves 120 tokens, 340 ms, 25 ms, 3 parts).
ADDED = {
    "messages_sent": 1,
    "parts_sent": len(PARTS),
    "ai_tokens_used": 120,
    "ai_generation_time_ms": 340,
    "split_time_ms": 25,
    "ai_cost_usd": 0,  # the helper saves no cost: it adds 0
}
BIGINT_MAX = 9_223_372_036_854_775_807


async def deliver_with_metrics(
    conn: asyncpg.Connection, rpc: PostgresRpc, metrics_sql: str
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Sets the run's metrics to a SQL expression, delivers one message; returns
    (answer for the last part, message row, run row)."""
    seeded, item = await to_sending(conn, rpc)
    await conn.execute(
        f"update campaign_runs set metrics = {metrics_sql} where id = $1", seeded.run_id
    )
    result = await send_all_parts(rpc, item)
    return result, await message_row(conn, item["id"]), await run_row(conn, seeded.run_id)


def assert_delivered(result: Any, message: dict[str, Any], run: dict[str, Any]) -> None:
    assert result == COMPLETED
    assert message["status"] == "sent"
    assert message["parts_sent"] == len(PARTS)
    assert message["sent_at"] is not None
    assert (message["locked_at"], message["claimed_by"]) == (None, None)
    assert run["leads_processed"] == 1


@pytest.mark.parametrize(
    ("odd", "expected"),
    [
        # A non-integer number is kept and summed, not rounded: bookkeeping never drops value.
        (812.5, 932.5),
        # Text, null, nested values and booleans count as 0 and are overwritten.
        ("abc", 120),
        (None, 120),
        ({"nested": 1}, 120),
        ([1, 2], 120),
        (True, 120),
        ("", 120),
        # A count written as a decimal string still counts.
        ("80", 200),
        # Negative counts are clamped to 0.
        (-50, 120),
        ("-50", 120),
        # Past bigint: summed as numeric, never an overflow.
        (BIGINT_MAX, BIGINT_MAX + 120),
        (10**40, 10**40 + 120),
    ],
    ids=repr,
)
async def test_an_odd_counter_value_never_fails_the_delivery(
    conn: asyncpg.Connection, rpc: PostgresRpc, odd: Any, expected: Any
) -> None:
    metrics = {"ai_tokens_used": odd, "campaign_label": "spring"}
    result, message, run = await deliver_with_metrics(conn, rpc, f"'{json.dumps(metrics)}'::jsonb")
    assert_delivered(result, message, run)
    assert run["metrics"]["ai_tokens_used"] == expected
    assert run["metrics"]["messages_sent"] == 1
    assert run["metrics"]["campaign_label"] == "spring"  # keys we do not count are kept


@pytest.mark.parametrize(
    "metrics_sql",
    ["'[1, 2]'::jsonb", "'5'::jsonb", "'\"text\"'::jsonb", "'null'::jsonb", "'true'::jsonb"],
)
async def test_metrics_that_is_not_an_object_is_replaced_by_the_counters(
    conn: asyncpg.Connection, rpc: PostgresRpc, metrics_sql: str
) -> None:
    result, message, run = await deliver_with_metrics(conn, rpc, metrics_sql)
    assert_delivered(result, message, run)
    assert run["metrics"] == ADDED


async def test_metrics_that_is_sql_null_is_started_afresh(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # The local schema says not null; a product database may not.
    await conn.execute("alter table campaign_runs alter column metrics drop not null")
    result, message, run = await deliver_with_metrics(conn, rpc, "null")
    assert_delivered(result, message, run)
    assert run["metrics"] == ADDED


async def test_every_counter_tolerates_odd_values_at_once(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    metrics = {
        "messages_sent": 7.25,
        "parts_sent": "abc",
        "ai_tokens_used": None,
        "ai_generation_time_ms": {"a": {"b": 1}},
        "split_time_ms": -3,
    }
    result, _, run = await deliver_with_metrics(conn, rpc, f"'{json.dumps(metrics)}'::jsonb")
    assert result == COMPLETED
    assert run["metrics"] == {
        "messages_sent": 8.25,
        "parts_sent": 3,
        "ai_tokens_used": 120,
        "ai_generation_time_ms": 340,
        "split_time_ms": 25,
        "ai_cost_usd": 0,
    }


async def test_a_negative_count_on_the_message_adds_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    seeded, item = await to_sending(conn, rpc)
    await conn.execute(
        "update campaign_messages set ai_tokens_used = -500, split_time_ms = null where id = $1",
        item["id"],
    )
    await conn.execute(
        """update campaign_runs set metrics = '{"ai_tokens_used": 10, "split_time_ms": 4}'
            where id = $1""",
        seeded.run_id,
    )
    assert await send_all_parts(rpc, item) == COMPLETED
    metrics = (await run_row(conn, seeded.run_id))["metrics"]
    assert (metrics["ai_tokens_used"], metrics["split_time_ms"]) == (10, 4)


async def test_a_failing_metrics_update_does_not_undo_the_delivery(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # Whatever else may reject the bookkeeping (a product trigger or constraint): the message
    # is still recorded as sent, so its last part is not sent again on the next lease.
    await conn.execute(
        """create function reject_metrics() returns trigger language plpgsql as $$
           begin
             if new.metrics is distinct from old.metrics then
               raise exception 'metrics are read-only today';
             end if;
             return new;
           end $$;
           create trigger reject_metrics before update on campaign_runs
             for each row execute function reject_metrics();"""
    )
    result, message, run = await deliver_with_metrics(conn, rpc, "'{}'::jsonb")
    # (the trigger let the test's own update through: '{}' equals the default)
    assert_delivered(result, message, run)
    assert run["metrics"] == {}
    lead_column = await conn.fetchval(
        "select column_id from leads where id = $1", message["lead_id"]
    )
    assert lead_column is not None
    target = await conn.fetchval(
        """select c.target_column_id
             from campaign_runs r join campaign_configs c on c.id = r.config_id
            where r.id = $1""",
        run["id"],
    )
    assert lead_column == target
