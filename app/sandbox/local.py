"""`python -m app local`: the service on this machine, with demo data, until Ctrl-C or SIGTERM.

An embedded Postgres whose data survives in `.local/pg` (git-ignored), `sql/` applied, a new
demo campaign due at once, the loopback stubs for OpenRouter and the WhatsApp send endpoint,
and the service (uvicorn) on 127.0.0.1. It prints the URL, a CRON_SECRET made up for this
run, curl lines that work pasted, and the `status` line with the one setting it needs.
Nothing leaves this machine.

`sandboxed_service` is the reusable part: it starts all of that and yields its URL, secret
and database (api_sandbox.py and the demo use it too).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import secrets
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg

from app.main import create_app
from app.sandbox.database import create_migrated_database, dsn_with_database, running_postgres
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.stubs import SEND_PATH, OpenRouterStub, SendStub
from app.settings import Settings
from app.store.migrations import apply_migrations

ROOT = Path(__file__).resolve().parent.parent.parent
DATA_DIR = ROOT / ".local" / "pg"
DATABASE = "campaign_local"


@dataclass(frozen=True)
class SandboxedService:
    """The running service: its URL, the CRON_SECRET it takes, its database's DSN."""

    url: str
    cron_secret: str
    dsn: str
    run_id: uuid.UUID | None  # the demo run seeded at this start, if any


@contextmanager
def sandboxed_service(
    *,
    data_dir: Path | None = None,
    database: str = DATABASE,
    fresh: bool = True,
    leads: int = 20,
    port: int = 0,
    log_level: str = "WARNING",
    extra_settings: dict[str, Any] | None = None,
) -> Iterator[SandboxedService]:
    """Starts Postgres (in data_dir, else a temporary folder), the stubs and the service on
    127.0.0.1:port (0: a free one), seeds `leads` due messages; stops them all on exit.

    fresh=False keeps `database` when it exists (its migrations brought up to date).
    """
    cron_secret = secrets.token_urlsafe(24)
    openrouter, send = OpenRouterStub(), SendStub()
    with (
        running_postgres(data_dir) as server,
        LoopbackServer(openrouter.app) as openrouter_server,
        LoopbackServer(send.app) as send_server,
    ):
        dsn, run_id = asyncio.run(_prepare(server.dsn, database, fresh=fresh, leads=leads))
        values: dict[str, Any] = {
            "database_url": dsn,
            "cron_secret": cron_secret,
            "openrouter_base_url": openrouter_server.url,
            "openrouter_api_key": openrouter.api_key,
            "send_url": send_server.url + SEND_PATH,
            "supabase_service_role_key": send.service_role_key,
            # No pacing: one call sends the whole demo campaign at once.
            "inbox_min_gap_s": 0,
            "inbox_max_gap_s": 0,
            "inbox_daily_cap": 0,
            "retry_base_s": 0.01,
            "retry_max_wait_s": 0.5,
            "docs_enabled": True,
            "log_level": log_level,
            **(extra_settings or {}),
        }
        settings = Settings.model_validate(values)
        with LoopbackServer(create_app(settings), lifespan=True, port=port) as service:
            yield SandboxedService(service.url, cron_secret, dsn, run_id)


async def _prepare(
    admin_dsn: str, database: str, *, fresh: bool, leads: int
) -> tuple[str, uuid.UUID | None]:
    """The database (new, or kept and migrated) and its new demo run: (DSN, run id)."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        exists = await admin.fetchval("select true from pg_database where datname = $1", database)
    finally:
        await admin.close()
    if fresh or not exists:
        dsn = await create_migrated_database(admin_dsn, database)
    else:
        dsn = dsn_with_database(admin_dsn, database)
        await apply_migrations(dsn)
    if leads <= 0:
        return dsn, None
    conn = await asyncpg.connect(dsn)
    try:
        seeded = await seed_campaign(conn, leads=leads)
    finally:
        await conn.close()
    return dsn, seeded.run_id


def run_local(args: argparse.Namespace) -> int:
    stopped_by: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)  # no I/O in a signal handler

    if importlib.util.find_spec("pgserver") is None:  # production: the runtime group only
        print(
            "error: the embedded Postgres (pgserver, the sandbox dependency group) is not "
            "installed here: run `python3 run.py local` from the repository",
            file=sys.stderr,
        )
        return 2
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    data_dir: Path = (args.data_dir or DATA_DIR).resolve()
    _ignore_in_git(data_dir)
    try:
        with sandboxed_service(
            data_dir=data_dir, fresh=args.fresh, leads=args.leads, port=args.port
        ) as service:
            _say_how_to_use(service, data_dir, args.leads)
            while not stopped_by:
                time.sleep(0.2)
            say(f"{signal.Signals(stopped_by[0]).name}: stopping the service, stubs, Postgres")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped; the data stays in {_shown(data_dir)} (--fresh starts over)")
    return 0


def say(line: str) -> None:
    print(line, flush=True)


def _say_how_to_use(service: SandboxedService, data_dir: Path, leads: int) -> None:
    bearer = shlex.quote(f"Authorization: Bearer {service.cron_secret}")
    run_py = shlex.quote(str(ROOT / "run.py"))
    seeded = (
        f"seeded {leads} demo leads, due now (run {service.run_id})"
        if service.run_id
        else "no new demo leads (--leads 0)"
    )
    say(
        "campaign-queue local: embedded Postgres, loopback stubs for OpenRouter and the "
        "WhatsApp send endpoint; nothing leaves 127.0.0.1"
    )
    say(f"{seeded}; Postgres keeps its data in {_shown(data_dir)} (--fresh starts over)")
    say(f"service:     {service.url}  (API docs: {service.url}/docs)")
    say(f"CRON_SECRET: {service.cron_secret}  (made up for this run)")
    say("send the due messages, then see the queue:")
    say(f"  curl -sS -X POST {service.url}/process-queue -H {bearer}")
    say(f"  curl -sS {service.url}/status -H {bearer}")
    say("the queue as tables, from another terminal (needs only the database):")
    say(f"  DATABASE_URL={shlex.quote(service.dsn)} python3 {run_py} python -m app status")
    say("Ctrl-C (or SIGTERM) stops the service, the stubs and Postgres.")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _ignore_in_git(data_dir: Path) -> None:
    """`.local/` holds a `.gitignore` of `*`, as run.py's `.tools/` does."""
    if data_dir.is_relative_to(ROOT / ".local"):
        folder = ROOT / ".local"
        folder.mkdir(exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# made by python -m app local: its Postgres, never committed\n*\n")
