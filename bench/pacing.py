"""Pacing per inbox across service processes (docs/architecture.md, "Pacing"), against no pacing.

Run: uv run python -m bench.pacing [--seconds 60] [--processes 3] [--min-gap 1 --max-gap 2]
                                   [--case both] [--cadence-seconds 120]

Three service processes (uvicorn, own pool each) on one database; 20 inboxes, each with a
backlog: 17 at the settings' gap (INBOX_MIN_GAP_S=1, INBOX_MAX_GAP_S=2), one with a daily cap
of 5 and one with a 3-4 s gap (both through their campaign_inbox_pacing row), and one shared
by two runs (a large one created first, a small one after). A scheduler calls every process
every 2 s with a 4 s time budget, the processes a third of a period apart, so calls overlap
on one process and across processes, for `--seconds`; then it stops calling and waits for
the calls in flight.

Printed per inbox, from the send stub's deliveries of part 0 grouped by the conversation's
inbox: messages sent; the smallest gap between two first parts (must be >= min gap); sent
while calls kept coming against the ideal (window / mean gap, target >= 0.9); the cap; for
the shared inbox the runs in the order served; and parts delivered twice (repeated
Idempotency-Keys, must be zero). Baseline, in the same run: the same workload and calls with
pacing off (gaps 0, no cap, no rows), showing the burst that pacing prevents.
Everything on 127.0.0.1; it stops by itself (the whole run is bounded by --timeout).

Then the scheduler-cadence case (bench/pacing_cadence.py): one call per period, never
overlapping, at a tenth of the production defaults; `--case overlapping|cadence|both`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

import asyncpg
import httpx

from app.sandbox.database import create_migrated_database
from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import ServiceProcess
from app.sandbox.stubs import Latency
from bench.harness import CRON_SECRET, Rig, rig

INBOXES = 20
BACKLOG = 90  # messages per inbox: more than 60 s can send at a 1 s gap
SHARED_LARGE, SHARED_SMALL = 120, 8
MIN_GAP_S, MAX_GAP_S = 1.0, 2.0
CAP = 5
SLOW_GAP_S = (3.0, 4.0)
PERIOD_S, BUDGET_S = 2.0, 4
CONCURRENCY, BATCH = 25, 20
RATE_TARGET = 0.9


# The bench's own probes in its own database (sql/ is untouched): each slot taken (when, the
# gap drawn, when the slot had opened) and each claim of a pending message (when).
INSTRUMENT = """
create table bench_slots (inbox_id uuid, message_id uuid, taken_at timestamptz,
                          next_slot_at timestamptz, opened_at timestamptz);
create table bench_claims (message_id uuid, claimed_at timestamptz);
create function bench_log_slot() returns trigger language plpgsql as $$
begin
  if new.last_slot_at is distinct from old.last_slot_at then
    insert into bench_slots
    values (new.inbox_id, old.turn_message_id, new.last_slot_at, new.next_slot_at,
            old.next_slot_at);
  end if;
  return new;
end $$;
create trigger bench_log_slot after update on campaign_inbox_pacing_state
  for each row execute function bench_log_slot();
create function bench_log_claim() returns trigger language plpgsql as $$
begin
  if new.status = 'queued' and old.status = 'pending' then
    insert into bench_claims values (new.id, now());
  end if;
  return new;
end $$;
create trigger bench_log_claim after update on campaign_messages
  for each row execute function bench_log_claim();
