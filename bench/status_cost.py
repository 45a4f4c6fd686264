"""Status cost at 1M campaign_messages: campaign_queue_status's plans and latency.

Run: uv run python -m bench.status_cost [--rows 1000000] [--calls 100] [--scenario all]

Scenarios (each a fresh database of ROWS messages):
- history: 200 runs (180 running, 15 paused, 5 completed) on 100 inboxes, half of them paced;
  about 89% sent (0.3% of them in the last hour), 5% pending (some due; a tenth of them, about
  5,000, waiting for a retry), 3% skipped, 2% failed (half in the last 24 h, with ids and
  numbers in their reasons), 0.1% in flight; a week of calls from 50 instances and 1,000
  circuit openings (their tables' bound). A service that has run for a while: the status must
  not grow with the history.
- backlog: every message pending (the claim benchmark's worst case), 200 runs on 100
  inboxes, 30% of them paused, due from 30 minutes ago to 90 minutes on. The backlog is read
  from campaign_message_counts (sql/009_message_counts.sql), not counted row by row: the
  status must not grow with it either.
- many-runs: the same backlog over 2,000 runs on 1,000 inboxes. The status's cost is per run
  and inbox shown (their rows of counts, two index probes, their JSON): this is where it
  costs most.

Printed for each:
- EXPLAIN (ANALYZE, BUFFERS) of the function's own statements. Postgres cannot EXPLAIN inside
  a plpgsql function (no auto_explain in the embedded server), so the statements are taken
  from pg_proc's text of campaign_queue_status and run alone, its variables bound as
  parameters: the plans are those of the code that ships, not of a copy;
- the table and index scans the real function made over the timed calls (pg_stat counters):
  no sequential scan of campaign_messages;
- p50/p95 of `select campaign_queue_status()` (a page of 50 runs, the default), of the
  largest page (500) and of one run, beside the status before it paged (every active run
  listed: sql/020_status.sql at commit UNPAGED_COMMIT, installed under another name) in the
  same database;
- baselines in the same run: one `select 1` round trip; the same figures computed naively
  (count(*) grouped by run and status, sends and failures by sequential scan); and the
  function with the status indexes dropped (in a rolled-back transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg

from app.sandbox.database import create_migrated_database, running_postgres
from app.store.postgres import init_connection

STATUS_INDEXES = [
    "idx_campaign_messages_sent_at",
    "idx_campaign_messages_failed_at",
    "idx_campaign_messages_failed_by_run",
    "idx_campaign_messages_retrying",  # sql/030 (absent before it: skipped)
    "idx_campaign_runs_active",
    "idx_campaign_message_counts_run",
]
# What failed messages say: the queue's own texts (they name no ids; some carry a number),
# and one in fifty naming a message id (say, a text written by the product): those are all
# different before grouping.
REASONS = [
    *["send: HTTP 400"] * 10,
    *["openrouter: HTTP 500"] * 10,
    *["openrouter: HTTP 503"] * 5,
    *["openrouter: input flagged by moderation (HTTP 403; harassment)"] * 5,
    *["generated message too short: {n} characters (minimum 10)"] * 5,
    *["lease expired after 3 retries: the worker processing it stopped each time"] * 5,
    *["send: timed out (ReadTimeout)"] * 5,
    *["database error: log_campaign_steps failed: UniqueViolationError (SQLSTATE 23505)"] * 4,
    "message {id} rejected by the product after {n} s",
]
RETRYING = "cq_status_retrying"
PAGE = 50  # campaign_queue_status's default page
MAX = 500  # its largest
# The helpers the paged status calls (sql/050_status_pages.sql), explained with the whole
# set of active runs (the page's own runs are in the status statement's plan).
PAGE_HELPERS = {"cq_status_page": "p_limit 50", "cq_status_queue": "every active run"}
# The status before it paged (every running and paused run listed), measured in the same run
# beside today's: sql/020_status.sql as it was at this commit, installed under another name.
UNPAGED_COMMIT = "f5f63fe"
UNPAGED = "cq_bench_status_unpaged"
ROOT = Path(__file__).resolve().parent.parent
NAIVE_SQL = [
    "select run_id, status, count(*) from campaign_messages group by 1, 2",
    """select count(*) filter (where sent_at >= now() - interval '5 minutes'),
              count(*) from campaign_messages where sent_at >= now() - interval '60 minutes'""",
    """select cq_failure_reason(error_message), count(*) from campaign_messages
        where status = 'failed' and updated_at >= now() - interval '24 hours'
        group by 1 order by 2 desc limit 20""",
]


async def load_history(conn: asyncpg.Connection, rows: int) -> None:
    await conn.execute("select setseed(0.42)")
    await conn.execute(
        """insert into inboxes (id, workspace_id, name)
           select gen_random_uuid(), gen_random_uuid(), 'bench ' || g
             from generate_series(1, 100) g"""
    )
    await conn.execute(
        "insert into campaign_configs (workspace_id, inbox_id) select workspace_id, id from inboxes"
    )
    await conn.execute(
        """insert into campaign_runs (config_id, status, leads_total, started_at)
           select (select id from campaign_configs order by id offset (g % 100) limit 1),
                  case when g % 40 = 0 then 'completed' when g % 13 = 0 then 'paused'
                       else 'running' end,
                  $1::int / 200, now() - make_interval(hours => g)
             from generate_series(1, 200) g""",
        rows,
    )
    await conn.execute(
        """
        with r as (select array_agg(id order by id) as ids from campaign_runs)
        insert into campaign_messages (run_id, lead_id, phone_number, status, scheduled_at,
                                       sent_at, updated_at, locked_at, error_message, retry_count,
                                       ai_tokens_used, ai_cost_usd)
        select r.ids[1 + (g / 100) % cardinality(r.ids)], gen_random_uuid(),
               '+5511' || lpad(g::text, 9, '0'), s.status,
               case when s.status = 'pending' and x.u < 0.15 then now() - x.v * interval '1 hour'
                    when s.status = 'pending' then now() + x.v * interval '1 day'
                    else now() - interval '3 days' end,
               case when s.status = 'sent' and x.u < 0.0033 then now() - x.v * interval '1 hour'
                    when s.status = 'sent' then now() - interval '2 days' - x.v * interval '5 days'
                    end,
               case when s.status = 'failed' and x.u < 0.5 then now() - x.v * interval '23 hours'
                    else now() - interval '3 days' end,
               case when s.status = 'queued' then now() end,
               case when s.status = 'failed' or (s.status = 'pending' and x.kind < 0.006)
                    then replace(replace(($2::text[])[1 + floor(x.w * cardinality($2::text[]))],
                                         '{id}', gen_random_uuid()::text),
                                 '{n}', (1 + floor(x.v * 97))::text)
                    when s.status = 'skipped' then 'lead not found' end,
               case when s.status = 'failed' then 3
                    when s.status = 'pending' and x.kind < 0.006 then 1 + floor(x.v * 3)::int
                    else 0 end,
               case when s.status = 'sent' then 120 end,
               case when s.status = 'sent' then 0.000042 end
          from r, generate_series(1, $1) g
          cross join lateral (select random() + 0 * g as u, random() + 0 * g as v,
                                     random() + 0 * g as w, random() + 0 * g as kind) x
          cross join lateral (select case
                   when x.kind < 0.001 then 'queued'
                   when x.kind < 0.051 then 'pending'
                   when x.kind < 0.081 then 'skipped'
                   when x.kind < 0.101 then 'failed'
                   else 'sent' end as status) s
        """,
        rows,
        REASONS,
    )
    await conn.execute(
        """update campaign_runs r
              set leads_processed = c.sent, leads_failed = c.failed,
                  metrics = jsonb_build_object('messages_sent', c.sent,
                                               'ai_tokens_used', c.sent * 120,
                                               'ai_cost_usd', c.sent * 0.000042)
             from (select run_id, count(*) filter (where status = 'sent') as sent,
                          count(*) filter (where status = 'failed') as failed
                     from campaign_messages group by run_id) c
            where c.run_id = r.id"""
    )
    if await conn.fetchval("select to_regclass('campaign_queue_circuit_openings')"):
        await load_calls(conn)
    await conn.execute(
        "insert into campaign_inbox_pacing (inbox_id) select id from inboxes order by id limit 50"
    )
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, last_slot_at,
                                                    sent_day, sent_today, paced, day_timezone)
           select id, now() + (row_number() over (order by id) % 60) * interval '1 s', now(),
                  (now() at time zone 'America/Sao_Paulo')::date,
                  (row_number() over (order by id) * 7) % 300, true, 'America/Sao_Paulo'
             from inboxes order by id limit 50"""
    )


