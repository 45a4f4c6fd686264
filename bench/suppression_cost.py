"""Suppression and stop-on-reply cost: the claim and the lead contexts at section 8's scale,
with 100k suppressed contacts and 1M messages of history.

Run: uv run python -m bench.suppression_cost [--rows 1000000] [--history 1000000]
                                             [--suppressed 100000] [--rounds 200]
                                             [--max-seconds 180]

One database on an embedded Postgres (a Unix socket): bench/claim_cost.py's paced queue
(ROWS pending messages over 1,000 inboxes, 2 runs each, 30% of the runs paused), plus
HISTORY messages in completed runs of the same campaigns (so the same workspaces and phones),
10% of them `replied` over the last 90 days (a third inside the 30-day window) and the rest
`sent`, plus SUPPRESSED contacts on the suppression list, taken from the pending messages'
workspaces and phones (so claims meet them).

First the target: the claim as the service calls it (pacing on, its defaults, 5/10/20 at a
time), timed on section 8's queue before the history and the list are loaded (the baseline)
and after them, beside one `select 1`.

Then what the service does before any LLM call, per claim round, timed as one path: the claim
(20 at a time, pacing off so every claim brings a full batch of contacts to look up) and
get_lead_contexts. Measured round after round beside its baseline of the same run: the same
claim with get_lead_contexts as it was called before (the lead ids only, no stop reasons).
Each claim is released at once, so each round meets the same queue. Beside wall time, the
server backend's CPU per call. What one call of each reads (statistics counters of its own,
rolled-back transaction) shows that the suppression list and the replies are probed through
their indexes, not scanned.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.sandbox.database import create_migrated_database, drop_database, running_postgres
from app.store.postgres import init_connection
from bench.claim_cost import (
    PACING_OFF,
    SERVICE_PACING,
    Series,
    backend_cpu_ms,
    load_average,
    load_paced,
    pct,
    run_series,
    what_one_call_reads,
)

LOAD_ALLOWANCE_S = 420  # loading 2M rows and the list on a slow, shared machine
CLAIM_SQL = """select get_and_lock_campaign_messages(
    p_batch_size => 20, p_one_hour_ago => $1, p_lock_timeout_s => 600, p_worker => 'bench',
    p_min_gap_s => $2, p_max_gap_s => $3, p_daily_cap => $4, p_lookahead_s => 3)"""
# The claim as the service calls it (app/store/store.py), its default pacing: section 8's
# target, which the history and the list must not move.
SERVICE_CLAIM_SQL = """select get_and_lock_campaign_messages(
    p_batch_size => $1, p_one_hour_ago => $2, p_lock_timeout_s => 600, p_worker => 'bench',
    p_min_gap_s => $3, p_max_gap_s => $4, p_daily_cap => $5, p_lookahead_s => 3)"""
CONTEXTS_SQL = "select get_lead_contexts(p_lead_ids => $1)"
CONTEXTS_WITH_STOPS_SQL = """select get_lead_contexts(
    p_lead_ids => $1, p_message_ids => $2, p_reply_stop_days => 30)"""


async def load_history(conn: asyncpg.Connection, history: int, suppressed: int) -> None:
    """`history` answered or sent messages in completed runs of the same campaigns, on the
    pending messages' phones; `suppressed` contacts of the pending messages on the list."""
    await conn.execute(
        """insert into campaign_runs (config_id, status, leads_total, completed_at)
           select id, 'completed', 0, now() - interval '1 day' from campaign_configs"""
    )
    # History message g: the phone and the campaign of the g-th pending message.
    await conn.execute(
        """
        with p as (select m.phone_number, c.id as config_id,
                          row_number() over (order by m.id) - 1 as g
                     from campaign_messages m join campaign_runs r on r.id = m.run_id
                     join campaign_configs c on c.id = r.config_id
                    where m.status = 'pending'),
             h as (select config_id, id from campaign_runs where status = 'completed')
        insert into campaign_messages (run_id, lead_id, phone_number, phone_normalized, status,
                                       scheduled_at, sent_at, updated_at)
        select h.id, gen_random_uuid(), p.phone_number,
               regexp_replace(p.phone_number, '\\D', '', 'g'),
               case when p.g % 10 = 0 then 'replied' else 'sent' end,
               now() - interval '91 days', now() - interval '91 days',
               now() - (p.g % 90) * interval '1 day' - (p.g % 86400) * interval '1 s'
        from p join h on h.config_id = p.config_id
        where p.g < $1
        """,
        history,
    )
    await conn.execute(
        """
        insert into campaign_suppressions (workspace_id, phone_normalized, reason)
        select distinct on (c.workspace_id, regexp_replace(m.phone_number, '\\D', '', 'g'))
               c.workspace_id, regexp_replace(m.phone_number, '\\D', '', 'g'), 'bench'
          from campaign_messages m join campaign_runs r on r.id = m.run_id
          join campaign_configs c on c.id = r.config_id
         where m.status = 'pending' and abs(hashtext(m.id::text)) % 10 = 3
         limit $1
        on conflict do nothing
        """,
        suppressed,
    )
    await conn.execute("vacuum analyze")


