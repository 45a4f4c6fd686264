"""`python -m app process`: one invocation in-process, the endpoint's JSON on stdout.

For manual reprocessing without a server (e.g. `--run-id ID --requeue-failed`). The body is
validated as the endpoint validates it (app.api_models.ProcessQueueBody); the services are
built and closed as the service's lifespan does. Exit codes:
0 the call ran (the endpoint's 200); 1 it ran but `success` is false (the endpoint's 502), or
a bug (500); 2 a bad argument or setting (one line on stderr naming it); 3 the database is
unavailable (the endpoint's 503; one line on stderr saying what to check).

SIGTERM drains the call as it drains the service (app/shutdown.py): it starts nothing new,
finishes or gives back what it holds, prints the answer and exits as above; a second SIGTERM
terminates it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:  # the service's modules load only when `process` runs
    from app.api_models import ProcessQueueBody
    from app.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3

_OPTIONS = {
    "batch_size": "--batch-size",
    "concurrency": "--concurrency",
    "max_messages": "--max-messages",
    "time_budget_s": "--time-budget-s",
    "run_id": "--run-id",
    "requeue_failed": "--requeue-failed",
}


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", metavar="ID", help="only this run's messages (a uuid)")
    parser.add_argument(
        "--requeue-failed",
        action="store_true",
        help="first put the run's failed messages back in the queue (needs --run-id)",
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="messages per claim (1..100)")
    parser.add_argument(
        "--concurrency", type=int, metavar="N", help="messages worked at once (1..50)"
    )
    parser.add_argument(
        "--max-messages", type=int, metavar="N", help="most messages this call claims (1..10000)"
    )
    parser.add_argument(
        "--time-budget-s",
        type=float,
        metavar="S",
        help="seconds after which no new message starts (1..3600)",
    )


def run_process(args: argparse.Namespace) -> int:
    from app.api_models import ProcessQueueBody
    from app.settings import SettingsError, load_settings

    given = {name: getattr(args, name) for name in _OPTIONS}
    if not given["requeue_failed"]:
        del given["requeue_failed"]
    try:
        body = ProcessQueueBody.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        print(f"error: {_argument_problems(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings()
    except SettingsError as exc:  # missing or invalid: one line naming them, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code, answer, problem = asyncio.run(_process(settings, body))
    print(json.dumps(answer))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return code


async def _process(
    settings: Settings, body: ProcessQueueBody
) -> tuple[int, dict[str, Any], str | None]:
    """(exit code, the endpoint's JSON answer, the line for stderr or None)."""
    from app.logs import configure_logging, log
    from app.main import build_services, close_services, start_invocation
    from app.shutdown import drain_on_sigterm
    from app.startup import secrets_of
    from app.store.rpc import DatabaseError

    configure_logging(settings.log_level, secrets_of(settings))
    services = await build_services(settings)
    undo_drain = drain_on_sigterm(services.processor.drain)  # as the service drains
    try:
        result = await start_invocation(services, body)
    except DatabaseError as exc:
        hint = "" if settings.database_url is not None else " (check SUPABASE_URL)"
        answer = {"success": False, "error": "database unavailable"}
        return EXIT_DATABASE, answer, f"database unavailable: {exc}{hint}"
    except Exception:  # a bug: the endpoint's 500, the details in the log
        log.exception("process failed")
        return EXIT_FAILED, {"success": False, "error": "internal error"}, None
    finally:
        undo_drain()
        await close_services(services)
    return (EXIT_OK if result.success else EXIT_FAILED), result.model_dump(), None


def _argument_problems(exc: ValidationError) -> str:
    """`invalid arguments: --batch-size: must be <= 100; ...`, one line, the option named."""
    from app.api_models import REQUEUE_NEEDS_RUN_ID

    problems = []
    for error in exc.errors(include_url=False):
        names = [_OPTIONS.get(str(part), str(part)) for part in error["loc"]]
        ctx = error.get("ctx") or {}
        kind = error["type"]
        if kind == REQUEUE_NEEDS_RUN_ID:
            names, why = ["--requeue-failed"], "needs --run-id"
        elif kind in _BOUNDS:
            symbol, key = _BOUNDS[kind]
            why = f"must be {symbol} {ctx.get(key)}"
        elif kind == "uuid_parsing":
            why = "not a uuid"
        else:
            why = error["msg"]
        problems.append(f"{' '.join(names) or 'arguments'}: {why}")
    return "invalid arguments: " + "; ".join(problems)


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "less_than_equal": ("<=", "le"),
}
