"""Pacing as a real scheduler drives it: one call per period, never overlapping (bench.pacing
runs it beside its overlapping calls; `--case cadence` runs it alone).

The production defaults are one call a minute, a 50 s budget, gaps of 20-60 s and a claim
look-ahead of 3 s. This case runs them at a tenth (SCALE), which keeps every ratio that
decides the rate: the budget and the dead time between calls against the gap, and the
look-ahead against the gap (the service's PACING_LOOKAHEAD_S, read at each claim, is scaled
with them: the service runs in this process for that, on loopback). The LLM answers in a
lognormal median of 150 ms, about a tenth of a real one. Inboxes with a backlog: most at
the settings' gap, one paced by its own campaign_inbox_pacing row with a gap longer than the
settings' and than the period (the two cases the old cadence ended calls early on).

Printed per inbox, from the send stub's first parts: sent while calls kept coming, against
the ideal (window / mean gap) and against the gaps the database actually drew (its own probe
in the bench database; target >= 0.9, checked on the latter: over 20 periods an inbox draws
only ~30 gaps, whose mean alone moves its count by ~6%), and the smallest gap; then the calls:
how many claimed nothing, their durations.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import defaultdict
from itertools import pairwise

import asyncpg
import httpx

import app.processing.cadence as cadence_rules
from app.main import create_app
from app.sandbox.database import create_migrated_database
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import Latency
from bench.harness import CRON_SECRET, Rig

SCALE = 0.1
PERIOD_S, BUDGET_S = 60 * SCALE, 50 * SCALE
MIN_GAP_S, MAX_GAP_S = 20 * SCALE, 60 * SCALE
OWN_GAP_S = (80 * SCALE, 120 * SCALE)  # one inbox's own row: longer than the period
LOOKAHEAD_S = 3.0 * SCALE
INBOXES = 3  # at the settings' gap, plus the one with its own row: few, so that every inbox
# is inside its gap when a call starts now and then (the old cadence then ended the call)
BACKLOG = 60  # more than the run can send at the shortest gap
RATE_TARGET = 0.9

# The bench's own probe in its own database: each slot taken and the next one it set, so the
# rate can be read against the gaps actually drawn too (a 90 s run draws ~22 gaps an inbox).
PROBE = """
create table bench_slots (inbox_id uuid, taken_at timestamptz, next_slot_at timestamptz);
create function bench_log_slot() returns trigger language plpgsql as $$
begin
  if new.last_slot_at is distinct from old.last_slot_at then
    insert into bench_slots values (new.inbox_id, new.last_slot_at, new.next_slot_at);
  end if;
  return new;
end $$;
create trigger bench_log_slot after update on {table}
  for each row execute function bench_log_slot();
"""


async def seed(r: Rig) -> tuple[str, dict[uuid.UUID, tuple[str, float, float]]]:
    dsn = await create_migrated_database(r.admin_dsn, f"bench_cadence_{uuid.uuid4().hex[:8]}")
    inboxes: dict[uuid.UUID, tuple[str, float, float]] = {}
    conn = await asyncpg.connect(dsn)
    try:
        state = await conn.fetchval("select to_regclass('campaign_inbox_pacing_state')")
        await conn.execute(PROBE.format(table=state or "campaign_inbox_pacing"))
        for n in range(INBOXES):
            seeded = await seed_campaign(conn, leads=BACKLOG)
            inboxes[seeded.inbox_id] = (f"inbox {n + 1:02d}", MIN_GAP_S, MAX_GAP_S)
        own = await seed_campaign(conn, leads=BACKLOG)
        await conn.execute(
            "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) "
            "values ($1, $2, $3)",
            own.inbox_id,
            *OWN_GAP_S,
        )
        inboxes[own.inbox_id] = ("own row", *OWN_GAP_S)
    finally:
        await conn.close()
    return dsn, inboxes


async def first_parts(r: Rig, dsn: str) -> dict[uuid.UUID, list[float]]:
    conn = await asyncpg.connect(dsn)
    try:
        inbox_of = {
            str(row["id"]): row["inbox_id"]
            for row in await conn.fetch("select id, inbox_id from conversations")
        }
    finally:
        await conn.close()
    sent: dict[uuid.UUID, list[float]] = defaultdict(list)
    for delivery in r.send.deliveries:
        if delivery["idempotency_key"].endswith(":0"):
            sent[inbox_of[delivery["conversation_id"]]].append(float(delivery["at"]))
    for times in sent.values():
        times.sort()
    return sent


async def drawn_gaps(dsn: str) -> dict[uuid.UUID, float]:
    """Each inbox's mean drawn gap (the database's draw, + its 50 ms)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """select inbox_id, avg(extract(epoch from next_slot_at - taken_at)) as gap
                 from bench_slots group by inbox_id"""
        )
    finally:
        await conn.close()
    return {row["inbox_id"]: float(row["gap"]) for row in rows}


