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
STOP_TIMEOUT_S = 90  # the service, the stubs and Postgres (its shutdown checkpoint)


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


class Local:
    """`python -m app local ARGS --port 0 --data-dir DIR` as a subprocess, up to its last
    printed line; stop() sends a signal and returns (exit code, the lines it said, stderr)."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        command = ["local", "--port", "0", "--data-dir", str(data_dir), *args]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", *command],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stdout = Lines(self.process)
        try:
            self.printed = self._stdout.until("Ctrl-C", START_TIMEOUT_S)
        except BaseException:
            self.kill()
            raise
        curls = [line.strip() for line in self.printed if line.strip().startswith("curl ")]
        self.post, self.get = (curl_request(line) for line in curls)

    def call(self, request: tuple[str, str, dict[str, str]]) -> httpx.Response:
        method, url, headers = request
        return httpx.request(method, url, headers=headers, timeout=60)

    def stop(self, sig: signal.Signals) -> tuple[int, list[str], str]:
        try:
            self.process.send_signal(sig)
            # Postgres' shutdown checkpoint is what takes time: seconds alone, more than 30 s
            # on a machine busy with other suites. The test is that it stops, not how fast.
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
            assert self.process.stderr is not None
            return code, self._stdout.rest(timeout_s=10), self.process.stderr.read()
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.mark.timeout(START_TIMEOUT_S + STOP_TIMEOUT_S + 120)
def test_local_serves_what_it_prints_until_sigterm(data_dir: Path) -> None:
    local = Local(data_dir, "--leads", "3")
    try:
        assert local.post[0] == "POST"
        assert local.post[1].startswith("http://127.0.0.1:")
        answer = local.call(local.post)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["claimed"], answer.json()["processed"]) == (3, 3)
        status = local.call(local.get)
        assert status.status_code == 200, status.text
        assert status.json()["throughput"]["sent_5m"] == 3

        # The status line: DATABASE_URL=... python3 .../run.py python -m app status
        [status_line] = [line.strip() for line in local.printed if "-m app status" in line]
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
    finally:
        code, said, err = local.stop(signal.SIGTERM)

    assert code == 0, err
    assert said == [
        "SIGTERM: stopping the service, stubs, Postgres",
        f"stopped; the data stays in {data_dir} (--fresh starts over)",
    ]
    assert "Traceback" not in err


@pytest.mark.timeout(3 * (START_TIMEOUT_S + STOP_TIMEOUT_S) + 60)
def test_the_data_survives_a_restart_until_fresh_and_ctrl_c_stops_it_too(data_dir: Path) -> None:
    first = Local(data_dir, "--leads", "2")
    try:
        assert first.call(first.post).json()["processed"] == 2
    finally:
        code, said, _ = first.stop(signal.SIGINT)
    assert code == 0
    assert said[0] == "SIGINT: stopping the service, stubs, Postgres"

    again = Local(data_dir, "--leads", "0")
    try:
        assert any(line.startswith("no new demo leads") for line in again.printed)
        assert again.call(again.get).json()["throughput"]["sent_5m"] == 2  # kept
    finally:
        assert again.stop(signal.SIGTERM)[0] == 0

    fresh = Local(data_dir, "--leads", "0", "--fresh")
    try:
        assert fresh.call(fresh.get).json()["throughput"]["sent_5m"] == 0
    finally:
        assert fresh.stop(signal.SIGTERM)[0] == 0
