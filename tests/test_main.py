"""The service's edges: database outage, logs, start-up without settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.main import create_app
from app.sandbox.postgrest import create_postgrest_app
from app.sandbox.seed import seed_campaign
from app.sandbox.server import LoopbackServer
from app.sandbox.service_process import free_port
from app.settings import Settings
from tests.service import SUPABASE_KEY, Service
from tests.stubs import CRON_SECRET, SettingsFactory

DEAD_DSN = "postgresql://postgres:secret-db-password@127.0.0.1:1/postgres"


@pytest.mark.parametrize("store_kind", ["postgres", "supabase"])
async def test_a_database_outage_is_503_with_a_json_error(
    make_settings: SettingsFactory, store_kind: str
) -> None:
    if store_kind == "postgres":
        settings = make_settings(database_url=DEAD_DSN)
        postgrest = None
    else:
        postgrest = LoopbackServer(create_postgrest_app(DEAD_DSN, SUPABASE_KEY), lifespan=True)
        settings = make_settings(
            database_url=None,
            supabase_url=postgrest.start(),
            supabase_service_role_key=SUPABASE_KEY,
        )
    try:
        with LoopbackServer(create_app(settings), lifespan=True) as server:
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    server.url + "/process-queue",
                    headers={"Authorization": f"Bearer {CRON_SECRET}"},
                )
                health = await http.get(server.url + "/healthz")
    finally:
        if postgrest is not None:
            postgrest.stop()
    assert response.status_code == 503
    assert response.json() == {"success": False, "error": "database unavailable"}
    assert health.status_code == 503


async def unavailable_log(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    """Calls the service whose database cannot be reached: its 503, then the log line that
    says why, and the whole log."""
    with LoopbackServer(create_app(settings), lifespan=True) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                server.url + "/process-queue", headers={"X-Cron-Secret": CRON_SECRET}
            )
    assert response.status_code == 503
    output = capfd.readouterr().err
    [line] = [
        json.loads(x) for x in output.splitlines() if '"message": "database unavailable"' in x
    ]
    return line, output


async def test_the_503_log_line_names_the_host_and_what_to_check(
    make_settings: SettingsFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(database_url=f"postgresql://postgres:db-pass-1234@127.0.0.1:{port}/x")
    line, output = await unavailable_log(settings, capfd)
    assert line["severity"] == "ERROR"
    assert line["error"] == (
        f"cannot connect to the database: cannot reach 127.0.0.1:{port} "
        f"(ConnectionRefusedError): is Postgres running at 127.0.0.1:{port}? check DATABASE_URL"
    )
    assert "db-pass-1234" not in output


async def test_the_503_log_line_names_the_supabase_host_and_what_to_check(
    make_settings: SettingsFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(
        database_url=None,
        supabase_url=f"http://127.0.0.1:{port}",
        supabase_service_role_key=SUPABASE_KEY,
    )
    line, output = await unavailable_log(settings, capfd)
    assert line["error"].endswith(
        f"failed: ConnectError: cannot reach 127.0.0.1:{port}; "
        "is SUPABASE_URL right, and its project up?"
    ), line["error"]
    assert SUPABASE_KEY not in output


async def test_logs_hold_no_secret_and_no_full_phone_number(
    service: Service, conn: asyncpg.Connection, capfd: pytest.CaptureFixture[str]
) -> None:
    await seed_campaign(conn, leads=4, split_messages=True, min_chars_to_split=50)
    await seed_campaign(conn, leads=1, inbox_status="disconnected")
    phones = [
        r["phone_number"] for r in await conn.fetch("select phone_number from campaign_messages")
    ]
    from app.sandbox.stubs import Fault

    service.stubs.send.faults.ratios = {Fault.SERVER_ERROR: 0.3}
    response = await service.process()
    assert response.status_code == 200

    output = "".join(capfd.readouterr())
    assert '"severity"' in output  # the service did log
    settings = service.settings
    secrets = [CRON_SECRET, service.stubs.openrouter.api_key, service.stubs.send.service_role_key]
    if settings.database_url is not None:
        secrets.append(settings.database_url.get_secret_value())
    for secret in secrets:
        assert secret not in output
    for phone in phones:
        assert phone not in output
        assert phone.lstrip("+") not in output


def test_start_up_without_settings_names_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    for name in ("DATABASE_URL", "OPENROUTER_API_KEY", "CRON_SECRET", "SEND_URL"):
        assert name in lines[0]


ROOT = Path(__file__).resolve().parent.parent
VALID_ENV = {
    "DATABASE_URL": "postgresql://app:db-password@127.0.0.1:1/app",
    "OPENROUTER_API_KEY": "sk-or-test-key",
    "SEND_URL": "http://127.0.0.1:1/functions/v1/internal-send-ai-message",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "CRON_SECRET": CRON_SECRET,
}


def run_with_env(
    command: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """command from a directory without .env, with only env (and PATH, HOME, LANG) set."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, *command],
        cwd=cwd,
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


