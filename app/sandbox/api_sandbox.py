"""`python -m app.sandbox.api_sandbox`: the service with its API docs on, against the sandbox,
for a schema-driven fuzzer (`python -m app local` is the same for a person, with its data kept).

A temporary embedded Postgres with sql/ applied and a seeded campaign, the loopback stubs for
OpenRouter and the send endpoint, and the app on 127.0.0.1 with DOCS_ENABLED, so a fuzzer can
run against /openapi.json (from this folder; run.py gets uv when the machine has none):

    python3 run.py python -m app.sandbox.api_sandbox --port 8765 \\
        --secret-file /tmp/api-sandbox-secret &
    python3 run.py uv run --frozen --no-dev --with schemathesis schemathesis run \\
        http://127.0.0.1:8765/openapi.json --checks all --continue-on-failure \\
        -H "Authorization: Bearer $(cat /tmp/api-sandbox-secret)"

It prints the URL and the CRON_SECRET it made up for this run (also written to
--secret-file when given), and runs until interrupted or for --seconds. Nothing leaves this
machine: the stubs stand in for OpenRouter and the send endpoint.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from app.sandbox.local import sandboxed_service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.sandbox.api_sandbox")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")
    parser.add_argument("--leads", type=int, default=20, help="messages due at start")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--secret-file", type=Path, help="also write the CRON_SECRET here")
    args = parser.parse_args(argv)

    stop = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with sandboxed_service(leads=args.leads, port=args.port) as service:
        if args.secret_file is not None:
            args.secret_file.write_text(service.cron_secret + "\n", encoding="utf-8")
        print(f"service on {service.url} (docs: {service.url}/docs)", flush=True)
        print(f"CRON_SECRET={service.cron_secret} (made up for this run)", flush=True)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
