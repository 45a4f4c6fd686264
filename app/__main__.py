"""Command line: `python -m app serve | migrate | process | demo | local | status | run | inbox |
contact`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any, NoReturn

from app.status_page import STATUS_RUNS_DEFAULT, STATUS_RUNS_MAX, STATUS_RUNS_MIN


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line on stderr (`error: ...`) and exit code 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


def _migrate() -> int:
    import asyncpg

    from app.settings import MissingSettingsError, SettingsError, load_database_settings
    from app.store.migrations import ConnectionFailedError, apply_migrations

    missing = "error: missing required setting: DATABASE_URL"
    try:
        dsn = load_database_settings().database_url
    except MissingSettingsError:
        dsn = None
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dsn is None:  # SUPABASE_URL alone cannot run DDL
        print(missing, file=sys.stderr)
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
    from app.serve import serve

    return serve()


def _demo(args: argparse.Namespace) -> int:
    from app.sandbox.demo import run_demo

    return asyncio.run(
        run_demo(leads=args.leads, real=args.real, console=args.console, port=args.port)
    )


def _status_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not STATUS_RUNS_MIN <= value <= STATUS_RUNS_MAX:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from {STATUS_RUNS_MIN} to {STATUS_RUNS_MAX}, not {text!r}"
        )
    return value


def _status(args: argparse.Namespace) -> int:
    """campaign_queue_status as tables (or --json), from the service's settings when they
    load, else from the database settings alone (DATABASE_URL, or SUPABASE_URL and its key;
    then the ETAs assume the default INBOX_* pacing)."""
    import json

    from app.settings import (
        DatabaseSettings,
        Settings,
        SettingsError,
        load_database_settings,
        load_settings,
    )
    from app.status import render
    from app.store.rpc import DatabaseError, Rpc
    from app.store.store import Pacing, Store

    async def fetch(database: Settings | DatabaseSettings, pacing: Pacing | None) -> dict[str, Any]:
        rpc: Rpc
        if database.database_url is not None:
            from app.store.postgres import PostgresRpc

            dsn = database.database_url.get_secret_value()
            rpc = PostgresRpc(dsn, statement_cache_size=0, max_size=1)
        else:
            from app.store.supabase import SupabaseRpc

            assert database.supabase_url
            assert database.supabase_service_role_key
            rpc = await SupabaseRpc.connect(
                database.supabase_url, database.supabase_service_role_key.get_secret_value()
            )
        try:
            return await Store(rpc).queue_status(args.run_id, pacing, args.limit)
        finally:
            await rpc.close()

    database: Settings | DatabaseSettings
    try:
        database = load_settings()
        pacing = Pacing.from_settings(database)
    except SettingsError:
        try:
            database = load_database_settings()
        except SettingsError as exc:  # only the database's settings are needed to watch
            print(f"error: {exc}", file=sys.stderr)
            return 2
        pacing = None
        print(
            "note: the service's settings do not load; reading the database settings alone, "
            "and the ETAs assume the default INBOX_* pacing",
            file=sys.stderr,
        )
    try:
        status = asyncio.run(fetch(database, pacing))
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
    demo.add_argument(
        "--console",
        action="store_true",
        help="then keep the service up with the operator console and data for each of its "
        "parts, printing its address, a made-up OPERATOR_TOKEN and the database, until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="the service's port on 127.0.0.1 (0: any free)"
    )
    local = commands.add_parser(
        "local",
        help="the service on this machine with demo data, until Ctrl-C (embedded Postgres, "
        "loopback stubs)",
    )
    local.add_argument("--port", type=int, default=8765, help="on 127.0.0.1 (0: any free)")
    local.add_argument("--leads", type=int, default=20, help="demo leads due at start (0: none)")
    local.add_argument("--fresh", action="store_true", help="drop the earlier runs' data first")
    local.add_argument(
        "--data-dir", type=Path, help="Postgres's data (default: .local/pg in this folder)"
    )
    status = commands.add_parser(
        "status", help="queue depth, runs' progress, cost and ETA, inboxes, failures"
    )
    status.add_argument("--run-id", type=uuid.UUID, help="only this run (a uuid)")
    status.add_argument(
        "--limit",
        type=_status_limit,
        default=STATUS_RUNS_DEFAULT,
        help=f"the runs shown at most ({STATUS_RUNS_MIN} to {STATUS_RUNS_MAX}, default "
        f"{STATUS_RUNS_DEFAULT}): running first, the most recently active first",
    )
    status.add_argument("--json", action="store_true", help="the raw JSON instead of tables")
    from app.operator_cli import add_operator_commands

    add_operator_commands(commands)
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
    if args.command in ("run", "inbox", "contact"):
        from app.operator_cli import run_operator_command

        return run_operator_command(args)
    if args.command == "local":
        from app.sandbox.local import run_local

        return run_local(args)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