async def cadence_run(r: Rig, seconds: float) -> bool:
    dsn, inboxes = await seed(r)
    r.openrouter.reset()
    r.send.reset()
    r.openrouter.latency = Latency(median_ms=150, sigma=0.6, seed=5)
    r.send.latency = Latency(median_ms=20, sigma=0.3, seed=6)
    settings = r.settings(
        dsn,
        inbox_min_gap_s=MIN_GAP_S,
        inbox_max_gap_s=MAX_GAP_S,
        inbox_daily_cap=0,
        max_concurrency=25,
        batch_size=20,
        time_budget_s=BUDGET_S,
    )
    calls = int(seconds // PERIOD_S)
    print(
        f"\nSCHEDULER CADENCE: the defaults at a scale of {SCALE:g}: one call every "
        f"{PERIOD_S:g} s, never overlapping, {BUDGET_S:g} s budget, INBOX_MIN_GAP_S="
        f"{MIN_GAP_S:g} INBOX_MAX_GAP_S={MAX_GAP_S:g}, look-ahead {LOOKAHEAD_S:g} s; "
        f"{INBOXES} inboxes at the settings' gap and one at {OWN_GAP_S[0]:g}-{OWN_GAP_S[1]:g} s "
        f"(its own row), {BACKLOG} due each; {calls} calls\n"
    )
    answers: list[dict[str, object]] = []
    saved_lookahead = cadence_rules.PACING_LOOKAHEAD_S
    cadence_rules.PACING_LOOKAHEAD_S = LOOKAHEAD_S
    try:
        with LoopbackServer(create_app(settings), lifespan=True) as server:
            async with httpx.AsyncClient(timeout=BUDGET_S + 60) as http:
                started = time.time()
                for k in range(calls):
                    await asyncio.sleep(max(started + k * PERIOD_S - time.time(), 0))
                    response = await http.post(
                        server.url + "/process-queue",
                        headers={"Authorization": f"Bearer {CRON_SECRET}"},
                    )
                    answers.append(response.json())
                stopped = started + calls * PERIOD_S
    finally:
        cadence_rules.PACING_LOOKAHEAD_S = saved_lookahead

    window = stopped - started
    sent = await first_parts(r, dsn)
    ok = True
    drawn = await drawn_gaps(dsn)
    print(
        f"{'inbox':<9} {'gap':<9} {'sent':>4}  {'min gap':>7}  {'ideal':>5}  {'ratio':>5}  "
        f"{'drawn':>6}  {'vs drawn':>8}  check"
    )
    ratios, against_drawn, sent_total, ideal_total = [], [], 0, 0.0
    for inbox_id, (label, low, high) in inboxes.items():
        times = [t for t in sent.get(inbox_id, []) if t <= stopped]
        smallest = min((b - a for a, b in pairwise(times)), default=float("nan"))
        ideal = window / ((low + high) / 2)
        ratio = len(times) / ideal
        ratios.append(ratio)
        mean_drawn = drawn.get(inbox_id, float("nan"))
        against_drawn.append(len(times) / (window / mean_drawn))
        sent_total, ideal_total = sent_total + len(times), ideal_total + ideal
        checks = []
        if against_drawn[-1] < RATE_TARGET:  # the service's share; the draw's luck is not
            checks.append(f"RATE BELOW {RATE_TARGET}")
        if smallest < low:
            checks.append(f"GAP VIOLATED ({smallest:.3f} < {low:g})")
        ok = ok and not checks
        print(
            f"{label:<9} {f'{low:g}-{high:g} s':<9} {len(times):>4}  {smallest:>6.3f}s  "
            f"{ideal:>5.1f}  {ratio:>5.2f}  {mean_drawn:>5.2f}s  {against_drawn[-1]:>8.2f}  "
            f"{'; '.join(checks) or 'ok'}"
        )
    durations = [int(str(a.get("duration_ms", 0))) / 1000 for a in answers]
    empty = sum(1 for a in answers if a.get("claimed") == 0)
    print(
        f"\nwindow {window:.1f} s ({calls} periods); ratio = first parts sent in the window / "
        f"(window / mean gap), target >= {RATE_TARGET}: min {min(ratios):.2f}, median "
        f"{statistics.median(ratios):.2f}, all inboxes together {sent_total / ideal_total:.2f} "
        f"(one inbox's count over ~{ideal_total / len(ratios):.0f} random gaps varies by ~6%);\n"
        f"vs drawn = against the gaps the database drew (window / mean drawn gap: the draw's "
        f"luck taken out, what the service kept of the pace; checked): min "
        f"{min(against_drawn):.2f}, median {statistics.median(against_drawn):.2f};\n"
        f"calls that claimed nothing: {empty} of {calls}; "
        f"call duration min {min(durations):.1f} s, median {statistics.median(durations):.1f} s, "
        f"max {max(durations):.1f} s (budget {BUDGET_S:g} s)"
    )
    return ok
