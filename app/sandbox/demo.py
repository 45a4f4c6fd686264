"""`python -m app demo`: one campaign end to end on this machine (completed by issue 5)."""

from __future__ import annotations

import sys


async def run_demo(leads: int) -> int:
    print(
        "the demo arrives with POST /process-queue (issue 5); for now: python -m app migrate",
        file=sys.stderr,
    )
    return 1
