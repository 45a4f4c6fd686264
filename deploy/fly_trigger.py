"""Fly.io's scheduler: POST /process-queue once a minute, from the same app.

Fly's scheduled machines run at most hourly, so fly.toml runs this loop as a second process
group (`trigger`) of the app, from the same image: standard library only, nothing to install.

Every TRIGGER_INTERVAL_S (60) it posts `{}` to TRIGGER_URL with the service's CRON_SECRET
(`Authorization: Bearer`, the secret set with `fly secrets set`, which every process group of
the app receives) and logs one JSON line with the status and the answer's counts; a status
other than 2xx logs at severity ERROR.

A call can last longer than Fly's proxy keeps a silent connection open (it closes one idle
for 60 s; a call sends nothing until it answers): so each call waits at most
TRIGGER_TIMEOUT_S (55) for its answer, then hangs up, and a connection the proxy closes after
the request went out counts the same way. Both are logged as WARNING "no answer": the service
finishes what the call started either way. Only a call that never reached the service (no
connection) or an error status is an ERROR. Why 55 s, and every other timeout:
deploy/README.md, "How long a call lasts".

Calls run in their own threads, so a slow call never delays the next minute's call
(overlapping calls are safe); at most TRIGGER_MAX_IN_FLIGHT (3) at once.

    python deploy/fly_trigger.py           # the loop (fly.toml's [processes] trigger)
    python deploy/fly_trigger.py --once    # one call, its answer printed; exit 0 on a 2xx
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class TriggerSettingsError(ValueError):
    """str() is one line naming each bad setting, never a value."""


@dataclass(frozen=True)
class TriggerSettings:
    url: str
    secret: str
    interval_s: float = 60.0
    timeout_s: float = 55.0  # under the 60 s after which Fly's proxy closes a silent connection
    max_in_flight: int = 3
    body: bytes = b"{}"


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no answer (timeout, connection refused)
    answer: Any
    ms: int
    error: str | None = None
    timed_out: bool = False  # no answer within the timeout: the trigger hung up
    cut_off: bool = False  # the connection closed after the request went out (Fly's proxy)

    @property
    def unanswered(self) -> bool:
        """The request reached the service, which goes on with the call: not an error."""
        return self.timed_out or self.cut_off

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def settings_from_env(env: Mapping[str, str]) -> TriggerSettings:
    problems: list[str] = []
    secret = env.get("CRON_SECRET", "").strip()
    if not secret:
        problems.append("CRON_SECRET: missing (fly secrets set CRON_SECRET=...)")
    url = env.get("TRIGGER_URL", "").strip()
    if not url and env.get("FLY_APP_NAME"):
        url = f"https://{env['FLY_APP_NAME']}.fly.dev/process-queue"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("TRIGGER_URL: missing or not an http(s) URL (and no FLY_APP_NAME)")

    def number(name: str, default: float, low: float, high: float) -> float:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            problems.append(f"{name}: not a number")
            return default
        if not low <= value <= high:
            problems.append(f"{name}: must be between {low:g} and {high:g}")
        return value

    interval = number("TRIGGER_INTERVAL_S", 60.0, 1, 3600)
    timeout = number("TRIGGER_TIMEOUT_S", 55.0, 1, 3600)
    in_flight = number("TRIGGER_MAX_IN_FLIGHT", 3, 1, 100)
    body = env.get("TRIGGER_BODY", "").strip() or "{}"
    try:
        if not isinstance(json.loads(body), dict):
            problems.append("TRIGGER_BODY: must be a JSON object")
    except ValueError:
        problems.append("TRIGGER_BODY: not valid JSON")
    if problems:
        raise TriggerSettingsError("invalid trigger settings: " + "; ".join(problems))
    return TriggerSettings(url, secret, interval, timeout, int(in_flight), body.encode())


def call_once(settings: TriggerSettings) -> Outcome:
    """One POST; never raises for a network problem (the outcome says what happened)."""
    request = urllib.request.Request(
        settings.url,
        data=settings.body,
        method="POST",
        headers={
            "Authorization": f"Bearer {settings.secret}",
            "Content-Type": "application/json",
            "User-Agent": "campaign-queue fly_trigger",
        },
    )
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as answer:
            return Outcome(answer.status, _json(answer.read()), elapsed())
    except urllib.error.HTTPError as exc:  # 401, 422, 502, 503: the body says why
        with exc:
            return Outcome(exc.code, _json(exc.read()), elapsed())
    except urllib.error.URLError as exc:  # raised before the request went out: it never arrived
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Outcome(None, None, elapsed(), f"no connection within {settings.timeout_s:g} s")
        return Outcome(None, None, elapsed(), f"{type(reason).__name__}: {reason}")
    # Raised while waiting for the answer: the request went out, and the call goes on.
    except TimeoutError:
        error = f"no answer within {settings.timeout_s:g} s; the call goes on in the service"
        return Outcome(None, None, elapsed(), error, timed_out=True)
    except (OSError, http.client.HTTPException) as exc:  # reset, closed, cut mid-answer
        error = (
            f"the connection closed before the answer ({type(exc).__name__}); "
            "the call goes on in the service"
        )
        return Outcome(None, None, elapsed(), error, cut_off=True)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace")


def log_outcome(outcome: Outcome, stream: Any = None) -> None:
    """One JSON line: INFO for a 2xx, WARNING when no answer came back (the call goes on in the
    service), else ERROR."""
    severity = "INFO" if outcome.ok else "WARNING" if outcome.unanswered else "ERROR"
    line: dict[str, Any] = {
        "severity": severity,
        "message": "process-queue called",
        "status": outcome.status,
        "ms": outcome.ms,
    }
    if outcome.error:
        line["error"] = outcome.error
    if outcome.answer is not None:
        line["answer"] = outcome.answer
    print(json.dumps(line, ensure_ascii=False), file=stream or sys.stdout, flush=True)


def run_forever(settings: TriggerSettings, stop: threading.Event | None = None) -> None:
    """Calls at start and then every interval, on a fixed beat, each call in its own thread."""
    stop = stop or threading.Event()
    slots = threading.BoundedSemaphore(settings.max_in_flight)

    def one_call() -> None:
        try:
            log_outcome(call_once(settings))
        finally:
            slots.release()

    beat = time.monotonic()
    while not stop.is_set():
        if slots.acquire(blocking=False):
            threading.Thread(target=one_call, daemon=True).start()
        else:
            print(
                json.dumps(
                    {
                        "severity": "WARNING",
                        "message": "call skipped: earlier calls still waiting for answers",
                        "in_flight": settings.max_in_flight,
                    }
                ),
                flush=True,
            )
        beat += settings.interval_s
        stop.wait(max(0.0, beat - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/fly_trigger.py", description=__doc__)
    parser.add_argument("--once", action="store_true", help="one call, then exit")
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env(os.environ)
    except TriggerSettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.once:
        outcome = call_once(settings)
        log_outcome(outcome)
        return 0 if outcome.ok else 1
    stop = threading.Event()  # fly.toml's kill_signal (SIGTERM), or Ctrl-C: stop calling
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        run_forever(settings, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
