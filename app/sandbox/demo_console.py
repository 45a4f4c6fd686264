"""`python -m app demo --console`: after the demo, data for every part of the console, then
the service stays up on 127.0.0.1 with a made-up OPERATOR_TOKEN until SIGINT or SIGTERM.

The data added to the demo's (its two runs ended, completed):
- a run whose sends the send stub refuses, each message by its conversation: two with an
  invalid number and two with HTTP 422 (both failed for good: two reason groups), one with
  HTTP 500 (waiting for a retry), one sent;
- a run of 12 leads scheduled from an hour from now, 10 minutes apart: running, pending;
- a paused run of 5 leads.
Its three lines (README, "Console"; the browser tests read them):
`console: http://127.0.0.1:<port>/console`, `token: <token>`, `database: <dsn>`.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime, timedelta

import asyncpg
import httpx

from app.sandbox.seed import SeededCampaign, seed_campaign
from app.sandbox.stubs import Fault, FaultPlan, RequestInfo, SendStub

# each failing message's send answer, by the order its conversation is first seen
FAILURES: list[Fault | None] = [Fault.INVALID_NUMBER, Fault.STATUS, Fault.INVALID_NUMBER]
FAILURES += [Fault.STATUS, Fault.SERVER_ERROR, None]


async def seed_console_data(
    conn: asyncpg.Connection, service_url: str, secret: str, send_stub: SendStub
) -> list[SeededCampaign]:
    failing = await seed_campaign(conn, leads=len(FAILURES))
    faults: dict[str, Fault | None] = {}

    def by_conversation(info: RequestInfo) -> Fault | None:
        conversation = str(info.body.get("conversationId", ""))
        if conversation not in faults:
            faults[conversation] = FAILURES[len(faults) % len(FAILURES)]
        return faults[conversation]

    send_stub.faults = FaultPlan(rules=[by_conversation], status=422)
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.post(
            service_url + "/process-queue",
            headers={"Authorization": f"Bearer {secret}"},
            json={"run_id": str(failing.run_id), "max_messages": len(FAILURES)},
        )
        response.raise_for_status()
    send_stub.faults = FaultPlan()
    later = await seed_campaign(
        conn,
        leads=12,
        first_scheduled_at=datetime.now().astimezone() + timedelta(hours=1),
        spacing=timedelta(minutes=10),
    )
    paused = await seed_campaign(conn, leads=5, run_status="paused")
    await conn.execute(
        "update campaign_runs set error_message = 'paused by the demo' where id = $1",
        paused.run_id,
    )
    return [failing, later, paused]


async def serve_until_stopped(service_url: str, token: str, dsn: str) -> None:
    """Prints the three lines, then waits for SIGINT or SIGTERM."""
    print(f"console: {service_url}/console", flush=True)
    print(f"token: {token}", flush=True)
    print(f"database: {dsn}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("stopping the console's service, the stubs and Postgres", flush=True)
