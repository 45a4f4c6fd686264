"""Command line: `python -m app serve | migrate | process | demo | status`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line on stderr (`error: ...`) and exit code 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


def _migrate() -> int:
    import asyncpg

    from app.settings import DatabaseSettings
    from app.store.migrations import ConnectionFailedError, apply_migrations

    dsn = DatabaseSettings().database_url
    if dsn is None:
        print("error: missing required setting: DATABASE_URL", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(apply_migrations(dsn.get_secret_value()))
    except ConnectionFailedError as exc:  # host and port, and what to check; no password
        print(f"error: migrations not applied: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Postgres errors name the statement's problem, never the connection string.
        print(f"error: migrations not applied: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "up to date: nothing to apply")
    return 0


def _serve() -> int:
    import uvicorn

    from app.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:  # missing or invalid: one line naming them, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run("app.main:app", host="0.0.0.0", port=settings.port, log_level="warning")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.sandbox.demo import run_demo

    return asyncio.run(run_demo(leads=args.leads, real=args.real))


def _status(args: argparse.Namespace) -> int:
    """campaign_queue_status as tables (or --json), from the service's settings when they
    load, else from DATABASE_URL alone (then the ETAs assume the default INBOX_* pacing)."""
    import json

    from app.settings import DatabaseSettings, Settings, SettingsError, load_settings
    from app.status import render
    from app.store.rpc import DatabaseError, Rpc
    from app.store.store import Pacing, Store

    async def fetch(settings: Settings | None, dsn: str | None) -> dict[str, object]:
        rpc: Rpc
        pacing = None
        if settings is not None:
            pacing = Pacing(
                settings.inbox_min_gap_s,
                settings.inbox_max_gap_s,
                settings.inbox_daily_cap,
                settings.inbox_timezone,
            )
            dsn = settings.database_url.get_secret_value() if settings.database_url else None
        if dsn is not None:
            from app.store.postgres import PostgresRpc

            rpc = PostgresRpc(dsn, statement_cache_size=0, max_size=1)
        else:
            from app.store.supabase import SupabaseRpc

            assert settings is not None
            assert settings.supabase_url
            assert settings.supabase_service_role_key
            rpc = await SupabaseRpc.connect(
                settings.supabase_url, settings.supabase_service_role_key.get_secret_value()
            )
        try:
            return await Store(rpc).queue_status(args.run_id, pacing)
        finally:
            await rpc.close()

    settings: Settings | None
    try:
        settings = load_settings()
        dsn = None
    except SettingsError as exc:
        settings = None
        url = DatabaseSettings().database_url
        if url is None:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        dsn = url.get_secret_value()
        print(
            "note: the service's settings do not load; reading DATABASE_URL alone, and the "
            "ETAs assume the default INBOX_* pacing",
            file=sys.stderr,
        )
    try:
        status = asyncio.run(fetch(settings, dsn))
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        print(render(status, run_id=args.run_id), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (uvicorn on $PORT)")
    commands.add_parser("migrate", help="apply sql/ to DATABASE_URL (idempotent)")
    process = commands.add_parser(
        "process",
        help="run one POST /process-queue invocation in-process; its JSON on stdout",
        description="The settings are the service's (environment, .env). The answer goes "
        "to stdout, the service's JSON log lines to stderr (LOG_LEVEL). Exit 0: done; "
        "1: success false (the endpoint's 502); 2: a bad argument or setting; 3: the "
        "database is unavailable.",
    )
    from app.cli import add_process_arguments

    add_process_arguments(process)
    demo = commands.add_parser("demo", help="run one campaign end to end on this machine")
    demo.add_argument("--leads", type=int, default=40, help="leads in the demo (default 40)")
    demo.add_argument(
        "--real",
        action="store_true",
        help="call the real OpenRouter / send endpoint whose keys are set in the environment "
        "(without it, loopback stubs only)",
    )
    status = commands.add_parser(
        "status", help="queue depth, runs' progress, cost and ETA, inboxes, failures"
    )
    status.add_argument("--run-id", type=uuid.UUID, help="only this run (a uuid)")
    status.add_argument("--json", action="store_true", help="the raw JSON instead of tables")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return _migrate()
    if args.command == "serve":
        return _serve()
    if args.command == "process":
        from app.cli import run_process

        return run_process(args)
    if args.command == "status":
        return _status(args)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
