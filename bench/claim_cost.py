"""Claim cost at 1M campaign_messages: what the queue's hot calls read, and their latency.

Run: uv run python -m bench.claim_cost [--case edge|paced|both] [--rows 1000000]
                                       [--claims 200] [--max-seconds 180]

Two cases, each in its own database on one embedded Postgres (a Unix socket: nothing leaves
the machine), each measured against baselines taken in the same run:

- edge: ROWS messages over 200 runs on 10 inboxes, about 5% pending (the rest sent): the
  claim as the edge function called it (the section-4 parameters, 20 at a time). Baselines:
  one `select 1` round trip, and the same claim with the queue's indexes dropped (inside a
  transaction that is rolled back).
- paced (issue 10): ROWS pending messages over 1,000 inboxes (2 runs each), 30% of them in
  paused runs; 90% of the inboxes are inside their gap (a pacing row whose next slot is 15-30
  minutes away, so the state holds still while the benchmark runs). The claim as the service
  calls it: batches of 5, 10 and 20, INBOX_* settings 20/60/300, a lookahead of 3 s.
  Baselines: `select 1`, the section-4 claim (an older caller: only inboxes with a row are
  paced, here all of them, with the defaults), and pacing off (0/0/0: every inbox eligible,
  the pick's worst case).

Every claim goes through the real get_and_lock_campaign_messages and its messages are
released at once, so each claim meets the same queue. The series of a case run round after
round, one call of each per round, so a busy machine weighs on the claim and its baselines
alike; beside wall time, each line shows the server backend's CPU time per call (from
/proc/<pid>/stat), which a busy machine does not inflate. Plans: EXPLAIN cannot see inside a
plpgsql function (and the embedded server has no auto_explain), so the evidence is what one
real call reads, from the statistics counters of its own transaction (pg_stat_xact_*,
rolled back): sequential scans and rows read per table, and scans per index. A claim that
scanned campaign_messages would show a seq scan and ~1M rows read there.

The time is bounded: each timing loop stops at its share of --max-seconds, and the whole
run is cancelled (and the server stopped) past that limit plus the loading allowance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.sandbox.database import create_migrated_database, drop_database, running_postgres
from app.store.postgres import init_connection

QUEUE_INDEXES = [
    "idx_campaign_messages_due",
    "idx_campaign_messages_atomic_selection",
    "idx_campaign_messages_stale_leases",
]
TABLES = [
    "campaign_messages",
    "campaign_runs",
    "campaign_configs",
    "campaign_inbox_pacing",
    "campaign_inbox_pacing_state",
    "campaign_run_turns",
]
SERVICE_PACING = {"p_min_gap_s": 20.0, "p_max_gap_s": 60.0, "p_daily_cap": 300}
PACING_OFF = {"p_min_gap_s": 0.0, "p_max_gap_s": 0.0, "p_daily_cap": 0}
# Number health on (README, "Number health"): a 14-day warm-up from 20 a day, 30 an hour.
HEALTH_ON = {"p_warmup_days": 14, "p_warmup_start_cap": 20, "p_hourly_cap": 30}
LOAD_ALLOWANCE_S = 180  # loading 1M rows twice on a slow, shared machine


async def load_edge(conn: asyncpg.Connection, rows: int, runs: int = 200) -> None:
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


async def load_paced(conn: asyncpg.Connection, rows: int, inboxes: int = 1000) -> None:
    """`rows` pending messages over `inboxes` inboxes, 2 runs each (30% of runs paused), due
    from 30 minutes ago to 20 minutes ahead; 90% of the inboxes inside their gap."""
    await conn.execute(
        """insert into inboxes (id, workspace_id, name)
           select gen_random_uuid(), gen_random_uuid(), 'bench ' || g
           from generate_series(1, $1::int) g""",
        inboxes,
    )
    await conn.execute(
        """insert into campaign_configs (workspace_id, inbox_id)
           select i.workspace_id, i.id from inboxes i, generate_series(1, 2)"""
    )
    runs = inboxes * 2
    await conn.execute(
        """insert into campaign_runs (config_id, status, leads_total)
           select c.id, case when c.n % 10 < 3 then 'paused' else 'running' end, $1::int
           from (select id, row_number() over (order by id) as n from campaign_configs) c""",
        rows // runs,
    )
    await conn.execute(
        """
        with r as (select array_agg(id order by id) as ids from campaign_runs)
        insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at)
        select r.ids[1 + g % cardinality(r.ids)], gen_random_uuid(),
               '+5511' || lpad(g::text, 9, '0'),
               now() - interval '30 minutes'
                 + ((g / cardinality(r.ids)) * 3000.0 / ($1::int / cardinality(r.ids)))
                   * interval '1 s'
        from r, generate_series(0, $1::int - 1) g
        """,
        rows,
    )
    # Every inbox has an override row (all null: the settings), as before the state had a
    # table of its own, so the section-4 baseline paces them all.
    await conn.execute("insert into campaign_inbox_pacing (inbox_id) select id from inboxes")
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at,
                                                   sent_day, sent_today, paced, day_timezone)
           select i.id,
                  case when i.n % 10 = 0 then now() - interval '1 second'
                       else now() + interval '15 minutes' + (i.n % 900) * interval '1 s' end,
                  now() - (i.n % 60) * interval '1 s',
                  (now() at time zone 'America/Sao_Paulo')::date, 50, true, 'America/Sao_Paulo'
           from (select id, row_number() over (order by id) as n from inboxes) i"""
    )
    await conn.execute("vacuum analyze")


