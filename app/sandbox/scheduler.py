"""A stand-in for the scheduler: POST /process-queue until no due work is left."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx

DUE_OR_CLAIMED = """
select count(*) from campaign_messages
 where (status = 'pending' and scheduled_at <= now())
    or status in ('queued', 'generating', 'sending')
"""


async def drive_until_settled(
    urls: list[str],
    dsn: str,
    cron_secret: str,
    *,
    body: dict[str, Any] | None = None,
    timeout_s: float = 600,
    pause_s: float = 0.0,
) -> list[httpx.Response | Exception]:
    """Calls every URL again and again until nothing is due or claimed; returns each outcome.

    Calls to one URL never overlap each other; calls to different URLs do, as several
    instances behind one scheduler would. A call that fails to connect (a process being
    restarted) is recorded and tried again shortly.
    """
    outcomes: list[httpx.Response | Exception] = []
    deadline = time.monotonic() + timeout_s
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "scheduler"})
    lock = asyncio.Lock()

    async def settled() -> bool:
        async with lock:  # one connection, shared by the callers
            return int(await conn.fetchval(DUE_OR_CLAIMED)) == 0

    async with httpx.AsyncClient(timeout=120) as http:

        async def keep_calling(url: str) -> None:
            while time.monotonic() < deadline and not await settled():
                try:
                    outcomes.append(
                        await http.post(
                            url + "/process-queue",
                            json=body or {},
                            headers={"Authorization": f"Bearer {cron_secret}"},
                        )
                    )
                except httpx.HTTPError as exc:
                    outcomes.append(exc)
                    await asyncio.sleep(0.2)
                if pause_s:
                    await asyncio.sleep(pause_s)

        try:
            await asyncio.gather(*(keep_calling(url) for url in urls))
        finally:
            await conn.close()
    return outcomes
