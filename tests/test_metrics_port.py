"""METRICS_PORT (README: "Metrics"; app/metrics_port.py): `python -m app serve` as its own
process, as on Fly, with a real Postgres and the loopback stubs. The second listener answers
GET /metrics without a secret and nothing else; the service's port keeps its secret; a bad
METRICS_PORT stops start-up with one line; SIGTERM stops both listeners. And fly.toml's
[metrics] scrapes that port."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import free_port
from tests.stubs import CRON_SECRET, Stubs
from tests.test_metrics import samples

ROOT = Path(__file__).resolve().parent.parent
BEARER = {"Authorization": f"Bearer {CRON_SECRET}"}


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # the service's port
    metrics_url: str  # the metrics port, /metrics included
    lines: list[str]  # what serve said on stderr, its JSON log left out


def service_env(stubs: Stubs, dsn: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return (
        base
        | {"PYTHONPATH": str(ROOT)}
        | stubs.env()
        | {
            "DATABASE_URL": dsn,
            "CRON_SECRET": CRON_SECRET,
            "INBOX_MIN_GAP_S": "0",
            "LOG_LEVEL": "WARNING",
        }
        | extra
    )


def plain(line: str) -> bool:
    return bool(line) and not line.startswith("{")


def start_serve(
    env: dict[str, str], cwd: Path, said: int
) -> tuple[subprocess.Popen[str], list[str]]:
    """`python -m app serve`, and its first `said` plain lines (30 s at most). A thread reads
    stderr (select would miss lines already in the reader's buffer); the rest stays in the
    pipe for communicate()."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    stderr = process.stderr
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        found = 0
        while found < said and (line := stderr.readline()):
            if plain(line):
                lines.put(line.rstrip("\n"))
                found += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    return process, [lines.get() for _ in range(lines.qsize())]


@pytest.fixture
def served(stubs: Stubs, db_dsn: str, tmp_path: Path) -> Iterator[Served]:
    port, metrics_port = free_port(), free_port()
    env = service_env(stubs, db_dsn, PORT=str(port), METRICS_PORT=str(metrics_port))
    process, lines = start_serve(env, tmp_path, said=2)
    try:
        assert len(lines) == 2, lines
        yield Served(
            process,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{metrics_port}/metrics",
            lines,
        )
    finally:
        process.kill()
        process.wait(timeout=30)


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


async def test_the_metrics_port_answers_metrics_without_a_secret(
    served: Served, conn: asyncpg.Connection
) -> None:
    """The same process's registry as the service's port: a call's counts show on both."""
    await seed_campaign(conn, leads=2)
    await seed_campaign(conn, leads=3, run_status="paused")
    async with httpx.AsyncClient(timeout=30) as http:
        call = await http.post(served.url + "/process-queue", headers=BEARER)
        assert call.json()["processed"] == 2, call.text
        private = await http.get(served.metrics_url)
        public = await http.get(served.url + "/metrics", headers=BEARER)

    assert served.lines[1].startswith("campaign-queue: metrics without a secret on http://")
    assert private.status_code == 200, private.text
    assert private.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(private.text)
    assert found[("campaign_queue_messages_total", (("outcome", "processed"),))] == 2
    assert found[("campaign_queue_send_seconds_count", ())] == 2
    assert found[("campaign_queue_runs", (("status", "paused"),))] == 1
    assert found[("campaign_queue_runs_active", ())] == 1  # the sent run completed
    assert found[("campaign_queue_due", ())] == 0  # the paused run's are not due
    assert found == samples(public.text)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/status", 404),
        ("POST", "/process-queue", 404),
        ("GET", "/healthz", 404),
        ("GET", "/docs", 404),
        ("GET", "/", 404),
        ("GET", "/metrics/", 404),
        ("POST", "/metrics", 405),
    ],
)
async def test_the_metrics_port_answers_nothing_else(
    served: Served, conn: asyncpg.Connection, method: str, path: str, code: int
) -> None:
    await seed_campaign(conn, leads=2)
    base = served.metrics_url.removesuffix("/metrics")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.request(method, base + path, headers=BEARER)

    assert response.status_code == code
    assert response.json()["success"] is False
    # Nothing was sent, even with the secret.
    assert await conn.fetchval("select count(*) from campaign_messages where status = 'sent'") == 0


