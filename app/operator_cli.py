"""The operators' actions (app.operator_actions) from a terminal:

    python -m app run pause|resume|cancel|requeue ID [--reason R]
    python -m app inbox set ID [--min-gap-s S] [--max-gap-s S] [--daily-cap N] [--timezone TZ]
                               [--warmup-days N] [--warmup-start-cap N] [--hourly-cap N]
                               [--first-sent-day YYYY-MM-DD]
    python -m app inbox clear|lift-brake ID
    python -m app contact suppress WORKSPACE_ID PHONE [--reason R]
    python -m app contact unsuppress WORKSPACE_ID PHONE

from the database settings alone (DATABASE_URL, or SUPABASE_URL and its key), as `status`
reads them. The action's answer goes to stdout as JSON (a phone masked, as the action answers
it). Exit codes: 0 done; 1 refused (a bad id, a wrong state or a value the database refuses:
the answer says why, nothing changed); 2 a bad argument or setting (one line on stderr naming
it); 3 the database is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import date
from typing import Any

from pydantic import ValidationError

from app import operator_actions as actions
from app.cli import EXIT_DATABASE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from app.operator_actions import CONTACT_ACTIONS, PACING_FIELDS, RUN_ACTIONS, PacingBody
from app.store.rpc import Rpc


def add_operator_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="pause, resume, cancel a run, or requeue its failures")
    run.add_argument("action", choices=RUN_ACTIONS)
    run.add_argument("run_id", type=uuid.UUID, metavar="ID", help="the run (a uuid)")
    run.add_argument(
        "--reason",
        help="pause, cancel: kept on the run; requeue: only this failure reason group "
        "(as `status` shows it), else every failed message",
    )
    inbox = commands.add_parser(
        "inbox", help="set or clear an inbox's pacing overrides, or lift its failure brake"
    )
    inbox.add_argument("action", choices=("set", "clear", "lift-brake"))
    inbox.add_argument("inbox_id", type=uuid.UUID, metavar="ID", help="the inbox (a uuid)")
    inbox.add_argument("--min-gap-s", type=float, metavar="S")
    inbox.add_argument("--max-gap-s", type=float, metavar="S")
    inbox.add_argument("--daily-cap", type=int, metavar="N", help="0: no cap")
    inbox.add_argument("--timezone", metavar="TZ", help="the zone of the cap's calendar day")
    inbox.add_argument("--warmup-days", type=int, metavar="N", help="0: no warm-up")
    inbox.add_argument("--warmup-start-cap", type=int, metavar="N", help="the cap of day 0")
    inbox.add_argument("--hourly-cap", type=int, metavar="N", help="0: no hourly cap")
    inbox.add_argument(
        "--first-sent-day",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the warm-up's day 0, for a number in use before this service sent from it",
    )
    contact = commands.add_parser(
        "contact", help="put a contact on the suppression list, or take it off"
    )
    contact.add_argument("action", choices=CONTACT_ACTIONS)
    contact.add_argument("workspace_id", type=uuid.UUID, metavar="WORKSPACE_ID")
    contact.add_argument("phone", metavar="PHONE", help="as the lead's, e.g. '+55 11 90000-0001'")
    contact.add_argument("--reason", help="suppress: kept on the list")


def run_operator_command(args: argparse.Namespace) -> int:
    from app.settings import SettingsError, load_database_settings

    body: PacingBody | None = None
    misplaced = _misplaced_option(args)
    if misplaced is not None:
        print(f"error: invalid arguments: {misplaced}", file=sys.stderr)
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


def _misplaced_option(args: argparse.Namespace) -> str | None:
    """An option the action does not take, named: `--reason: resume takes no reason`."""
    takes_no_reason = args.command in ("run", "contact") and args.action in ("resume", "unsuppress")
    if takes_no_reason and args.reason is not None:
        return f"--reason: {args.action} takes no reason"
    if args.command == "inbox" and args.action != "set":
        for name in PACING_FIELDS:
            if getattr(args, name) is not None:
                option = "--" + name.replace("_", "-")
                return f"{option}: only `inbox set` takes it, not `inbox {args.action}`"
    return None


async def _act(database: Any, args: argparse.Namespace, body: PacingBody | None) -> dict[str, Any]:
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
        return await _call(rpc, args, body)
    finally:
        await rpc.close()


async def _call(rpc: Rpc, args: argparse.Namespace, body: PacingBody | None) -> dict[str, Any]:
    if args.command == "run":
        return await actions.run_action(rpc, args.action, args.run_id, args.reason)
    if args.command == "contact":
        if args.action == "suppress":
            return await actions.suppress_contact(rpc, args.workspace_id, args.phone, args.reason)
        return await actions.unsuppress_contact(rpc, args.workspace_id, args.phone)
    if args.action == "lift-brake":
        return await actions.lift_inbox_brake(rpc, args.inbox_id)
    if body is not None:
        return await actions.set_inbox_pacing(rpc, args.inbox_id, body)
    return await actions.clear_inbox_pacing(rpc, args.inbox_id)


def _problems(exc: ValidationError) -> str:
    """`--daily-cap: must be >= 0; ...`, the option named."""
    problems = []
    for error in exc.errors(include_url=False):
        names = ["--" + str(part).replace("_", "-") for part in error["loc"]]
        problems.append(f"{' '.join(names) or 'arguments'}: {error['msg']}")
    return "; ".join(problems)