"""


@dataclass
class Inbox:
    label: str
    inbox_id: uuid.UUID
    min_gap_s: float
    max_gap_s: float
    cap: int = 0
    runs: dict[uuid.UUID, str] = field(default_factory=dict)  # run id -> letter

    @property
    def mean_gap_s(self) -> float:
        return (self.min_gap_s + self.max_gap_s) / 2

    @property
    def pacing(self) -> str:
        if self.min_gap_s <= 0 and not self.cap:
            return "off"
        text = f"{self.min_gap_s:g}-{self.max_gap_s:g} s"
        return text + (f", cap {self.cap}" if self.cap else "")


@dataclass
class Drive:
    started: float  # wall clock (the send stub's clock): the first call
    stopped: float  # no call was started after this
    ended: float  # the last call returned
    statuses: Counter[str]
    counts: Counter[str]


async def seed_workload(r: Rig, gap: tuple[float, float]) -> tuple[str, list[Inbox]]:
    """A fresh database with the 20 inboxes; paced (gap > 0): the two inboxes' pacing rows."""
    dsn = await create_migrated_database(r.admin_dsn, f"bench_pacing_{uuid.uuid4().hex[:8]}")
    paced = gap[0] > 0
    inboxes: list[Inbox] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(INSTRUMENT)
        for n in range(INBOXES - 3):
            seeded = await seed_campaign(conn, leads=BACKLOG)
            inboxes.append(
                Inbox(f"inbox {n + 1:02d}", seeded.inbox_id, *gap, runs={seeded.run_id: "A"})
            )
        capped = await seed_campaign(conn, leads=BACKLOG)
        slow = await seed_campaign(conn, leads=BACKLOG)
        inboxes.append(
            Inbox(
                "capped", capped.inbox_id, *gap, cap=CAP if paced else 0, runs={capped.run_id: "A"}
            )
        )
        inboxes.append(
            Inbox(
                "slow gap", slow.inbox_id, *(SLOW_GAP_S if paced else gap), runs={slow.run_id: "A"}
            )
        )
        if paced:
            await conn.execute(
                "insert into campaign_inbox_pacing (inbox_id, daily_cap) values ($1, $2)",
                capped.inbox_id,
                CAP,
            )
            await conn.execute(
                "insert into campaign_inbox_pacing (inbox_id, min_gap_s, max_gap_s) "
                "values ($1, $2, $3)",
                slow.inbox_id,
                *SLOW_GAP_S,
            )
        large = await seed_campaign(conn, leads=SHARED_LARGE)
        small = await seed_campaign(conn, leads=SHARED_SMALL, inbox_id=large.inbox_id)
        inboxes.append(
            Inbox("shared", large.inbox_id, *gap, runs={large.run_id: "L", small.run_id: "S"})
        )
    finally:
        await conn.close()
    return dsn, inboxes


async def drive(urls: list[str], seconds: float, dsn: str, until_drained: bool) -> Drive:
    """Calls each URL every PERIOD_S (not waiting for its previous call), URLs staggered."""
    statuses: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {CRON_SECRET}"}
    conn = await asyncpg.connect(dsn)
    async with httpx.AsyncClient(timeout=BUDGET_S + 60) as http:

        async def call(url: str) -> None:
            try:
                response = await http.post(url + "/process-queue", json={}, headers=headers)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                return
            statuses[str(response.status_code)] += 1
            for key, value in response.json().items():
                if isinstance(value, int) and not isinstance(value, bool) and key != "duration_ms":
                    counts[key] += value

        calls: list[asyncio.Task[None]] = []
        started = time.time()
        start_mono = time.monotonic()
        tick = 0
        while True:
            at = tick * PERIOD_S / len(urls)
            if at >= seconds:
                break
            await asyncio.sleep(max(start_mono + at - time.monotonic(), 0))
            if until_drained and tick % len(urls) == 0 and tick > 0:
                left = await conn.fetchval(
                    "select count(*) from campaign_messages where status <> 'sent'"
                )
                if left == 0:
                    break
            calls.append(asyncio.create_task(call(urls[tick % len(urls)])))
            tick += 1
        stopped = time.time()
        await asyncio.gather(*calls)
    await conn.close()
    return Drive(started, stopped, time.time(), statuses, counts)


@dataclass
class Sent:
    at: float
    message_id: uuid.UUID
    run_id: uuid.UUID