async def load_calls(conn: asyncpg.Connection) -> None:
    """A week of calls from 50 instances, the circuit opening in one call of 20: the tables
    at their bound (sql/030_calls_and_circuit.sql keeps 1,000 openings, 7 days)."""
    await conn.execute(
        """insert into campaign_queue_calls (worker, called_at, claimed, processed, failed,
                                             retried, circuit_open, answered_502)
           select 'bench-' || g || ':1', now() - g * interval '1 minute', 20, 15, 5, 5, null,
                  false
             from generate_series(1, 50) g"""
    )
    await conn.execute(
        """insert into campaign_queue_circuit_openings (opened_at, worker, reason, answered_502)
           select now() - g * interval '10 minutes', 'bench-' || g % 50 || ':1',
                  '5 outbound failures in a row, last: openrouter: HTTP 500', g % 7 = 0
             from generate_series(1, 1000) g"""
    )


async def load_backlog(conn: asyncpg.Connection, rows: int, runs: int = 200) -> None:
    inboxes = runs // 2
    await conn.execute(
        """insert into inboxes (id, workspace_id, name)
           select gen_random_uuid(), gen_random_uuid(), 'bench ' || g
             from generate_series(1, $1) g""",
        inboxes,
    )
    await conn.execute(
        "insert into campaign_configs (workspace_id, inbox_id) select workspace_id, id from inboxes"
    )
    await conn.execute(
        """with c as (select array_agg(id order by id) as ids from campaign_configs)
           insert into campaign_runs (config_id, status, leads_total)
           select c.ids[1 + g % $2], case when g % 10 < 3 then 'paused' else 'running' end,
                  $1::int / $3
             from c, generate_series(1, $3) g""",
        rows,
        inboxes,
        runs,
    )
    await conn.execute(
        """with r as (select array_agg(id order by id) as ids from campaign_runs)
           insert into campaign_messages (run_id, lead_id, phone_number, scheduled_at)
           select r.ids[1 + g % $2], gen_random_uuid(), '+5511' || lpad(g::text, 9, '0'),
                  now() - interval '30 minutes' + (g % 7200) * interval '1 s'
             from r, generate_series(1, $1) g""",
        rows,
        runs,
    )
    await conn.execute("insert into campaign_inbox_pacing (inbox_id) select id from inboxes")
    await conn.execute(
        """insert into campaign_inbox_pacing_state (inbox_id, next_slot_at, sent_day, sent_today,
                                                    paced, day_timezone)
           select id, now() + interval '20 s', (now() at time zone 'UTC')::date, 100, true,
                  'UTC'
             from inboxes"""
    )