@dataclass
class ClaimPath:
    """The claim and the contexts of what it claimed, timed as one path."""

    label: str
    contexts_sql: str
    with_stops: bool
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: float | None = 0.0
    stopped: int = 0

    async def run_once(self, conn: asyncpg.Connection, pid: int, horizon: datetime) -> None:
        cpu = backend_cpu_ms(pid)
        start = time.perf_counter()
        claimed = await conn.fetchval(CLAIM_SQL, horizon, *PACING_OFF.values())
        args: list[Any] = [[m["lead_id"] for m in claimed]]
        if self.with_stops:
            args.append([m["id"] for m in claimed])
        contexts = await conn.fetchval(self.contexts_sql, *args)
        self.wall_ms.append((time.perf_counter() - start) * 1000)
        after = backend_cpu_ms(pid)
        if self.cpu_ms is not None:
            self.cpu_ms = None if cpu is None or after is None else self.cpu_ms + after - cpu
        self.stopped += len(contexts.get("stop_reasons") or {})
        await conn.fetchval(
            "select release_campaign_messages($1)",
            [{"id": m["id"], "lock_token": m["lock_token"]} for m in claimed],
        )

    def line(self) -> str:
        calls = len(self.wall_ms)
        cpu = f"CPU {self.cpu_ms / calls:5.2f} ms" if self.cpu_ms is not None else "CPU    n/a"
        stops = f", {self.stopped / calls:.1f} stopped per claim" if self.with_stops else ""
        return (
            f"  {self.label:44s} p50 {pct(self.wall_ms, 50):7.2f} ms   "
            f"p95 {pct(self.wall_ms, 95):7.2f} ms   server {cpu}   ({calls} rounds{stops})"
        )


