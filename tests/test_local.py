"""`python -m app local` as a person runs it: start, paste what it prints, stop it.

A subprocess with a clean environment and its own Postgres folder; the printed curl lines
and the printed `status` line are run as printed (parsed with shlex, sent with httpx and as
a subprocess), then SIGTERM stops everything within seconds and the exit code is 0.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90  # initdb, migrations and the seed on a shared two-core machine


def clean_env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return base | {"PYTHONPATH": str(ROOT)}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short: Postgres's socket lives there, and a socket path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="cq-local-") as folder:
        yield Path(folder) / "pg"


class Lines:
    """A process's stdout, line by line, read by a thread (a pipe's reads would block)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, first_word: str, timeout_s: float) -> list[str]:
        """The lines up to the one that starts with first_word, or AssertionError."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # it exited
                break
            lines.append(line)
            if line.startswith(first_word):
                return lines
        raise AssertionError(f"no line starting with {first_word!r}: {lines}")

    def rest(self, timeout_s: float) -> list[str]:
        """The lines left once the process has exited."""
        lines: list[str] = []
        while (line := self._queue.get(timeout=timeout_s)) is not None:
            lines.append(line)
        return lines


def curl_request(line: str) -> tuple[str, str, dict[str, str]]:
    """(method, URL, headers) of a printed `curl -sS [-X POST] URL -H 'Name: value'`."""
    words = shlex.split(line)
    assert words[:2] == ["curl", "-sS"], line
    method, headers, url = "GET", {}, ""
    rest = iter(words[2:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        else:
            url = word
    return method, url, headers


@pytest.mark.timeout(START_TIMEOUT_S + 120)
def test_local_serves_what_it_prints_until_sigterm(data_dir: Path) -> None:
    command = ["local", "--port", "0", "--leads", "3", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *command],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout = Lines(process)
    try:
        printed = stdout.until("Ctrl-C", START_TIMEOUT_S)
        curls = [line.strip() for line in printed if line.strip().startswith("curl ")]
        [status_line] = [line.strip() for line in printed if "-m app status" in line]

        post, get = (curl_request(line) for line in curls)
        assert post[0] == "POST"
        assert post[1].startswith("http://127.0.0.1:")
        answer = httpx.request(post[0], post[1], headers=post[2], timeout=60)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["claimed"], answer.json()["processed"]) == (3, 3)
        status = httpx.request(get[0], get[1], headers=get[2], timeout=60)
        assert status.status_code == 200, status.text
        assert status.json()["throughput"]["sent_5m"] == 3

        # The status line: DATABASE_URL=... python3 .../run.py python -m app status
        assignment, *command = shlex.split(status_line)
        name, _, dsn = assignment.partition("=")
        assert name == "DATABASE_URL"
        assert command[-4:] == ["python", "-m", "app", "status"]
        assert command[1] == str(ROOT / "run.py")
        tables = subprocess.run(
            [sys.executable, "-m", "app", "status", "--json"],
            cwd=ROOT,
            env=clean_env() | {"DATABASE_URL": dsn},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert tables.returncode == 0, tables.stderr
        assert json.loads(tables.stdout)["throughput"]["sent_5m"] == 3

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        out = stdout.rest(timeout_s=10)
        assert process.stderr is not None
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    assert process.returncode == 0, err
    assert out == [
        "SIGTERM: stopping the service, stubs, Postgres",
        f"stopped; the data stays in {data_dir} (--fresh starts over)",
    ]
    assert "Traceback" not in err
