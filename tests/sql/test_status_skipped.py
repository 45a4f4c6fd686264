"""The status's skipped_by_reason (046_status_skipped.sql) counts the skips of the last 24
hours by cause, as the late skip and the suppression write them."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.sandbox.seed import seed_campaign
from app.store.postgres import PostgresRpc
from tests.sql.helpers import claim
from tests.sql.messages import fence


async def test_late_skips_of_different_horizons_are_one_reason(
    conn: asyncpg.Connection, rpc: PostgresRpc
) -> None:
    # Each late skip names its horizon, a different instant every call: three calls a minute
    # apart skip one message each, and they are one cause, beside an opted-out contact.
    await seed_campaign(conn, leads=4)
    [opted_out] = await claim(rpc, 1)
    await rpc.call("skip_campaign_message", {**fence(opted_out), "p_reason": "opted out"})
    await conn.execute(
        """update campaign_messages m
              set scheduled_at = now() - make_interval(mins => (100 - o.n)::int)
             from (select id, row_number() over (order by id) as n from campaign_messages
                    where status = 'pending') o
            where m.id = o.id"""
    )
    for n in (1, 2, 3):
        horizon = await conn.fetchval(
            "select now() - make_interval(mins => 100 - $1::int) + '30 seconds'::interval", n
        )
        assert (
            await rpc.call("mark_old_campaign_messages_as_skipped", {"p_one_hour_ago": horizon})
            == 1
        )

    status: dict[str, Any] = await rpc.call("campaign_queue_status", {})
    by_reason = {s["reason"]: s["count"] for s in status["skipped_by_reason"]}
    assert by_reason.pop("opted out") == 1
    [(late, count)] = by_reason.items()
    assert late.startswith("skipped: scheduled before the horizon")
    assert count == 3
