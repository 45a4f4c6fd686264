"""The operator console in a real headless Chromium, on the demo's data.

One `python -m app demo --console --port 0` per session (it runs a campaign end to end, then
keeps the service and its embedded Postgres on 127.0.0.1 and prints `console: <url>`,
`token: <token>` and `database: <dsn>`), one Chromium per session, a new browser context
(own cookies) per page, and a full-page screenshot of every page a test opened, written to
tests/artifacts/ (ignored by git) for a person to look at.

The Chromium is the system's (CHROMIUM, else `chromium` or `chromium-browser` on PATH), driven
by Playwright's Python package; Playwright's own browser download is never used. `run.py test`
leaves these tests out, in one line, where there is none; run here without one they fail.
Every wait is bounded: the demo's start, the browser's launch, each action and navigation.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.browser.helpers import Console, OpenPage, chromium_executable

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

# Playwright adds --headless (headless=True) and a new, empty --user-data-dir of its own for
# each launch (removed at close). Without the background-networking flags Chromium keeps
# opening connections that this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_START_TIMEOUT_S = 120.0  # the demo runs one campaign end to end first (~20 s alone)
DEMO_STOP_TIMEOUT_S = 30.0  # it stops its service, the stubs and Postgres (~4-10 s)
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
WIDE = {"width": 1280, "height": 900}


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _wait_for_console(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> Console:
    wanted = {"console": "", "token": "", "database": ""}
    seen: list[str] = []
    deadline = time.monotonic() + DEMO_START_TIMEOUT_S
    while not all(wanted.values()):
        left = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(left, 0.01)) if left > 0 else None
        except queue.Empty:
            line = None
        if line is None:
            tail = "\n".join(seen[-15:])
            pytest.fail(
                f"`python -m app demo --console` printed no console, token and database "
                f"lines within {DEMO_START_TIMEOUT_S:.0f} s (exit code {process.poll()}); "
                f"its last lines:\n{tail}",
                pytrace=False,
            )
        key, _, value = line.partition(": ")
        if key in wanted and value.strip():
            wanted[key] = value.strip()
        if key != "token":  # a secret stays out of the test output
            seen.append(line)
    assert wanted["console"].startswith("http://127.0.0.1:"), wanted["console"]
    return Console(url=wanted["console"], token=wanted["token"], dsn=wanted["database"])


@pytest.fixture(scope="session")
def console() -> Iterator[Console]:
    """The demo's service with the console, until the session ends (then SIGTERM)."""
    env = {k: v for k, v in os.environ.items() if k != "OPERATOR_TOKEN"}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "demo", "--console", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the embedded Postgres goes with it
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        yield _wait_for_console(process, lines)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=DEMO_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=DEMO_STOP_TIMEOUT_S)
            pytest.fail(f"the demo did not stop within {DEMO_STOP_TIMEOUT_S:.0f} s of SIGTERM")
    assert code == 0, f"the demo ended with exit code {code} on SIGTERM"


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_executable(),
            headless=True,
            args=CHROMIUM_FLAGS,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def open_page(
    browser: Browser, console: Console, request: pytest.FixtureRequest
) -> AsyncIterator[OpenPage]:
    """open_page(**context options) -> a new page in a new browser context (viewport,
    color_scheme, http_credentials, ...). Each is screenshot in full at the end of the test:
    tests/artifacts/<test>.png, then <test>-2.png, ..."""
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    async def opened(**options: Any) -> Page:
        context = await browser.new_context(**{"viewport": WIDE, **options})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        pages.append(page)
        return page

    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    try:
        for number, page in enumerate(pages, start=1):
            suffix = "" if number == 1 else f"-{number}"
            await page.screenshot(path=ARTIFACTS / f"{name}{suffix}.png", full_page=True)
    finally:
        for context in contexts:
            await context.close()


@pytest_asyncio.fixture
async def page(open_page: OpenPage) -> Page:
    """A new page, 1280 px wide, not signed in."""
    return await open_page()


@pytest_asyncio.fixture
async def db(console: Console) -> AsyncIterator[asyncpg.Connection]:
    """The demo's database, read directly (the page must agree with it)."""
    connection = await asyncpg.connect(console.dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()