async def load_many_runs(conn: asyncpg.Connection, rows: int) -> None:
    await load_backlog(conn, rows, runs=2000)


LOADERS = {"history": load_history, "backlog": load_backlog, "many-runs": load_many_runs}


def function_statements(source: str) -> dict[str, str]:
    """The SQL statements of campaign_queue_status's body, its variables as $n parameters.

    $1 v_shown, $2 v_counted (uuid[]), $3 p_run_id (uuid), $4 p_min_gap_s, $5 p_max_gap_s
    (real), $6 p_daily_cap (int), $7 v_texts (text[]), $8 v_counts (bigint[]), $9 v_retrying
    (jsonb, when the function has it), $10 v_active (uuid[]), $11 v_runs_total (int); v_now is
    now(), v_setting_tz the default zone, the warm-up's and hourly cap's settings null (off).
    """
    found = {
        "failures": re.search(r"select array_agg\(m\.error_message\).*?;", source, re.S),
        "failures of one run": re.search(
            r"(select array_agg\(m\.error_message\)(?:(?!select array_agg).)*?"
            r"m\.run_id = p_run_id.*?;)",
            source,
            re.S,
        ),
        "status": re.search(r"  with recent as materialized.*?into v_result;", source, re.S),
    }
    names = {
        "v_now": "now()",
        "v_minute": "date_bin('1 minute', now(), timestamptz '2000-01-01 00:00:00+00')",
        "v_setting_tz": "'America/Sao_Paulo'",  # INBOX_TIMEZONE's default: not passed here
        "v_shown": "$1::uuid[]",
        "v_active": "$10::uuid[]",
        "v_runs_total": "$11::int",
        "v_counted": "$2::uuid[]",
        "p_run_id": "$3::uuid",
        "p_min_gap_s": "$4::real",
        "p_max_gap_s": "$5::real",
        "p_daily_cap": "$6::int",
        "v_texts": "$7::text[]",
        "v_counts": "$8::bigint[]",
        "v_retrying": "$9::jsonb",
        # Number health's settings (warm-up, hourly cap): their defaults, off
        "p_warmup_days": "null::int",
        "p_warmup_start_cap": "null::int",
        "p_hourly_cap": "null::int",
    }
    statements = {}
    for key, match in found.items():
        assert match is not None, key
        sql = re.sub(r"\s+into v_\w+(,\s*v_\w+)*", "", match.group(0)).rstrip(";")
        for name, value in names.items():
            sql = re.sub(rf"\b{name}\b", value, sql)
        statements[key] = sql
    return statements


