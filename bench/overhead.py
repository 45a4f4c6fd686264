"""The service's own cost: CPU time per message and peak memory, with zero-latency stubs.

Run: uv run python -m bench.overhead [--messages 5000]

One service process (uvicorn) sends `messages` messages (a third of them split into 3 parts)
with the stubs answering at once, so what is measured is the service itself: its CPU time
(user + system, from /proc) divided by the messages, and its peak resident memory (VmHWM).
Baselines measured in the same run, on the same process: its resident memory after start-up,
and the CPU time of one GET /healthz (a request that does one database round trip), the floor
of any request it serves. Target: peak RSS under 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import httpx

from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import ServiceProcess
from bench.harness import drive_until_settled, fresh_queue, rig, status_counts


async def main(messages: int) -> None:
    with rig() as r:
        split = messages // 3
        dsn = await fresh_queue(r, messages - split)
        conn = await asyncpg.connect(dsn)
        await seed_campaign(conn, leads=split, split_messages=True, min_chars_to_split=20)
        await conn.close()
        service = ServiceProcess(
            r.env(
                dsn,
                MAX_CONCURRENCY="20",
                BATCH_SIZE="50",
                MAX_MESSAGES="10000",
                TIME_BUDGET_S="600",
            )
        )
        service.start()
        try:
            idle_rss_kb = service.memory_kb("VmRSS")
            async with httpx.AsyncClient() as http:
                before = service.cpu_seconds()
                for _ in range(500):
                    await http.get(service.url + "/healthz")
                healthz_cpu_ms = (service.cpu_seconds() - before) / 500 * 1000

            before = service.cpu_seconds()
            started = time.perf_counter()
            await drive_until_settled([service.url], dsn)
            elapsed = time.perf_counter() - started
            cpu_ms = (service.cpu_seconds() - before) / messages * 1000
            peak_rss_kb = service.memory_kb("VmHWM")
        finally:
            service.stop()
        counts = await status_counts(dsn)
        assert counts["sent"] == messages, counts
        parts = len(r.send.deliveries)

    print(f"{messages} messages ({parts} parts) in {elapsed:.1f} s, zero-latency stubs\n")
    print(f"  CPU per message          {cpu_ms:8.2f} ms")
    print(f"  baseline: GET /healthz   {healthz_cpu_ms:8.2f} ms CPU per request")
    print(f"  peak RSS                 {peak_rss_kb / 1024:8.1f} MB   (target: < 200 MB)")
    print(f"  baseline: RSS at start   {idle_rss_kb / 1024:8.1f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    asyncio.run(main(parser.parse_args().messages))