NOT_ASCII = (
    "invalid settings: CRON_SECRET: must be printable ASCII (letters, digits, punctuation, "
    "spaces): HTTP clients send other characters in a header differently or not at all"
)
BAD_SETTINGS = [
    ({"BATCH_SIZE": "0"}, "invalid settings: BATCH_SIZE: must be >= 1"),
    ({"MAX_CONCURRENCY": "lots"}, "invalid settings: MAX_CONCURRENCY: not a number"),
    ({"PORT": "abc"}, "invalid settings: PORT: not a number"),
    (
        {"SUPABASE_URL": "project.supabase.co"},
        "invalid settings: SUPABASE_URL: must be a URL starting with http:// or https://",
    ),
    ({"CRON_SECRET": "short"}, "invalid settings: CRON_SECRET: must be at least 16 characters"),
    ({"CRON_SECRET": ""}, "missing required settings: CRON_SECRET"),
    ({"LOCK_TIMEOUT_S": "1"}, "invalid settings: LOCK_TIMEOUT_S: must be >= 2"),
    (
        {"DATABASE_URL": "mysql://x"},
        "invalid settings: DATABASE_URL: must be a Postgres URL starting with postgresql:// "
        "or postgres://",
    ),
    ({"DOCS_ENABLED": "maybe"}, "invalid settings: DOCS_ENABLED: must be true or false"),
    # Never sendable as it is: httpx and browsers refuse such a header, requests sends it as
    # latin-1, curl as the terminal's UTF-8. Refused at start-up rather than a 401 every call.
    ({"CRON_SECRET": "contraseña-del-cron-0123"}, NOT_ASCII),
    ({"CRON_SECRET": "cron-secret-0123\u200b4567"}, NOT_ASCII),  # a zero-width space
    ({"CRON_SECRET": "cron-secret\t0123456789"}, NOT_ASCII),  # a control character
]


@pytest.mark.parametrize(("bad", "line"), BAD_SETTINGS)
def test_serve_with_a_bad_setting_stops_with_one_line(
    tmp_path: Path, bad: dict[str, str], line: str
) -> None:
    result = run_with_env(["-m", "app", "serve"], VALID_ENV | bad, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {line}"]


@pytest.mark.parametrize(("bad", "line"), [BAD_SETTINGS[0], BAD_SETTINGS[5]])
def test_uvicorn_with_a_bad_setting_stops_with_one_line_and_no_traceback(
    tmp_path: Path, bad: dict[str, str], line: str
) -> None:
    result = run_with_env(
        ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0"],
        VALID_ENV | bad,
        tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    ours = [text for text in result.stderr.splitlines() if "settings" in text]
    assert ours == [f"error: {line}"]


def test_uvicorn_without_settings_names_what_is_missing(tmp_path: Path) -> None:
    result = run_with_env(
        ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0"], {}, tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [ours] = [text for text in result.stderr.splitlines() if "settings" in text]
    assert ours.startswith("error: missing required settings: ")
    for name in ("DATABASE_URL", "OPENROUTER_API_KEY", "CRON_SECRET", "SEND_URL"):
        assert name in ours


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"batch_size": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
    ],
)
async def test_a_body_nested_100000_deep_is_422_naming_the_body(
    service: Service, body: str
) -> None:
    response = await service.http.post(
        service.url + "/process-queue",
        content=body,
        headers={"Authorization": f"Bearer {CRON_SECRET}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert "nested too deeply" in error["msg"]


async def test_a_secret_header_with_bytes_that_are_not_ascii_is_a_wrong_secret(
    service: Service,
) -> None:
    """What curl sends for a secret typed with an accent (UTF-8), and what requests sends
    (latin-1): a 401, never a 500; the secret itself is ASCII (start-up refuses any other)."""
    for value in ("contraseña".encode(), "contraseña".encode("latin-1")):
        for headers in ({b"X-Cron-Secret": value}, {b"Authorization": b"Bearer " + value}):
            response = await service.http.post(
                service.url + "/process-queue", headers=headers, timeout=60
            )
            assert response.status_code == 401, headers