def bound(sql: str, values: list[Any]) -> tuple[str, list[Any]]:
    """The statement with the parameters it uses numbered $1, $2, ... and their values."""
    used = sorted({int(n) for n in re.findall(r"\$(\d+)\b", sql)})
    numbers = {old: new for new, old in enumerate(used, start=1)}
    renumbered = re.sub(r"\$(\d+)\b", lambda m: f"${numbers[int(m.group(1))]}", sql)
    return renumbered, [values[n - 1] for n in used]


async def explain(conn: asyncpg.Connection, title: str, sql: str, *args: object) -> str:
    rows = await conn.fetch(f"explain (analyze, buffers, costs off) {sql}", *args)
    plan = "\n".join(r[0] for r in rows)
    # The runs' ids bound as an array would fill screens: shown as {N ids}.
    plan = re.sub(
        r"'\{([0-9a-f-]{36},?)+\}'", lambda m: f"'{{{m.group(0).count(',') + 1} ids}}'", plan
    )
    print(f"\n-- {title}\n{plan}")
    return plan


async def stat_snapshot(conn: asyncpg.Connection) -> dict[str, int]:
    await conn.execute("select pg_stat_force_next_flush()")
    await asyncio.sleep(0.05)
    await conn.execute("select pg_stat_clear_snapshot()")
    rows = await conn.fetch(
        """select 'seq ' || relname as name, seq_scan as n from pg_stat_user_tables
            where relname in ('campaign_messages', 'campaign_runs', 'campaign_configs',
                              'campaign_inbox_pacing', 'campaign_inbox_pacing_state')
           union all
           select 'idx ' || indexrelname, idx_scan from pg_stat_user_indexes
            where relname in ('campaign_messages', 'campaign_runs')"""
    )
    return {r["name"]: r["n"] or 0 for r in rows}