async def first_parts(r: Rig, dsn: str) -> dict[uuid.UUID, list[Sent]]:
    """Part 0 of each message as the send stub received it, by the conversation's inbox."""
    conn = await asyncpg.connect(dsn)
    try:
        inbox_of = {
            str(row["id"]): row["inbox_id"]
            for row in await conn.fetch("select id, inbox_id from conversations")
        }
        run_of = {
            row["id"]: row["run_id"]
            for row in await conn.fetch("select id, run_id from campaign_messages")
        }
    finally:
        await conn.close()
    by_inbox: dict[uuid.UUID, list[Sent]] = defaultdict(list)
    for delivery in r.send.deliveries:
        message, _, index = delivery["idempotency_key"].rpartition(":")
        if index != "0":
            continue
        message_id = uuid.UUID(message)
        by_inbox[inbox_of[delivery["conversation_id"]]].append(
            Sent(float(delivery["at"]), message_id, run_of[message_id])
        )
    for sent in by_inbox.values():
        sent.sort(key=lambda s: s.at)
    return by_inbox


@dataclass
class Slot:
    drawn_s: float  # the gap the database drew after the previous slot (+ its 50 ms)
    late_s: float  # how long the slot stood open before a message took it
    claim_delay_s: float | None  # from the previous slot to the claim of this slot's message
    chain_s: float | None  # from that claim to this slot: contexts, start, LLM, save, take


async def slots(dsn: str) -> dict[uuid.UUID, list[Slot]]:
    """Each inbox's slots after its first, from the bench's probes."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """select s.inbox_id,
                      extract(epoch from s.opened_at - lag(s.taken_at) over w) as drawn,
                      extract(epoch from s.taken_at - s.opened_at) as late,
                      extract(epoch from c.claimed_at - lag(s.taken_at) over w) as claim_delay,
                      extract(epoch from s.taken_at - c.claimed_at) as chain
                 from bench_slots s
                 left join lateral (select max(claimed_at) as claimed_at from bench_claims c
                                     where c.message_id = s.message_id
                                       and c.claimed_at <= s.taken_at) c on true
               window w as (partition by s.inbox_id order by s.taken_at)
               order by s.inbox_id, s.taken_at"""
        )
    finally:
        await conn.close()
    by_inbox: dict[uuid.UUID, list[Slot]] = defaultdict(list)
    for row in rows:
        if row["drawn"] is None or row["late"] is None:
            continue  # the inbox's first slot
        by_inbox[row["inbox_id"]].append(
            Slot(
                float(row["drawn"]),
                float(row["late"]),
                None if row["claim_delay"] is None else float(row["claim_delay"]),
                None if row["chain"] is None else float(row["chain"]),
            )
        )
    return by_inbox


async def slot_times(dsn: str) -> dict[uuid.UUID, float]:
    """When each message took its inbox's slot (epoch seconds, the database's clock)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select message_id, extract(epoch from taken_at) as at from bench_slots "
            "where message_id is not null"
        )
    finally:
        await conn.close()
    return {row["message_id"]: float(row["at"]) for row in rows}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def gaps(sent: list[Sent]) -> list[float]:
    return [b.at - a.at for a, b in pairwise(sent)]


def in_first_second(sent: list[Sent]) -> int:
    return sum(1 for s in sent if sent and s.at < sent[0].at + 1.0) if sent else 0


def busiest_second(sent: list[Sent]) -> int:
    """The most first parts one inbox sent within any 1 s."""
    most, start = 0, 0
    for end, s in enumerate(sent):
        while s.at - sent[start].at >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def repeated_keys(r: Rig) -> int:
    keys = Counter(d["idempotency_key"] for d in r.send.deliveries)
    return sum(1 for n in keys.values() if n > 1) + r.send.duplicate_keys


async def run_services(
    r: Rig, dsn: str, gap: tuple[float, float], processes: int, seconds: float, until_drained: bool
) -> Drive:
    r.openrouter.reset()
    r.send.reset()
    r.openrouter.latency = Latency(median_ms=150, sigma=0.6, seed=5)
    r.send.latency = Latency(median_ms=20, sigma=0.3, seed=6)
    env = r.env(
        dsn,
        INBOX_MIN_GAP_S=f"{gap[0]:g}",
        INBOX_MAX_GAP_S=f"{gap[1]:g}",
        INBOX_DAILY_CAP="0",
        MAX_CONCURRENCY=str(CONCURRENCY),
        BATCH_SIZE=str(BATCH),
        TIME_BUDGET_S=str(BUDGET_S),
        DATABASE_POOL_MAX_SIZE="12",
    )
    services = [ServiceProcess(env) for _ in range(processes)]
    try:
        for service in services:
            service.start()
        return await drive([s.url for s in services], seconds, dsn, until_drained)
    finally:
        for service in services:
            service.stop()


