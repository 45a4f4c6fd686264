"""log_campaign_steps: many campaign_logs rows in one call, through the product's function."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc

# A stricter product log_campaign_step, as a product database may have: it raises for one
# step name and for details that are not an object.
STRICT_PRODUCT_LOG = """
create or replace function public.log_campaign_step(
  p_run_id uuid, p_step_name text, p_level text, p_message text,
  p_details jsonb default null, p_lead_id uuid default null, p_message_id uuid default null)
returns void
language plpgsql security definer set search_path = public
as $$
begin
  if p_step_name = 'forbidden' then
    raise exception 'step % is not allowed', p_step_name;
  end if;
  if p_details is not null and jsonb_typeof(p_details) <> 'object' then
    raise exception 'details must be an object';
  end if;
  insert into campaign_logs (run_id, lead_id, message_id, step_name, level, message, details)
  values (p_run_id, p_lead_id, p_message_id, p_step_name, coalesce(p_level, 'info'),
          p_message, p_details);
end $$;
"""


async def log_steps(rpc: PostgresRpc, entries: Any) -> Any:
    return await rpc.call("log_campaign_steps", {"p_entries": entries})


async def logged(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """select run_id, lead_id, message_id, step_name, level, message, details
             from campaign_logs order by message"""
    )
    return [dict(r) for r in rows]


async def test_entries_are_written_in_one_call(conn: asyncpg.Connection, rpc: PostgresRpc) -> None:
    seeded = await seed_campaign(conn, leads=1)
    entries = [
        {
            "run_id": str(seeded.run_id),
            "lead_id": str(seeded.lead_ids[0]),
            "message_id": str(seeded.message_ids[0]),
            "step_name": "sent",
            "level": "info",
            "message": f"entry {i:02}",
            "details": {"parts": i},
        }
        for i in range(30)
    ]
    assert await log_steps(rpc, entries) == 30
    rows = await logged(conn)
    assert len(rows) == 30
    assert rows[3] == {
        "run_id": seeded.run_id,
        "lead_id": seeded.lead_ids[0],
        "message_id": seeded.message_ids[0],
        "step_name": "sent",
        "level": "info",
        "message": "entry 03",
        "details": {"parts": 3},
    }


async def test_an_entry_the_product_rejects_never_drops_the_others(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await conn.execute(STRICT_PRODUCT_LOG)
    run_id = str(uuid.uuid4())
    entries: list[Any] = [
        {"run_id": run_id, "step_name": "claim", "message": "a kept"},
        {"run_id": run_id, "step_name": "forbidden", "message": "rejected by the product"},
        {"run_id": "not-a-uuid", "step_name": "claim", "message": "bad run id"},
        {"run_id": run_id, "lead_id": "nope", "step_name": "claim", "message": "bad lead id"},
        {"run_id": run_id, "message_id": 12, "step_name": "claim", "message": "bad message id"},
        {"run_id": run_id, "step_name": "claim", "message": "b kept"},
        "not an object",
        None,
        17,
        ["a", "list"],
        {"run_id": run_id, "step": "window", "message": "c kept"},
    ]
    assert await log_steps(rpc, entries) == 3
    rows = await logged(conn)
    assert [(r["message"], r["step_name"]) for r in rows] == [
        ("a kept", "claim"),
        ("b kept", "claim"),
        ("c kept", "window"),
    ]


async def test_details_that_are_not_an_object_are_kept_inside_one(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # A log line is worth more than the shape of its details: the product's function may
    # insist on an object, so anything else is wrapped as {"value": ...}.
    await conn.execute(STRICT_PRODUCT_LOG)
    entries = [
        {"step_name": "split", "message": "a list", "details": [1, 2]},
        {"step_name": "split", "message": "b text", "details": "plain"},
        {"step_name": "split", "message": "c json null", "details": None},
        {"step_name": "split", "message": "d none"},
    ]
    assert await log_steps(rpc, entries) == 4
    rows = await logged(conn)
    assert [r["details"] for r in rows] == [{"value": [1, 2]}, {"value": "plain"}, None, None]


async def test_input_that_is_not_an_array_writes_nothing(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    for entries in (None, {"step_name": "x"}, "x", 3):
        assert await log_steps(rpc, entries) == 0
    assert await logged(conn) == []


async def test_a_few_rejected_entries_in_a_large_batch(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    await conn.execute(STRICT_PRODUCT_LOG)
    bad = {0, 17, 18, 63}
    entries = [
        {"step_name": "forbidden" if i in bad else "claim", "message": f"entry {i:03}"}
        for i in range(64)
    ]
    assert await log_steps(rpc, entries) == 60
    rows = await logged(conn)
    assert [r["message"] for r in rows] == [f"entry {i:03}" for i in range(64) if i not in bad]
