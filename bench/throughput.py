"""Throughput of one invocation: our sliding-window pool against the edge function's chunks.

Run: uv run python -m bench.throughput [--messages 500]

Embedded Postgres; OpenRouter stub latency lognormal (median 150 ms, sigma 0.6, seeded), send
stub 10 ms. For concurrency 5 and 20, the same 500 due messages are processed:
- by the QueueProcessor (what POST /process-queue runs), in one invocation;
- by a baseline in the same process that works the way the original edge function did: one
  claim of `concurrency` messages per invocation, processed as one chunk that waits for its
  slowest message (Promise.allSettled), invocation after invocation with no pause.
Both use the same MessagePipeline, database and stubs, so only the scheduling differs.
Pool efficiency = achieved rate / (concurrency / mean per-message service time of that run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from app.processing.invocation import CircuitBreaker, Invocation
from app.processing.leases import LeaseKeeper
from app.sandbox.stubs import Latency
from app.settings import Settings
from app.store.store import Lease
from bench.harness import Rig, fresh_queue, in_process, rig, status_counts

LLM = {"median_ms": 150.0, "sigma": 0.6}
SEND_MS = 10.0


def reset_stubs(r: Rig, seed: int) -> None:
    r.openrouter.reset()
    r.send.reset()
    r.openrouter.latency = Latency(seed=seed, **LLM)
    r.send.latency = Latency(fixed_ms=SEND_MS)


async def prepare(r: Rig, messages: int, concurrency: int) -> tuple[str, Settings]:
    """A fresh queue and the stubs reset to the same seeded latencies, for either contender."""
    dsn = await fresh_queue(r, messages)
    reset_stubs(r, seed=11)
    return dsn, r.settings(
        dsn,
        max_concurrency=concurrency,
        batch_size=concurrency,
        database_pool_max_size=concurrency + 5,
    )


async def ours(r: Rig, messages: int, concurrency: int) -> tuple[float, float]:
    _, settings = await prepare(r, messages, concurrency)
    async with in_process(settings) as service:
        started = time.perf_counter()
        result = await service.processor.process(
            service.processor.request(max_messages=10_000, time_budget_s=3600)
        )
        elapsed = time.perf_counter() - started
        durations = service.pipeline.durations
    assert result.processed == messages, result
    return messages / elapsed, statistics.fmean(durations)


async def edge_function_baseline(r: Rig, messages: int, concurrency: int) -> tuple[float, float]:
    dsn, settings = await prepare(r, messages, concurrency)
    async with in_process(settings) as service:
        store, pipeline = service.store, service.pipeline
        started = time.perf_counter()
        while True:  # one "invocation" per round: one claim, one chunk
            horizon = datetime.now(UTC) - timedelta(hours=1)
            await store.mark_old_as_skipped(horizon)
            claimed_at = time.monotonic()
            batch = await store.claim(
                batch_size=concurrency, one_hour_ago=horizon, lock_timeout_s=600, worker="baseline"
            )
            if not batch.messages:
                break
            contexts = await store.lead_contexts([m.lead_id for m in batch.messages])
            invocation = Invocation(
                "baseline",
                time.monotonic() + 3600,
                CircuitBreaker(5),
                LeaseKeeper(store, 600, "baseline"),
            )
            invocation.leases.hold([Lease.of(m) for m in batch.messages], claimed_at)
            await asyncio.gather(
                *(pipeline.run(m, contexts.get(m.lead_id), invocation) for m in batch.messages)
            )
        elapsed = time.perf_counter() - started
        durations = pipeline.durations
    assert (await status_counts(dsn))["sent"] == messages
    return messages / elapsed, statistics.fmean(durations)


async def main(messages: int) -> None:
    print(
        f"{messages} messages; LLM latency lognormal median {LLM['median_ms']:.0f} ms "
        f"sigma {LLM['sigma']}, send {SEND_MS:.0f} ms\n"
    )
    print(
        f"{'concurrency':>11}  {'ours msg/s':>10}  {'efficiency':>10}  "
        f"{'baseline msg/s':>14}  {'baseline eff.':>13}  {'speed-up':>8}"
    )
    with rig() as r:
        for concurrency in (5, 20):
            rate, service_s = await ours(r, messages, concurrency)
            base_rate, base_service_s = await edge_function_baseline(r, messages, concurrency)
            efficiency = rate / (concurrency / service_s)
            base_efficiency = base_rate / (concurrency / base_service_s)
            print(
                f"{concurrency:>11}  {rate:>10.1f}  {efficiency:>10.2f}  {base_rate:>14.1f}  "
                f"{base_efficiency:>13.2f}  {rate / base_rate:>7.2f}x"
            )
    print("\ntargets: efficiency >= 0.9, and >= 1.3x the baseline at concurrency 5")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    asyncio.run(main(parser.parse_args().messages))