async def pending_untouched(dsn: str, inbox: Inbox) -> tuple[int, int]:
    """The inbox's messages still pending, and how many of those are touched (retry, error)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """select count(*) filter (where status = 'pending') as pending,
                      count(*) filter (where status = 'pending' and (retry_count > 0
                                       or error_message is not null)) as touched,
                      count(*) filter (where status not in ('pending', 'sent')) as other
                 from campaign_messages where run_id = any($1::uuid[])""",
            list(inbox.runs),
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["pending"]), int(row["touched"]) + int(row["other"])


async def paced_run(r: Rig, processes: int, seconds: float, gap: tuple[float, float]) -> bool:
    dsn, inboxes = await seed_workload(r, gap)
    messages = (INBOXES - 1) * BACKLOG + SHARED_LARGE + SHARED_SMALL
    print(
        f"PACED: {processes} processes, {INBOXES} inboxes ({messages} messages due), "
        f"INBOX_MIN_GAP_S={gap[0]:g} INBOX_MAX_GAP_S={gap[1]:g}, MAX_CONCURRENCY="
        f"{CONCURRENCY}, BATCH_SIZE={BATCH};\n"
        f"each process called every {PERIOD_S:g} s with a {BUDGET_S} s budget, processes "
        f"{PERIOD_S / processes:.2f} s apart, for {seconds:g} s "
        "(LLM lognormal median 150 ms, send lognormal median 20 ms)\n"
    )
    d = await run_services(r, dsn, gap, processes, seconds, until_drained=False)
    window = d.stopped - d.started
    sent_by_inbox = await first_parts(r, dsn)
    ok = True
    print(
        f"{'inbox':<9} {'pacing':<13} {'sent':>4}  {'min gap':>7}  {'mean gap':>8}  "
        f"{'1st s':>5}  {'max/1s':>6}  {'in window':>9}  {'ideal':>5}  {'ratio':>5}  "
        f"{'drawn':>6}  {'late':>5}  {'vs drawn':>8}  check"
    )
    ratios: list[float] = []
    violations: list[tuple[Inbox, Sent, Sent]] = []
    slots_by_inbox = await slots(dsn)
    taken_at = await slot_times(dsn)
    for inbox in inboxes:
        sent = sent_by_inbox.get(inbox.inbox_id, [])
        taken = slots_by_inbox.get(inbox.inbox_id, [])
        drawn = statistics.fmean(t.drawn_s for t in taken) if taken else float("nan")
        late = statistics.fmean(t.late_s for t in taken) if taken else float("nan")
        g = gaps(sent)
        smallest = min(g) if g else float("nan")
        mean = statistics.fmean(g) if g else float("nan")
        in_window = sum(1 for s in sent if s.at <= d.stopped)
        checks = []
        if g and smallest < inbox.min_gap_s:
            checks.append(f"GAP VIOLATED ({smallest:.3f} < {inbox.min_gap_s:g})")
            ok = False
            for first, second in pairwise(sent):
                if second.at - first.at < inbox.min_gap_s:
                    violations.append((inbox, first, second))
        if inbox.cap:
            pending, touched = await pending_untouched(dsn, inbox)
            respected = len(sent) <= inbox.cap
            ok = ok and respected and touched == 0
            checks.append(
                f"cap {len(sent)}/{inbox.cap} {'respected' if respected else 'EXCEEDED'}; "
                f"{pending} pending, {touched} touched"
            )
            ideal_text, ratio_text, drawn_text = "-", "-", "-"
        else:
            ideal = window / inbox.mean_gap_s
            ratio = in_window / ideal
            ratios.append(ratio)
            ideal_text, ratio_text = f"{ideal:.1f}", f"{ratio:.2f}"
            drawn_text = f"{in_window / (window / drawn):.2f}" if taken else "-"
            if ratio < RATE_TARGET:
                checks.append(f"RATE BELOW {RATE_TARGET}")
                ok = False
        if not checks:
            checks.append("ok")
        print(
            f"{inbox.label:<9} {inbox.pacing:<13} {len(sent):>4}  {smallest:>6.3f}s  "
            f"{mean:>7.3f}s  {in_first_second(sent):>5}  {busiest_second(sent):>6}  "
            f"{in_window:>9}  {ideal_text:>5}  {ratio_text:>5}  {drawn:>5.3f}s  "
            f"{late * 1000:>3.0f}ms  {drawn_text:>8}  "
            f"{'; '.join(checks)}"
        )
    shared = inboxes[-1]
    order = "".join(shared.runs[s.run_id] for s in sent_by_inbox.get(shared.inbox_id, []))
    small_at = [i + 1 for i, letter in enumerate(order) if letter == "S"]
    twice = repeated_keys(r)
    ok = (
        ok and twice == 0 and len(small_at) == SHARED_SMALL and max(small_at) < order.rfind("L") + 1
    )
    print(
        f"\nwindow while calls kept coming: {window:.1f} s (the last call returned "
        f"{d.ended - d.stopped:.1f} s later); ratio = first parts sent in the window / "
        f"(window / mean gap), target >= {RATE_TARGET}; min {min(ratios):.2f}, "
        f"median {statistics.median(ratios):.2f} over the {len(ratios)} uncapped inboxes;\n"
        "drawn = mean gap the database drew (uniform in the range, + 50 ms for the send's "
        "jitter); late = mean time a slot stood open before a message took it; "
        "mean gap seen ~ drawn + late;\nvs drawn = the same ratio against the gaps actually "
        "drawn (window / drawn): what the service kept of the pace the database set"
    )
    every = [t for inbox in inboxes for t in slots_by_inbox.get(inbox.inbox_id, [])]
    lates = [t.late_s for t in every]
    tardy = [t for t in every if t.late_s > 0.1]
    p50, p95, most = (
        1000 * x for x in (percentile(lates, 0.5), percentile(lates, 0.95), max(lates, default=0))
    )
    print(
        f"slots taken after an inbox's first: {len(every)}; late p50 {p50:.0f} ms, "
        f"p95 {p95:.0f} ms, max {most:.0f} ms; {len(tardy)} taken > 100 ms late"
    )
    to_stub = [
        s.at - taken_at[s.message_id]
        for sent in sent_by_inbox.values()
        for s in sent
        if s.message_id in taken_at
    ]
    print(
        f"slot taken -> first part at the send stub: p50 {percentile(to_stub, 0.5) * 1000:.0f} "
        f"ms, p95 {percentile(to_stub, 0.95) * 1000:.0f} ms, max "
        f"{max(to_stub, default=0) * 1000:.0f} ms (the database pads each gap by 50 ms for this)"
    )
    for inbox, first, second in violations:
        db_gap = taken_at.get(second.message_id, float("nan")) - taken_at.get(
            first.message_id, float("nan")
        )
        print(
            f"  {inbox.label}: first parts {second.at - first.at:.3f} s apart at the stub, slots "
            f"{db_gap:.3f} s apart in the database; slot -> stub "
            f"{(first.at - taken_at.get(first.message_id, float('nan'))) * 1000:.0f} ms then "
            f"{(second.at - taken_at.get(second.message_id, float('nan'))) * 1000:.0f} ms"
        )
    if tardy:
        delays = [t.claim_delay_s for t in tardy if t.claim_delay_s is not None]
        chains = [t.chain_s for t in tardy if t.chain_s is not None]
        print(
            f"  those {len(tardy)}: the message was claimed p50 {percentile(delays, 0.5):.2f} s "
            f"(max {max(delays, default=0):.2f} s) after the previous slot, and took the slot "
            f"p50 {percentile(chains, 0.5):.2f} s (max {max(chains, default=0):.2f} s) after its "
            f"claim, against a drawn gap of p50 {percentile([t.drawn_s for t in tardy], 0.5):.2f} s"
        )
    print(
        f"shared inbox, runs in the order served (L = large run of {SHARED_LARGE}, created "
        f"first; S = small run of {SHARED_SMALL}):\n  {order}\n  small run's messages at "
        f"positions {small_at} of {len(order)}"
    )
    print(f"parts delivered twice (repeated Idempotency-Keys): {twice}")
    print(
        f"calls: {sum(d.statuses.values())} ({dict(d.statuses)}); "
        + ", ".join(f"{k} {v}" for k, v in sorted(d.counts.items()))
    )
    return ok


async def baseline_run(r: Rig, processes: int, seconds: float) -> None:
    dsn, inboxes = await seed_workload(r, (0.0, 0.0))
    print(
        "\nBASELINE: the same workload and calls, pacing off "
        "(INBOX_MIN_GAP_S=0, INBOX_DAILY_CAP=0, no campaign_inbox_pacing rows), until drained\n"
    )
    d = await run_services(r, dsn, (0.0, 0.0), processes, seconds, until_drained=True)
    sent_by_inbox = await first_parts(r, dsn)
    print(
        f"{'inbox':<9} {'sent':>4}  {'min gap':>7}  {'1st s':>5}  {'max/1s':>6}  "
        f"{'all sent in':>11}"
    )
    worst: tuple[int, str] = (0, "")
    smallest_all: tuple[float, str] = (float("inf"), "")
    for inbox in inboxes:
        sent = sent_by_inbox.get(inbox.inbox_id, [])
        g = gaps(sent)
        smallest = min(g) if g else float("nan")
        first = in_first_second(sent)
        worst = max(worst, (first, inbox.label))
        smallest_all = min(smallest_all, (smallest, inbox.label))
        span = sent[-1].at - sent[0].at if sent else 0.0
        print(
            f"{inbox.label:<9} {len(sent):>4}  {smallest:>6.3f}s  {first:>5}  "
            f"{busiest_second(sent):>6}  {span:>9.1f} s"
        )
    total = sum(len(s) for s in sent_by_inbox.values())
    print(
        f"\n{total} messages in {d.ended - d.started:.1f} s; smallest gap between two first "
        f"parts of one inbox: {smallest_all[0]:.3f} s ({smallest_all[1]}); most messages one "
        f"inbox sent in its first second: {worst[0]} ({worst[1]}); parts delivered twice: "
        f"{repeated_keys(r)}; calls: {dict(d.statuses)}"
    )


async def main(
    processes: int, seconds: float, gap: tuple[float, float], case: str, cadence_seconds: float
) -> int:
    from bench.pacing_cadence import cadence_run  # it imports the app in this process

    ok = True
    with rig() as r:
        if case in ("overlapping", "both"):
            ok = await paced_run(r, processes, seconds, gap)
            await baseline_run(r, processes, seconds)
        if case in ("cadence", "both"):
            ok = await cadence_run(r, cadence_seconds) and ok
    print(
        f"\ntargets: min gap >= the inbox's min gap; ratio >= {RATE_TARGET}; cap respected, "
        "the rest pending untouched; the small run interleaved; nothing delivered twice: "
        + ("all met" if ok else "NOT ALL MET")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--min-gap", type=float, default=MIN_GAP_S, help="INBOX_MIN_GAP_S")
    parser.add_argument("--max-gap", type=float, default=MAX_GAP_S, help="INBOX_MAX_GAP_S")
    parser.add_argument(
        "--case", choices=["overlapping", "cadence", "both"], default="both", help="which case"
    )
    parser.add_argument(
        "--cadence-seconds", type=float, default=120.0, help="the scheduler-cadence case's length"
    )
    parser.add_argument("--timeout", type=float, default=420.0, help="stop after this long")
    options = parser.parse_args()
    raise SystemExit(
        asyncio.run(
            asyncio.wait_for(
                main(
                    options.processes,
                    options.seconds,
                    (options.min_gap, options.max_gap),
                    options.case,
                    options.cadence_seconds,
                ),
                timeout=options.timeout,
            )
        )
    )
