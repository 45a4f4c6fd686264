"""`python -m app.sandbox.api_sandbox`: the service with its API docs on, against the sandbox.

Embedded Postgres with sql/ applied and a seeded campaign, the loopback stubs for OpenRouter
and the send endpoint, and the app on 127.0.0.1 with DOCS_ENABLED, so a person can use
/docs ("Try it out") or a schema-driven fuzzer can run against /openapi.json:

    python3 -m uv run --frozen python -m app.sandbox.api_sandbox --port 8765 \\
        --secret-file /tmp/api-sandbox-secret &
    python3 -m uv run --frozen --with schemathesis schemathesis run \\
        http://127.0.0.1:8765/openapi.json --checks all --continue-on-failure \\
        -H "Authorization: Bearer $(cat /tmp/api-sandbox-secret)"

It prints the URL and the CRON_SECRET it made up for this run (also written to
--secret-file when given), and runs until interrupted or for --seconds. Nothing leaves this
machine: the stubs stand in for OpenRouter and the send endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from app.main import create_app
from app.sandbox.database import create_migrated_database, running_postgres
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import SEND_PATH, OpenRouterStub, SendStub
from app.settings import Settings


async def _prepare(admin_dsn: str, leads: int) -> str:
    dsn = await create_migrated_database(admin_dsn, "campaign_api_sandbox")
    conn = await asyncpg.connect(dsn)
    try:
        await seed_campaign(conn, leads=leads)
    finally:
        await conn.close()
    return dsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sandbox.api_sandbox")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")
    parser.add_argument("--leads", type=int, default=20, help="messages due at start")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--secret-file", type=Path, help="also write the CRON_SECRET here")
    args = parser.parse_args(argv)

    cron_secret = secrets.token_urlsafe(24)
    openrouter, send = OpenRouterStub(), SendStub()
    with (
        running_postgres() as server,
        LoopbackServer(openrouter.app) as openrouter_server,
        LoopbackServer(send.app) as send_server,
    ):
        dsn = asyncio.run(_prepare(server.dsn, args.leads))
        values: dict[str, Any] = {
            "database_url": dsn,
            "cron_secret": cron_secret,
            "openrouter_base_url": openrouter_server.url,
            "openrouter_api_key": openrouter.api_key,
            "send_url": send_server.url + SEND_PATH,
            "supabase_service_role_key": send.service_role_key,
            "inbox_min_gap_s": 0,
            "inbox_max_gap_s": 0,
            "inbox_daily_cap": 0,
            "retry_base_s": 0.01,
            "retry_max_wait_s": 0.5,
            "docs_enabled": True,
            "log_level": "WARNING",
        }
        settings = Settings.model_validate(values)
        if args.secret_file is not None:
            args.secret_file.write_text(cron_secret + "\n", encoding="utf-8")
        with LoopbackServer(create_app(settings), lifespan=True, port=args.port) as service:
            print(f"service on {service.url} (docs: {service.url}/docs)", flush=True)
            print(f"CRON_SECRET={cron_secret} (made up for this run)", flush=True)
            stop = False

            def _stop(signum: int, frame: object) -> None:
                nonlocal stop
                stop = True

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while not stop and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