async def test_the_service_port_still_needs_the_secret_for_metrics(served: Served) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        without = await http.get(served.url + "/metrics")
        wrong = await http.get(served.url + "/metrics", headers={"X-Cron-Secret": "x" * 20})
        with_secret = await http.get(served.url + "/metrics", headers=BEARER)

    assert (without.status_code, wrong.status_code) == (401, 401)
    assert without.json() == {"success": False, "error": "unauthorized"}
    assert with_secret.status_code == 200
    assert "campaign_queue_due" in with_secret.text


async def test_the_metrics_port_takes_the_scrapers_format_and_gzip(served: Served) -> None:
    """prometheus_client's ASGI app answers: OpenMetrics when the Accept header asks for it,
    gzip when the scraper takes it (Fly's VictoriaMetrics and Prometheus both do)."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(
            served.metrics_url,
            headers={
                "Accept": "application/openmetrics-text; version=1.0.0",
                "Accept-Encoding": "gzip",
            },
        )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")  # httpx took the gzip off
    names = {
        family.name
        for family in text_string_to_metric_families(response.text.replace("# EOF\n", ""))
    }
    assert {"campaign_queue_due", "campaign_queue_messages"} <= names


def test_sigterm_stops_both_listeners(served: Served) -> None:
    assert httpx.get(served.metrics_url, timeout=30).status_code == 200
    served.process.send_signal(signal.SIGTERM)
    _, rest = served.process.communicate(timeout=30)

    assert served.process.returncode == 0, rest
    assert [line for line in rest.splitlines() if plain(line)] == [
        "campaign-queue: SIGTERM: stopping; the calls in progress finish first",
        "campaign-queue: stopped",
    ]
    assert refused(served.metrics_url)
    assert refused(served.url + "/healthz")


# --- start-up: a bad METRICS_PORT is one line ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "same",
            "error: invalid settings: METRICS_PORT: must differ from PORT (the service's "
            "port, where /metrics needs the secret)",
        ),
        ("0", "error: invalid settings: METRICS_PORT: must be >= 1"),
        ("70000", "error: invalid settings: METRICS_PORT: must be <= 65535"),
        ("9091.5", "error: invalid settings: METRICS_PORT: not a whole number"),
        ("metrics", "error: invalid settings: METRICS_PORT: not a number"),
    ],
)
def test_a_bad_metrics_port_stops_start_up_with_one_line(
    stubs: Stubs, tmp_path: Path, value: str, line: str
) -> None:
    port = str(free_port())
    env = service_env(stubs, "postgresql://app:pw@127.0.0.1:1/app", PORT=port)
    env["METRICS_PORT"] = port if value == "same" else value
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_a_metrics_port_already_taken_stops_start_up_with_one_line(
    stubs: Stubs, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = service_env(
            stubs,
            "postgresql://app:pw@127.0.0.1:1/app",
            PORT=str(free_port()),
            METRICS_PORT=str(busy),
        )
        result = subprocess.run(
            [sys.executable, "-m", "app", "serve"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: METRICS_PORT: cannot listen on port {busy}: Address already in use"
    ]


def test_without_metrics_port_there_is_no_second_listener(
    stubs: Stubs, db_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    process, lines = start_serve(service_env(stubs, db_dsn, PORT=str(port)), tmp_path, said=1)
    try:
        assert lines == [
            f"campaign-queue: listening on http://0.0.0.0:{port} (Ctrl-C or SIGTERM stops it)"
        ]
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert "metrics" not in " ".join(line for line in rest.splitlines() if plain(line))


# --- fly.toml -------------------------------------------------------------------------------


def test_fly_scrapes_the_metrics_port_which_is_not_public() -> None:
    with (ROOT / "fly.toml").open("rb") as file:
        fly = tomllib.load(file)
    metrics, env = fly["metrics"], fly["env"]
    assert metrics["port"] == int(env["METRICS_PORT"])
    assert metrics["path"] == "/metrics"
    assert metrics["processes"] == ["app"]
    assert metrics["port"] != int(env["PORT"])
    public = [fly["http_service"]["internal_port"]]
    public += [service["internal_port"] for service in fly.get("services", [])]
    assert metrics["port"] not in public
