"""`python -m app demo --console` in a subprocess, as the browser tests start it: its three
lines, the console it serves on the demo's data (a running run with pending messages, a run
with failed messages of two reason groups), and a clean stop on SIGINT."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.console.helpers import basic, run_rows

ROOT = Path(__file__).resolve().parents[2]


async def read_line(stream: asyncio.StreamReader, timeout_s: float) -> str:
    line = await asyncio.wait_for(stream.readline(), timeout_s)
    assert line, "the demo ended before printing its console lines"
    return line.decode().rstrip("\n")


@pytest.mark.timeout(180)
async def test_demo_console_prints_its_three_lines_and_serves_the_page() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "demo",
        "--console",
        "--leads",
        "4",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert demo.stdout is not None
    try:
        line = ""
        while not line.startswith("console: "):
            line = await read_line(demo.stdout, 120)
        lines = [line, await read_line(demo.stdout, 5), await read_line(demo.stdout, 5)]
        assert re.fullmatch(r"console: http://127\.0\.0\.1:\d+/console", lines[0])
        assert re.fullmatch(r"token: \S{16,}", lines[1])
        assert re.fullmatch(r"database: postgresql://\S+", lines[2])
        url, token = lines[0].split(" ")[1], lines[1].split(" ")[1]

        async with httpx.AsyncClient(timeout=30) as http:
            page = (await http.get(url + "?status=all", headers=basic(token))).text
            running = (await http.get(url + "?status=running", headers=basic(token))).text
        assert len(run_rows(page)) >= 5  # the demo's two, then the failing, later, paused
        pending = [int(n) for n in re.findall(r'data-field="pending">(\d+)', running)]
        assert max(pending) > 0
        groups = re.findall(r'<select name="reason"[^>]*>(.*?)</select>', running, re.S)
        assert len(groups) == 1
        reasons = re.findall(r'<option value="([^"]+)"', groups[0])
        assert len(reasons) >= 2
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
    rest = await asyncio.wait_for(demo.stdout.read(), 30)
    assert await asyncio.wait_for(demo.wait(), 30) == 0
    assert "stopping the console's service" in rest.decode()
