"""The two invariants every call keeps, as assertions over the database."""

from __future__ import annotations

import asyncpg


async def assert_no_lease_left(conn: asyncpg.Connection) -> None:
    """A call never returns leaving a message it claimed under a lease."""
    leased = await conn.fetch(
        """select id, status from campaign_messages
            where status in ('queued', 'generating', 'sending')
               or (lock_token is not null and status <> 'sent')"""
    )
    assert leased == [], [dict(r) for r in leased]


async def assert_ended_runs_completed(conn: asyncpg.Connection) -> None:
    """A running run whose messages have all ended is completed."""
    stuck = await conn.fetch(
        """select r.id from campaign_runs r
            where r.status = 'running'
              and not exists (select 1 from campaign_messages m where m.run_id = r.id
                               and m.status in ('pending', 'queued', 'generating', 'sending'))"""
    )
    assert stuck == [], [r["id"] for r in stuck]
