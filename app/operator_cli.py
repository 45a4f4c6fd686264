"""`python -m app run pause|resume|cancel|requeue ID [--reason R]` and
`python -m app inbox set ID [--min-gap-s S] [--max-gap-s S] [--daily-cap N] [--timezone TZ]`,
`python -m app inbox clear ID`: the operators' actions (app.operator_actions) from the
database settings alone (DATABASE_URL, or SUPABASE_URL and its key), as `status` reads them.

The action's answer goes to stdout as JSON. Exit codes: 0 done; 1 refused (a bad id or a
wrong state: the answer says why, nothing changed); 2 a bad argument or setting (one line on
stderr naming it); 3 the database is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

from pydantic import ValidationError

from app.cli import EXIT_DATABASE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from app.operator_actions import PACING_FIELDS, RUN_ACTIONS, PacingBody


def add_operator_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="pause, resume, cancel a run, or requeue its failures")
    run.add_argument("action", choices=RUN_ACTIONS)
    run.add_argument("run_id", type=uuid.UUID, metavar="ID", help="the run (a uuid)")
    run.add_argument(
        "--reason",
        help="pause, cancel: kept on the run; requeue: only this failure reason group "
        "(as `status` shows it), else every failed message",
    )
    inbox = commands.add_parser("inbox", help="set or clear an inbox's pacing overrides")
    inbox.add_argument("action", choices=("set", "clear"))
    inbox.add_argument("inbox_id", type=uuid.UUID, metavar="ID", help="the inbox (a uuid)")
    inbox.add_argument("--min-gap-s", type=float, metavar="S")
    inbox.add_argument("--max-gap-s", type=float, metavar="S")
    inbox.add_argument("--daily-cap", type=int, metavar="N", help="0: no cap")
    inbox.add_argument("--timezone", metavar="TZ", help="the zone of the cap's calendar day")


def run_operator_command(args: argparse.Namespace) -> int:
    from app.settings import SettingsError, load_database_settings

    body: PacingBody | None = None
    if args.command == "run" and args.action == "resume" and args.reason is not None:
        print("error: invalid arguments: --reason: resume takes no reason", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "inbox" and args.action == "set":
        given = {name: getattr(args, name) for name in PACING_FIELDS}
        try:
            body = PacingBody.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            print(f"error: invalid arguments: {_problems(exc)}", file=sys.stderr)
            return EXIT_USAGE
    try:
        database = load_database_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from app.store.rpc import DatabaseError

    try:
        answer = asyncio.run(_act(database, args, body))
    except DatabaseError as exc:
        print(f"error: database unavailable: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    print(json.dumps(answer, indent=2))
    if not answer.get("ok"):
        why = answer.get("error") or answer.get("reason")
        print(f"error: refused: {why}; nothing changed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _act(database: Any, args: argparse.Namespace, body: PacingBody | None) -> dict[str, Any]:
    from app.operator_actions import clear_inbox_pacing, run_action, set_inbox_pacing
    from app.store.rpc import Rpc

    rpc: Rpc
    if database.database_url is not None:
        from app.store.postgres import PostgresRpc

        dsn = database.database_url.get_secret_value()
        rpc = PostgresRpc(dsn, statement_cache_size=0, max_size=1)
    else:
        from app.store.supabase import SupabaseRpc

        rpc = await SupabaseRpc.connect(
            database.supabase_url, database.supabase_service_role_key.get_secret_value()
        )
    try:
        if args.command == "run":
            return await run_action(rpc, args.action, args.run_id, args.reason)
        if body is not None:
            return await set_inbox_pacing(rpc, args.inbox_id, body)
        return await clear_inbox_pacing(rpc, args.inbox_id)
    finally:
        await rpc.close()


def _problems(exc: ValidationError) -> str:
    """`--daily-cap: must be >= 0; ...`, the option named."""
    problems = []
    for error in exc.errors(include_url=False):
        names = ["--" + str(part).replace("_", "-") for part in error["loc"]]
        problems.append(f"{' '.join(names) or 'arguments'}: {error['msg']}")
    return "; ".join(problems)
