"""Scaling out: 1, 2 and 4 service processes on one database.

Run: uv run python -m bench.scale [--messages 400] [--concurrency 5]

Each process is `uvicorn app.main:app` with its own asyncpg pool; a driver calls
POST /process-queue on every process, again and again (overlapping across processes, as a
scheduler and several instances would), until no due work is left. The stubs have ample
capacity (LLM latency lognormal, median 150 ms; send 10 ms), so the service is the limit.
Prints each configuration's throughput, the scaling ratio against one process measured in the
same run, and the (message, part) pairs delivered twice (must be zero).
Target: 4 processes >= 3x one process.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from app.sandbox.service_process import ServiceProcess
from app.sandbox.stubs import Latency
from bench.harness import Rig, drive_until_settled, fresh_queue, rig, status_counts


async def run(r: Rig, processes: int, messages: int, concurrency: int) -> tuple[float, int]:
    r.openrouter.reset()
    r.send.reset()
    r.openrouter.latency = Latency(median_ms=150, sigma=0.6, seed=5)
    r.send.latency = Latency(fixed_ms=10)
    dsn = await fresh_queue(r, messages)
    env = r.env(
        dsn,
        MAX_CONCURRENCY=str(concurrency),
        BATCH_SIZE=str(concurrency),
        DATABASE_POOL_MAX_SIZE=str(concurrency + 4),
    )
    services = [ServiceProcess(env) for _ in range(processes)]
    for service in services:
        service.start()
    try:
        started = time.perf_counter()
        await drive_until_settled([s.url for s in services], dsn)
        elapsed = time.perf_counter() - started
    finally:
        for service in services:
            service.stop()
    assert (await status_counts(dsn))["sent"] == messages
    keys = Counter(d["idempotency_key"] for d in r.send.deliveries)
    twice = sum(1 for n in keys.values() if n > 1) + r.send.duplicate_keys
    return messages / elapsed, twice


async def main(messages: int, concurrency: int) -> None:
    print(f"{messages} messages, {concurrency} in flight per process\n")
    print(f"{'processes':>9}  {'msg/s':>7}  {'vs 1 process':>12}  {'sent twice':>10}")
    with rig() as r:
        base = 0.0
        for processes in (1, 2, 4):
            rate, twice = await run(r, processes, messages, concurrency)
            base = base or rate
            print(f"{processes:>9}  {rate:>7.1f}  {rate / base:>11.2f}x  {twice:>10}")
    print("\ntarget: 4 processes >= 3x one process; nothing sent twice")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.messages, options.concurrency))
