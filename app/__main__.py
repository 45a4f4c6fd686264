"""Command line: `python -m app serve | migrate | demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys


def _migrate() -> int:
    import asyncpg

    from app.settings import DatabaseSettings
    from app.store.migrations import apply_migrations

    dsn = DatabaseSettings().database_url
    if dsn is None:
        print("error: missing required setting: DATABASE_URL", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(apply_migrations(dsn.get_secret_value()))
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

    return asyncio.run(run_demo(leads=args.leads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (uvicorn on $PORT)")
    commands.add_parser("migrate", help="apply sql/ to DATABASE_URL (idempotent)")
    demo = commands.add_parser("demo", help="run one campaign end to end on this machine")
    demo.add_argument("--leads", type=int, default=40, help="leads in the demo (default 40)")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return _migrate()
    if args.command == "serve":
        return _serve()
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