async def counters(conn: asyncpg.Connection) -> dict[str, int]:
    """This transaction's scans so far: per table seq scans, rows they read, index scans, rows
    fetched through indexes; and per index of campaign_messages its scans."""
    found: dict[str, int] = {}
    for row in await conn.fetch(
        """select relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch
             from pg_stat_xact_user_tables where relname = any($1::text[])""",
        TABLES,
    ):
        for column in ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch"):
            found[f"{row['relname']}.{column}"] = row[column] or 0
    for row in await conn.fetch(
        """select indexrelid::regclass::text as name, pg_stat_get_xact_numscans(indexrelid) as n
             from pg_index where indrelid = 'campaign_messages'::regclass"""
    ):
        found[row["name"]] = row["n"]
    return found


async def what_one_call_reads(conn: asyncpg.Connection, title: str, sql: str, *args: Any) -> bool:
    """Runs `sql` once in a transaction that is rolled back; prints what it read. True when
    campaign_messages was read through indexes only."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        before = await counters(conn)
        start = time.perf_counter()
        await conn.fetchval(sql, *args)
        elapsed = (time.perf_counter() - start) * 1000
        after = await counters(conn)
    finally:
        await transaction.rollback()
    used = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(f"\n-- {title} ({elapsed:.1f} ms, one call, counters of its own transaction)")
    for table in TABLES:
        print(
            f"   {table:24s} seq scans {used.get(table + '.seq_scan', 0):3d} "
            f"(rows read {used.get(table + '.seq_tup_read', 0):7,d})   "
            f"index scans {used.get(table + '.idx_scan', 0):5,d} "
            f"(rows fetched {used.get(table + '.idx_tup_fetch', 0):7,d})"
        )
    for name in sorted(k for k in used if k.startswith("idx_campaign_messages") and used[k]):
        print(f"   {name:48s} {used[name]:5,d} scans")
    indexed = used.get("campaign_messages.seq_scan", 0) == 0
    print("   -> campaign_messages: " + ("index scans only" if indexed else "SEQUENTIAL SCAN"))
    return indexed


@dataclass
class Series:
    """One kind of call, timed round after round beside the others (so a busy machine weighs
    on all of them alike): wall time per call, and the server backend's CPU time."""

    label: str
    note: str
    sql: str
    args_for: Callable[[int], tuple[Any, ...]]
    claims: bool = True  # release what each call claimed, so each call meets the same queue
    conn: asyncpg.Connection | None = None  # its own connection (else the series' shared one)
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: float | None = 0.0

    async def run_once(self, conn: asyncpg.Connection, pid: int, i: int) -> None:
        cpu = backend_cpu_ms(pid)
        start = time.perf_counter()
        answer = await conn.fetchval(self.sql, *self.args_for(i))
        self.wall_ms.append((time.perf_counter() - start) * 1000)
        after = backend_cpu_ms(pid)
        if self.cpu_ms is not None:
            self.cpu_ms = None if cpu is None or after is None else self.cpu_ms + after - cpu
        if self.claims:
            await conn.fetchval(
                "select release_campaign_messages($1)",
                [{"id": m["id"], "lock_token": m["lock_token"]} for m in answer],
            )

    def line(self) -> str:
        cpu = (
            f"CPU {self.cpu_ms / len(self.wall_ms):5.2f} ms"
            if self.cpu_ms is not None and self.wall_ms
            else "CPU    n/a"
        )
        note = f", {self.note}" if self.note else ""
        return (
            f"  {self.label:32s} p50 {pct(self.wall_ms, 50):7.2f} ms   "
            f"p95 {pct(self.wall_ms, 95):7.2f} ms   server {cpu}   "
            f"({len(self.wall_ms)} calls{note})"
        )


