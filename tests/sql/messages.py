"""Helpers for tests of one claimed message's life: claim it, then move it along its fence."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim

PARTS = ["Oi Ana!", "Vi que a Acme cresceu.", "Posso te mostrar algo?"]


async def claim_one(
    conn: asyncpg.Connection, rpc: PostgresRpc, **seed: Any
) -> tuple[SeededCampaign, dict[str, Any]]:
    seeded = await seed_campaign(conn, leads=1, **seed)
    [item] = await claim(rpc)
    return seeded, item


def fence(item: dict[str, Any]) -> dict[str, Any]:
    return {"p_message_id": item["id"], "p_lock_token": item["lock_token"]}


async def save(rpc: PostgresRpc, item: dict[str, Any], parts: list[str] = PARTS) -> Any:
    return await rpc.call(
        "save_generated_message",
        {
            **fence(item),
            "p_generated_message": " ".join(parts),
            "p_parts": parts,
            "p_ai_tokens_used": 120,
            "p_ai_generation_time_ms": 340,
            "p_split_time_ms": 25,
        },
    )


async def to_sending(
    conn: asyncpg.Connection, rpc: PostgresRpc, **seed: Any
) -> tuple[SeededCampaign, dict[str, Any]]:
    seeded, item = await claim_one(conn, rpc, **seed)
    assert (await rpc.call("start_campaign_message", fence(item)))["ok"] is True
    assert (await save(rpc, item))["ok"] is True
    return seeded, item


async def send_all_parts(rpc: PostgresRpc, item: dict[str, Any], parts: int = len(PARTS)) -> Any:
    """Records every part as delivered; returns the answer for the last one."""
    result: Any = None
    for index in range(parts):
        result = await rpc.call(
            "mark_message_part_sent",
            {**fence(item), "p_part_index": index, "p_provider_message_id": f"wamid.{index}"},
        )
    return result
