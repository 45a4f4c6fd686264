"""Claim cost at 1M campaign_messages: query plans and latency of the queue's hot statements.

Run: uv run python -m bench.claim_cost [--rows 1000000] [--claims 200]

Loads ROWS messages over 200 runs (about 5% pending, the rest sent), then prints:
- EXPLAIN (ANALYZE) of the statements inside get_and_lock_campaign_messages and
  mark_old_campaign_messages_as_skipped (Postgres cannot EXPLAIN inside a plpgsql function
  without auto_explain, which the embedded server lacks, so the same statements are run alone);
- p50/p95 of claiming 20 messages, `claims` times, through the real function;
- the baseline measured in the same run: the floor of one round trip (`select 1`), and the
  same claim with the queue's indexes dropped (inside a transaction that is rolled back).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from app.sandbox.database import create_migrated_database, running_postgres
from app.store.postgres import init_connection

CLAIM_SQL = """
select m.id from campaign_messages m
join campaign_runs r on r.id = m.run_id
where m.status = 'pending' and m.scheduled_at <= now() and m.scheduled_at >= $1
  and r.status = 'running'
order by m.scheduled_at
limit 20
for update of m skip locked
"""
STALE_SQL = """
select m.id from campaign_messages m
where m.status in ('queued', 'generating', 'sending')
  and m.locked_at < now() - interval '600 seconds'
order by m.locked_at
limit 20
for update of m skip locked
"""
MARK_OLD_SQL = """
select m.id from campaign_messages m
join campaign_runs r on r.id = m.run_id
where m.status = 'pending' and m.scheduled_at < $1 and r.status = 'running'
for update of m skip locked
"""
QUEUE_INDEXES = [
    "idx_campaign_messages_due",
    "idx_campaign_messages_atomic_selection",
    "idx_campaign_messages_stale_leases",
]


async def load(conn: asyncpg.Connection, rows: int, runs: int = 200) -> None:
    """~5% pending (due within the last hour, late, and future), ~95% sent, over `runs` runs."""
    await conn.execute(
        """insert into inboxes (id, workspace_id, name)
           select gen_random_uuid(), gen_random_uuid(), 'bench ' || g
           from generate_series(1, 10) g"""
    )
    await conn.execute(
        "insert into campaign_configs (workspace_id, inbox_id) select workspace_id, id from inboxes"
    )
    await conn.execute(
        """insert into campaign_runs (config_id, status, leads_total)
           select (select id from campaign_configs order by id offset (g % 10) limit 1),
                  case when g % 20 = 0 then 'paused' else 'running' end, $1::int / $2::int
           from generate_series(1, $2::int) g""",
        rows,
        runs,
    )
    await conn.execute(
        """
        with r as (select array_agg(id order by id) as ids from campaign_runs)
        insert into campaign_messages (run_id, lead_id, phone_number, status, scheduled_at,
                                       sent_at)
        select r.ids[1 + g % cardinality(r.ids)], gen_random_uuid(),
               '+5511' || lpad(g::text, 9, '0'),
               case when g % 20 = 0 then 'pending' else 'sent' end,
               case when g % 20 <> 0 then now() - interval '2 days' + g * interval '100 ms'
                    when g % 60 = 0 then now() - interval '3 hours' + (g % 997) * interval '1 s'
                    when g % 40 = 0 then now() - interval '55 minutes' + (g % 2999) * interval '1 s'
                    else now() + (g % 86400) * interval '1 s' end,
               case when g % 20 <> 0 then now() - interval '1 day' end
        from r, generate_series(1, $1) g
        """,
        rows,
    )
    await conn.execute("vacuum analyze")


async def explain(conn: asyncpg.Connection, title: str, sql: str, *args: object) -> str:
    """EXPLAIN ANALYZE runs the statement: its row locks are rolled back afterwards."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        rows = await conn.fetch(f"explain (analyze, buffers, costs off) {sql}", *args)
    finally:
        await transaction.rollback()
    plan = "\n".join(r[0] for r in rows)
    print(f"\n-- {title}\n{plan}")
    return plan


async def time_claims(conn: asyncpg.Connection, claims: int, horizon: datetime) -> list[float]:
    timings = []
    for _ in range(claims):
        start = time.perf_counter()
        batch = await conn.fetchval(
            "select get_and_lock_campaign_messages(p_batch_size => 20, p_one_hour_ago => $1)",
            horizon,
        )
        timings.append((time.perf_counter() - start) * 1000)
        # Release them so each claim meets the same queue.
        await conn.fetchval(
            "select release_campaign_messages($1)",
            [{"id": m["id"], "lock_token": m["lock_token"]} for m in batch],
        )
    return timings


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main(rows: int, claims: int) -> None:
    with running_postgres() as server:
        dsn = await create_migrated_database(server.dsn, "claim_cost")
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        t0 = time.perf_counter()
        await load(conn, rows)
        counts = await conn.fetch(
            "select status, count(*) from campaign_messages group by 1 order by 1"
        )
        print(
            f"loaded {rows:,} messages in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(f"{r['status']} {r['count']:,}" for r in counts)
        )
        horizon = datetime.now(UTC) - timedelta(hours=1)

        plans = [
            await explain(
                conn,
                "claim: due pending messages (get_and_lock_campaign_messages)",
                CLAIM_SQL,
                horizon,
            ),
            await explain(conn, "claim: stale leases (get_and_lock_campaign_messages)", STALE_SQL),
            await explain(
                conn,
                "skip: late pending messages (mark_old_campaign_messages_...)",
                MARK_OLD_SQL,
                horizon,
            ),
        ]
        for plan in plans:
            scans = (
                "index scan"
                if "Index" in plan and "Seq Scan on campaign_messages" not in plan
                else "NO INDEX SCAN"
            )
            print(f"   -> {scans}")

        await time_claims(conn, 10, horizon)  # warm-up
        timings = await time_claims(conn, claims, horizon)
        floor = []
        for _ in range(claims):
            start = time.perf_counter()
            await conn.fetchval("select 1")
            floor.append((time.perf_counter() - start) * 1000)

        transaction = conn.transaction()
        await transaction.start()
        try:
            for index in QUEUE_INDEXES:
                await conn.execute(f"drop index {index}")
            unindexed = await time_claims(conn, max(5, claims // 20), horizon)
        finally:
            await transaction.rollback()
        await conn.close()

        print(f"\nclaim of 20 over {claims} claims on {rows:,} rows:")
        print(
            f"  claim (indexed)        p50 {pct(timings, 50):7.2f} ms   "
            f"p95 {pct(timings, 95):7.2f} ms   (target: p50 < 10 ms)"
        )
        print(
            f"  baseline: select 1     p50 {pct(floor, 50):7.2f} ms   "
            f"p95 {pct(floor, 95):7.2f} ms   (one round trip, the floor)"
        )
        print(
            f"  baseline: no indexes   p50 {pct(unindexed, 50):7.2f} ms   "
            f"p95 {pct(unindexed, 95):7.2f} ms   ({len(unindexed)} claims)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=200)
    options = parser.parse_args()
    asyncio.run(main(options.rows, options.claims))