def backend_cpu_ms(pid: int) -> float | None:
    """The backend's CPU time so far (user + system), from /proc: ticks of 10 ms, so only a sum
    over many calls means anything. None when the server is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def run_series(
    conn: asyncpg.Connection, series: list[Series], rounds: int, deadline: float
) -> None:
    """`rounds` rounds of one call of each series (fewer if the deadline comes first)."""
    pids = {
        id(c): await c.fetchval("select pg_backend_pid()")
        for c in {conn, *(s.conn for s in series if s.conn)}
    }
    for i in range(rounds):
        if time.monotonic() > deadline and i >= 5:
            break
        for one in series:
            own = one.conn or conn
            await one.run_once(own, pids[id(own)], i)


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


async def edge_case(admin_dsn: str, rows: int, claims: int, deadline: float) -> list[str]:
    dsn = await create_migrated_database(admin_dsn, "claim_cost_edge")
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        t0 = time.perf_counter()
        await load_edge(conn, rows)
        counts = await conn.fetch("select status, count(*) from campaign_messages group by 1")
        print(
            f"\n[edge] loaded {rows:,} messages in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(f"{r['status']} {r['count']:,}" for r in sorted(counts))
        )
        horizon = datetime.now(UTC) - timedelta(hours=1)
        claim_sql = (
            "select get_and_lock_campaign_messages(p_batch_size => 20, p_one_hour_ago => $1)"
        )
        indexed = await what_one_call_reads(
            conn, "edge: claim of 20, section-4 call", claim_sql, horizon
        )
        indexed &= await what_one_call_reads(
            conn,
            "edge: skip of late messages (mark_old_campaign_messages_as_skipped)",
            "select mark_old_campaign_messages_as_skipped($1)",
            horizon,
        )

        claim = Series("claim (indexed)", "target: p50 < 10 ms", claim_sql, lambda _: (horizon,))
        floor = Series("baseline: select 1", "one round trip", "select 1", lambda _: (), False)
        # The same call without the status's count triggers (sql/009_message_counts.sql): a
        # session that fires no ordinary trigger (superuser only, as the embedded server's is).
        untriggered_conn = await asyncpg.connect(dsn)
        await init_connection(untriggered_conn)
        await untriggered_conn.execute("set session_replication_role = replica")
        untriggered = Series(
            "baseline: no count triggers",
            "",
            claim_sql,
            lambda _: (horizon,),
            conn=untriggered_conn,
        )
        share = time.monotonic() + (deadline - time.monotonic()) / 2
        await run_series(conn, [Series("warm-up", "", claim_sql, lambda _: (horizon,))], 10, share)
        await run_series(conn, [claim, floor, untriggered], claims, share)
        await untriggered_conn.close()
        unindexed = Series("baseline: no indexes", "", claim_sql, lambda _: (horizon,))
        transaction = conn.transaction()
        await transaction.start()
        try:
            for index in QUEUE_INDEXES:
                await conn.execute(f"drop index {index}")
            await run_series(conn, [unindexed], max(5, claims // 20), deadline)
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
        await drop_database(admin_dsn, "claim_cost_edge")
    return [
        f"\n[edge] claim of 20 on {rows:,} rows ({'index scans' if indexed else 'SEQ SCAN'}):",
        claim.line(),
        floor.line(),
        untriggered.line(),
        unindexed.line(),
    ]


async def paced_case(admin_dsn: str, rows: int, claims: int, deadline: float) -> list[str]:
    dsn = await create_migrated_database(admin_dsn, "claim_cost_paced")
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        t0 = time.perf_counter()
        await load_paced(conn, rows)
        shape = await conn.fetchrow(
            """select count(*) filter (where r.status = 'running') as running,
                      count(*) filter (where r.status = 'paused') as paused,
                      count(*) filter (where m.scheduled_at <= now()) as due
                 from campaign_messages m join campaign_runs r on r.id = m.run_id"""
        )
        waiting = await conn.fetchval(
            "select count(*) from campaign_inbox_pacing_state"
            " where next_slot_at > now() + interval '3 s'"
        )
        print(
            f"\n[paced] loaded {rows:,} pending messages in {time.perf_counter() - t0:.1f} s: "
            f"{shape['running']:,} in running runs, {shape['paused']:,} in paused runs, "
            f"{shape['due']:,} due; 1,000 inboxes, {waiting:,} inside their gap"
        )
        horizon = datetime.now(UTC) - timedelta(hours=1)
        sizes = [5, 10, 20]
        # As the service calls it (app/store/store.py): named arguments, its settings.
        paced_sql = """select get_and_lock_campaign_messages(
            p_batch_size => $1, p_one_hour_ago => $2, p_lock_timeout_s => 600,
            p_worker => 'bench', p_min_gap_s => $3, p_max_gap_s => $4, p_daily_cap => $5,
            p_lookahead_s => 3)"""
        health_sql = """select get_and_lock_campaign_messages(
            p_batch_size => $1, p_one_hour_ago => $2, p_lock_timeout_s => 600,
            p_worker => 'bench', p_min_gap_s => $3, p_max_gap_s => $4, p_daily_cap => $5,
            p_lookahead_s => 3, p_warmup_days => $6, p_warmup_start_cap => $7,
            p_hourly_cap => $8)"""
        section_4_sql = (
            "select get_and_lock_campaign_messages(p_batch_size => $1, p_one_hour_ago => $2)"
        )

        def settings(values: dict[str, Any]) -> Callable[[int], tuple[Any, ...]]:
            return lambda i: (
                sizes[i % 3],
                horizon,
                values["p_min_gap_s"],
                values["p_max_gap_s"],
                values["p_daily_cap"],
            )

        indexed = await what_one_call_reads(
            conn,
            "paced: claim of 20 as the service calls it",
            paced_sql,
            20,
            horizon,
            *SERVICE_PACING.values(),
        )
        indexed &= await what_one_call_reads(
            conn,
            "paced: claim of 20 with pacing off (every inbox eligible)",
            paced_sql,
            20,
            horizon,
            *PACING_OFF.values(),
        )
        indexed &= await what_one_call_reads(
            conn,
            "paced: skip of late messages (mark_old_campaign_messages_as_skipped)",
            "select mark_old_campaign_messages_as_skipped($1)",
            horizon,
        )

        service = Series(
            "claim, as the service calls it", "target: p50 < 10 ms", paced_sql,
            settings(SERVICE_PACING),
        )  # fmt: skip
        floor = Series("baseline: select 1", "one round trip", "select 1", lambda _: (), False)
        older = Series(
            "baseline: section-4 call", "rows paced, defaults", section_4_sql,
            lambda i: (sizes[i % 3], horizon),
        )  # fmt: skip
        unpaced = Series(
            "baseline: pacing off (0/0/0)", "every inbox eligible", paced_sql,
            settings(PACING_OFF),
        )  # fmt: skip
        health = Series(
            "claim, warm-up and hourly cap on", "14 days from 20, 30 an hour", health_sql,
            lambda i: (*settings(SERVICE_PACING)(i), *HEALTH_ON.values()),
        )  # fmt: skip
        lead_local = Series(
            "claim, lead-local hours on", "LEAD_LOCAL_WINDOW=true",
            paced_sql.replace("=> 3)", "=> 3, p_lead_local_window => true)"),
            settings(SERVICE_PACING),
        )  # fmt: skip
        await run_series(
            conn, [Series("warm-up", "", paced_sql, settings(SERVICE_PACING))], 10, deadline
        )
        await run_series(
            conn, [service, floor, older, unpaced, health, lead_local], claims, deadline
        )
    finally:
        await conn.close()
        await drop_database(admin_dsn, "claim_cost_paced")
    return [
        f"\n[paced] claim of 5/10/20 on {rows:,} pending, 1,000 inboxes, most inside their gap"
        f" ({'index scans' if indexed else 'SEQ SCAN'}):",
        service.line(),
        floor.line(),
        older.line(),
        unpaced.line(),
        health.line(),
        lead_local.line(),
    ]


async def main(case: str, rows: int, claims: int, max_seconds: float) -> None:
    started = time.monotonic()
    report: list[str] = []
    print(f"load average at the start {load_average()} on {os.cpu_count()} cores")
    with running_postgres() as server:
        cases = ["edge", "paced"] if case == "both" else [case]
        for k, name in enumerate(cases):
            # Each case's timing stops at its share of what is left of the budget.
            deadline = started + max_seconds * (k + 1) / len(cases)
            runner = edge_case if name == "edge" else paced_case
            report += await runner(server.dsn, rows, claims, deadline)
    print("\n".join(report))
    print(
        f"\n(total {time.monotonic() - started:.0f} s; load average at the end "
        f"{load_average()} on {os.cpu_count()} cores: wall times grow with it, server CPU does not)"
    )


async def bounded(case: str, rows: int, claims: int, max_seconds: float) -> None:
    try:
        await asyncio.wait_for(
            main(case, rows, claims, max_seconds), max_seconds + LOAD_ALLOWANCE_S
        )
    except TimeoutError:
        print(f"\nstopped: over the limit of {max_seconds + LOAD_ALLOWANCE_S:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", choices=["edge", "paced", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=180)
    options = parser.parse_args()
    asyncio.run(bounded(options.case, options.rows, options.claims, options.max_seconds))
