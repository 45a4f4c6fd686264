"""Database round trips per message, by number of parts.

Run: uv run python -m bench.round_trips [--messages 50]

Counts every RPC the service makes (a counting wrapper around the real asyncpg connector) while
one invocation sends `messages` messages of 1, 3 and 5 parts. Per-message calls are start,
save, the inbox's slot (pacing) and one mark per part; the claim, the lead contexts (one call
per claim), the resume of reconnected runs, the skip of late messages, finalize, the provider
state and the log writes (one per claim round) are shared by the whole batch.
Target: at most parts + 3 calls per message (docs/architecture.md, "Pacing"), plus the shared calls.
Baseline, measured in the same run: the same messages sent the way the edge function was
invoked (one claim of 5 messages per invocation), which repeats the shared calls per 5.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from app.sandbox.stubs import Latency
from bench.harness import Rig, fresh_queue, in_process, rig

PER_MESSAGE = (
    "start_campaign_message",
    "save_generated_message",
    "take_inbox_slot",
    "mark_message_part_sent",
)


async def main(messages: int) -> None:
    print(f"{messages} messages per row; batch_size 10\n")
    print(
        f"{'parts':>5}  {'per message':>11}  {'target':>6}  {'shared calls':>12}  "
        f"{'baseline shared':>15}  calls by function (ours)"
    )
    with rig() as r:
        for parts in (1, 3, 5):
            r.openrouter.reset()
            r.send.reset()
            r.openrouter.latency = Latency(fixed_ms=0)
            dsn = await fresh_queue(
                r,
                messages,
                split_messages=parts > 1,
                max_split_parts=max(parts, 1),
                min_chars_to_split=20,
            )
            settings = r.settings(dsn, batch_size=10, max_concurrency=10)
            async with in_process(settings) as service:
                result = await service.processor.process(service.processor.request())
                calls = service.rpc.calls
            assert result.processed == messages, result
            baseline_shared = await _edge_function_shaped_shared_calls(r, messages, parts)
            conn = await asyncpg.connect(dsn)
            actual = await conn.fetch(
                "select distinct jsonb_array_length(message_parts) as n from campaign_messages"
            )
            await conn.close()
            assert [row["n"] for row in actual] == [parts], actual
            per_message = sum(calls[f] for f in PER_MESSAGE) / messages
            shared = sum(n for f, n in calls.items() if f not in PER_MESSAGE)
            detail = ", ".join(f"{f}={n}" for f, n in sorted(calls.items()))
            print(
                f"{parts:>5}  {per_message:>11.2f}  {parts + 3:>6}  {shared:>12}  "
                f"{baseline_shared:>15}  {detail}"
            )


async def _edge_function_shaped_shared_calls(r: Rig, messages: int, parts: int) -> int:
    dsn = await fresh_queue(
        r, messages, split_messages=parts > 1, max_split_parts=max(parts, 1), min_chars_to_split=20
    )
    settings = r.settings(dsn, batch_size=5, max_concurrency=5)
    async with in_process(settings) as service:
        while True:
            result = await service.processor.process(service.processor.request(max_messages=5))
            if result.claimed == 0:
                break
        calls = service.rpc.calls
    return sum(n for f, n in calls.items() if f not in PER_MESSAGE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50)
    asyncio.run(main(parser.parse_args().messages))