def unpaged_source() -> str | None:
    """sql/020_status.sql before the status paged, its function renamed (None when git or
    the commit is not there). Its helpers (counts, retrying, circuit, last call) are today's:
    the same tables and answers."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{UNPAGED_COMMIT}:sql/020_status.sql"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        return None
    return shown.stdout.replace("function campaign_queue_status(", f"function {UNPAGED}(")


async def install_unpaged(conn: asyncpg.Connection) -> bool:
    source = unpaged_source()
    if source is not None:
        await conn.execute(source)
    return source is not None


async def time_calls(conn: asyncpg.Connection, calls: int, sql: str, *args: object) -> list[float]:
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        await conn.fetchval(sql, *args)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


async def time_alternately(
    conn: asyncpg.Connection, calls: int, first: str, second: str
) -> tuple[list[float], list[float]]:
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for sql, into in ((first, timings[0]), (second, timings[1])):
            start = time.perf_counter()
            await conn.fetchval(sql)
            into.append((time.perf_counter() - start) * 1000)
    return timings


async def time_naive(conn: asyncpg.Connection, calls: int) -> list[float]:
    """The same figures the plain way: a full count(*) by run and status, and sequential
    scans for the sends and failures (the status indexes hidden from the planner)."""
    timings = []
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("set local enable_indexscan = off")
        await conn.execute("set local enable_indexonlyscan = off")
        await conn.execute("set local enable_bitmapscan = off")
        for _ in range(calls):
            start = time.perf_counter()
            for sql in NAIVE_SQL:
                await conn.fetch(sql)
            timings.append((time.perf_counter() - start) * 1000)
    finally:
        await transaction.rollback()
    return timings


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def line(label: str, values: list[float], note: str) -> str:
    return f"  {label:<28} p50 {pct(values, 50):8.2f} ms   p95 {pct(values, 95):8.2f} ms   {note}"


async def scenario(server_dsn: str, name: str, rows: int, calls: int) -> list[str]:
    dsn = await create_migrated_database(server_dsn, f"status_cost_{name}")
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        started = time.perf_counter()
        await LOADERS[name](conn, rows)
        # Steady state: autovacuum keeps the visibility map of old pages set (index-only scans
        # then skip the heap); a vacuum right after the bulk load may leave it partly unset.
        # The first fold of the load's counts (the service's next call, or the first status
        # call, does it): a one-off cost, then each fold takes what changed since the last.
        fold_started = time.perf_counter()
        folded = await conn.fetchval("select cq_fold_message_counts()")
        fold_ms = (time.perf_counter() - fold_started) * 1000
        await conn.execute("vacuum (freeze, analyze)")
        counts = await conn.fetch(
            "select status, count(*) from campaign_messages group by 1 order by 1"
        )
        print(
            f"\n==== {name}: loaded {rows:,} messages in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{r['status']} {r['count']:,}" for r in counts)
        )
        count_rows = await conn.fetchval("select count(*) from campaign_message_counts")
        print(
            f"   first fold of the counts: {folded:,} change rows in {fold_ms:.0f} ms;"
            f" {count_rows:,} count rows after it"
        )

        source = await conn.fetchval(
            "select prosrc from pg_proc where proname = 'campaign_queue_status'"
        )
        shown, active, total = await conn.fetchrow(
            "select shown, active, total from cq_status_page($1, now())", PAGE
        )
        counted = await conn.fetchval("select cq_status_counted($1)", shown)
        big_run = await conn.fetchval(
            """select run_id from campaign_messages where status = 'pending'
                group by run_id order by count(*) desc limit 1"""
        )
        statements = function_statements(source)
        texts, counts = await conn.fetchrow(statements["failures"])
        retrying = None
        if await conn.fetchval("select to_regproc($1)", RETRYING):
            retrying = await conn.fetchval(f"select {RETRYING}($1)", active)
        values: list[Any] = [shown, counted, None, None, None, None, texts, counts, retrying]
        values += [active, total]
        plans = []
        for helper_name, sql_args in PAGE_HELPERS.items():
            helper_source = await conn.fetchval(
                "select prosrc from pg_proc where proname = $1", helper_name
            )
            sql = re.sub(r"\bp_runs\b", "$1::uuid[]", helper_source)
            sql = re.sub(r"\bp_limit\b", str(PAGE), re.sub(r"\bp_now\b", "now()", sql))
            args = [active] if "$1" in sql else []
            plans.append(
                await explain(conn, f"{helper_name} ({sql_args})", sql.strip().rstrip(";"), *args)
            )
        for title in ("failures", "status"):
            sql, args = bound(statements[title], values)
            plans.append(await explain(conn, title, sql, *args))
        sql, args = bound(statements["failures of one run"], [None, None, big_run])
        plans.append(await explain(conn, "failures of one run", sql, *args))
        helper = await conn.fetchval("select prosrc from pg_proc where proname = $1", RETRYING)
        if helper is not None:  # sql/030: the messages waiting for a retry
            sql = re.sub(r"\bp_runs\b", "$1::uuid[]", helper).strip().rstrip(";")
            plans.append(await explain(conn, "retrying (all runs)", sql, active))
            plans.append(await explain(conn, "retrying (one run)", sql, [big_run]))
        seq = any("Seq Scan on campaign_messages" in plan for plan in plans)
        print(f"   -> {'SEQUENTIAL SCAN of campaign_messages' if seq else 'index scans only'}")

        await time_calls(conn, 5, "select campaign_queue_status()")  # warm-up
        before = await stat_snapshot(conn)
        big_page = await time_calls(conn, calls, f"select campaign_queue_status(p_limit => {MAX})")
        one_run = await time_calls(conn, calls, "select campaign_queue_status($1)", big_run)
        after = await stat_snapshot(conn)
        deltas = {k: after.get(k, 0) - v for k, v in before.items() if after.get(k, 0) - v}
        print(f"\n-- scans made by {2 * calls} calls of the function (pg_stat counters)")
        for key in sorted(deltas):
            print(f"   {key:<50} {deltas[key]:>7,}")
        if not deltas.get("seq campaign_messages"):
            print("   (no sequential scan of campaign_messages)")

        floor = await time_calls(conn, calls, "select 1")
        unpaged = None
        if await install_unpaged(conn):
            await time_calls(conn, 5, f"select {UNPAGED}()")
            # Alternately, call by call: a busy machine slows both alike.
            all_runs, unpaged = await time_alternately(
                conn, calls, "select campaign_queue_status()", f"select {UNPAGED}()"
            )
        else:
            all_runs = await time_calls(conn, calls, "select campaign_queue_status()")
        naive = await time_naive(conn, max(3, calls // 20))
        transaction = conn.transaction()
        await transaction.start()
        try:
            for index in STATUS_INDEXES:
                await conn.execute(f"drop index if exists {index}")
            unindexed = await time_calls(
                conn, max(3, calls // 20), "select campaign_queue_status()"
            )
        finally:
            await transaction.rollback()

        size = await conn.fetchval("select octet_length(campaign_queue_status()::text)")
        old_size = await conn.fetchval(f"select octet_length({UNPAGED}()::text)") if unpaged else 0
        return [
            f"{name} ({rows:,} messages; {total} active runs, {len(shown)} shown; answer"
            f" {size / 1024:.0f} KiB, every run listed {old_size / 1024:.0f} KiB):",
            line(f"status, a page of {PAGE}", all_runs, "(target: < 20 ms)"),
            line(f"status, a page of {MAX}", big_page, "(the largest page)"),
            *(
                [line("before: every run listed", unpaged, f"(sql/020 at {UNPAGED_COMMIT})")]
                if unpaged
                else ["  before: every run listed     (not measured: git or the commit missing)"]
            ),
            line("status, one run", one_run, "(its inbox's other running runs counted too)"),
            line("baseline: select 1", floor, "(one round trip, the floor)"),
            line(
                "baseline: naive counts", naive, f"(full count(*) by run and status, {len(naive)})"
            ),
            line(
                "baseline: no status indexes", unindexed, f"(same function, {len(unindexed)} calls)"
            ),
        ]
    finally:
        await conn.close()


async def main(rows: int, calls: int, which: str) -> None:
    names = list(LOADERS) if which == "all" else [which]
    summary: list[str] = []
    with running_postgres() as server:
        for name in names:
            summary += await scenario(server.dsn, name, rows, calls)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n(load average over 1, 5, 15 min at the end: {load} on {os.cpu_count()} cores)")
    print("\n".join(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--scenario", choices=[*LOADERS, "all"], default="all")
    options = parser.parse_args()
    asyncio.run(main(options.rows, options.calls, options.scenario))