async def main(rows: int, history: int, suppressed: int, rounds: int, max_seconds: float) -> None:
    started = time.monotonic()
    print(f"load average at the start {load_average()} on {os.cpu_count()} cores")
    with running_postgres() as server:
        dsn = await create_migrated_database(server.dsn, "suppression_cost")
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            t0 = time.perf_counter()
            await load_paced(conn, rows)
            horizon = datetime.now(UTC) - timedelta(hours=1)
            sizes = [5, 10, 20]

            def service_args(i: int) -> tuple[Any, ...]:
                return (sizes[i % 3], horizon, *SERVICE_PACING.values())

            deadline = started + max_seconds + LOAD_ALLOWANCE_S
            claim_before = Series(
                "baseline: the same, before them", "same database, same run",
                SERVICE_CLAIM_SQL, service_args,
            )  # fmt: skip
            await run_series(conn, [claim_before], 10, deadline)  # warm-up
            claim_before.wall_ms.clear()
            claim_before.cpu_ms = 0.0
            await run_series(conn, [claim_before], rounds, deadline)
            await load_history(conn, history, suppressed)
            shape = await conn.fetchrow(
                """select count(*) filter (where status = 'pending') as pending,
                          count(*) filter (where status = 'replied') as replied,
                          count(*) filter (where status = 'replied'
                                             and updated_at >= now() - interval '30 days')
                            as replied_30d,
                          count(*) filter (where status = 'sent') as sent,
                          (select count(*) from campaign_suppressions) as suppressed
                     from campaign_messages"""
            )
            print(
                f"\nloaded in {time.perf_counter() - t0:.0f} s: {shape['pending']:,} pending, "
                f"history {shape['replied'] + shape['sent']:,} ({shape['replied']:,} replied, "
                f"{shape['replied_30d']:,} of them in the last 30 days), "
                f"{shape['suppressed']:,} suppressed contacts"
            )
            claim_after = Series(
                "claim, as the service calls it", "target: p50 < 10 ms", SERVICE_CLAIM_SQL,
                service_args,
            )  # fmt: skip
            floor = Series("baseline: select 1", "one round trip", "select 1", lambda _: (), False)
            await run_series(conn, [claim_after], 10, deadline)  # warm-up after the load
            claim_after.wall_ms.clear()
            claim_after.cpu_ms = 0.0
            await run_series(conn, [claim_after, floor], rounds, deadline)
            claimed = await conn.fetchval(CLAIM_SQL, horizon, *PACING_OFF.values())
            leads, ids = [m["lead_id"] for m in claimed], [m["id"] for m in claimed]
            indexed = await what_one_call_reads(
                conn,
                "get_lead_contexts of 20 claimed messages, with their stop reasons",
                CONTEXTS_WITH_STOPS_SQL,
                leads,
                ids,
            )
            await conn.fetchval(
                "select release_campaign_messages($1)",
                [{"id": m["id"], "lock_token": m["lock_token"]} for m in claimed],
            )
            new = ClaimPath(
                "claim of 20 + contexts with stop reasons", CONTEXTS_WITH_STOPS_SQL, True
            )
            old = ClaimPath("baseline: claim of 20 + contexts (before)", CONTEXTS_SQL, False)
            pid = await conn.fetchval("select pg_backend_pid()")
            for _ in range(10):  # warm-up
                await new.run_once(conn, pid, horizon)
            new.wall_ms.clear()
            new.cpu_ms, new.stopped = 0.0, 0
            for i in range(rounds):
                if time.monotonic() > deadline and i >= 5:
                    break
                await new.run_once(conn, pid, horizon)
                await old.run_once(conn, pid, horizon)
        finally:
            await conn.close()
            await drop_database(server.dsn, "suppression_cost")
    print(
        f"\nthe claim of 5/10/20 as the service calls it (pacing on), on section 8's queue with "
        f"{history:,} messages of history and {suppressed:,} suppressed contacts:"
    )
    print(claim_after.line())
    print(floor.line())
    print(claim_before.line())
    print(
        f"\nthe claim of 20 with pacing off (full batches to look up) and the contexts, one "
        f"after the other ({rows:,} pending, {history:,} of history, {suppressed:,} suppressed; "
        f"{'index probes' if indexed else 'SEQ SCAN'}):"
    )
    print(new.line())
    print(old.line())
    print(
        f"\n(total {time.monotonic() - started:.0f} s; load average at the end "
        f"{load_average()} on {os.cpu_count()} cores: wall times grow with it, server CPU does not)"
    )


async def bounded(
    rows: int, history: int, suppressed: int, rounds: int, max_seconds: float
) -> None:
    try:
        await asyncio.wait_for(
            main(rows, history, suppressed, rounds, max_seconds), max_seconds + LOAD_ALLOWANCE_S
        )
    except TimeoutError:
        print(f"\nstopped: over the limit of {max_seconds + LOAD_ALLOWANCE_S:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--suppressed", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=180)
    options = parser.parse_args()
    asyncio.run(
        bounded(
            options.rows, options.history, options.suppressed, options.rounds, options.max_seconds
        )
    )
