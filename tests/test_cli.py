"""The command line: `process` (one invocation in-process, against a real embedded database
and the loopback stubs), `serve`'s start-up line, and what a connection failure says.

`process` runs in-process through app.__main__.main, in a thread of its own (it calls
asyncio.run), with the settings in the environment; a few cases run it as an operator would,
as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.__main__ import main
from app.sandbox.seed import seed_campaign
from app.sandbox.service_process import free_port
from app.sandbox.stubs import Fault
from app.settings import Settings
from app.startup import effective_settings, store_kind
from app.store.postgres import describe_connection_failure
from tests.stubs import CRON_SECRET, Stubs

ROOT = Path(__file__).resolve().parent.parent
DB_PASSWORD = "s3cret-db-pass"


def dead_dsn() -> str:
    """Nothing listens there: a connection is refused at once."""
    return f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{free_port()}/postgres"


def stub_env(stubs: Stubs, database_url: str) -> dict[str, str]:
    return stubs.env() | {
        "DATABASE_URL": database_url,
        "CRON_SECRET": CRON_SECRET,
        "RETRY_BASE_S": "0.01",
        "RETRY_MAX_WAIT_S": "0.5",
        "INBOX_MIN_GAP_S": "0",
        "INBOX_MAX_GAP_S": "0",
        "INBOX_DAILY_CAP": "0",
    }


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A directory without .env, and no setting in the environment but those a test sets."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def exit_code(argv: list[str]) -> int | str | None:
    """main's return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exited:
        return exited.code


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m app ...argv`, in-process."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def plain_lines(stderr: str) -> list[str]:
    """stderr without the JSON log lines: what the CLI itself says."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


# --- process -----------------------------------------------------------------------------


async def test_process_runs_one_invocation_and_prints_the_endpoints_json(
    cli_env: pytest.MonkeyPatch,
    stubs: Stubs,
    db_dsn: str,
    conn: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed_campaign(conn, leads=5)
    set_env(cli_env, stub_env(stubs, db_dsn))

    code, out, err = await run_cli(
        ["process", "--batch-size", "2", "--concurrency", "2", "--max-messages", "4"], capsys
    )

    assert code == 0, err
    answer = json.loads(out)
    assert answer["success"] is True
    assert (answer["claimed"], answer["processed"], answer["failed"]) == (4, 4, 0)
    assert answer["circuit_open"] is None
    assert set(answer) >= {"released", "old_skipped", "duration_ms", "paused", "skipped"}
    sent = await conn.fetchval("select count(*) from campaign_messages where status = 'sent'")
    assert sent == 4
    assert len(stubs.send.deliveries) == 4
    assert plain_lines(err) == []


async def test_process_requeues_one_runs_failed_messages(
    cli_env: pytest.MonkeyPatch,
    stubs: Stubs,
    db_dsn: str,
    conn: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = await seed_campaign(conn, leads=2)
    other = await seed_campaign(conn, leads=1)
    await conn.execute(
        "update campaign_messages set status = 'failed' where run_id = $1", failed.run_id
    )
    set_env(cli_env, stub_env(stubs, db_dsn))

    code, out, err = await run_cli(
        ["process", "--run-id", str(failed.run_id), "--requeue-failed", "--time-budget-s", "30"],
        capsys,
    )

    assert code == 0, err
    assert json.loads(out)["processed"] == 2
    rows = await conn.fetch("select run_id, status from campaign_messages")
    assert sorted((r["run_id"] == other.run_id, r["status"]) for r in rows) == [
        (False, "sent"),
        (False, "sent"),
        (True, "pending"),  # another run: untouched
    ]


async def test_process_exits_1_when_the_answer_is_a_failure(
    cli_env: pytest.MonkeyPatch,
    stubs: Stubs,
    db_dsn: str,
    conn: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed_campaign(conn, leads=2)
    stubs.openrouter.faults.ratios = {Fault.STATUS: 1.0}
    stubs.openrouter.faults.status = 402
    set_env(cli_env, stub_env(stubs, db_dsn))

    code, out, _ = await run_cli(["process", "--concurrency", "1"], capsys)

    assert code == 1
    answer = json.loads(out)
    assert answer["success"] is False
    assert "402" in answer["circuit_open"]
    assert answer["failed"] == 0


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--batch-size", "101"], "--batch-size: must be <= 100"),
        (["--concurrency", "51"], "--concurrency: must be <= 50"),
        (["--max-messages", "0"], "--max-messages: must be >= 1"),
        (["--time-budget-s", "0.5"], "--time-budget-s: must be >= 1"),
        (["--time-budget-s", "nan"], "--time-budget-s"),
        (["--run-id", "not-a-uuid"], "--run-id: not a uuid"),
        (["--requeue-failed"], "--requeue-failed: needs --run-id"),
        (["--batch-size", "abc"], "--batch-size: invalid int value: 'abc'"),
        (["--batch-size", "5.5"], "--batch-size: invalid int value: '5.5'"),
        (["--batch-size"], "--batch-size: expected one argument"),
        (["--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_process_with_a_bad_argument_exits_2_with_one_line_naming_it(
    cli_env: pytest.MonkeyPatch,
    stubs: Stubs,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: str,
) -> None:
    set_env(cli_env, stub_env(stubs, dead_dsn()))  # never reached: the arguments come first

    assert exit_code(["process", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("error: ")
    assert named in line


def test_process_with_a_bad_setting_exits_2_with_one_line_naming_it(
    cli_env: pytest.MonkeyPatch, stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    env = stub_env(stubs, dead_dsn())
    del env["CRON_SECRET"]
    set_env(cli_env, env | {"BATCH_SIZE": "0"})

    code = main(["process"])

    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: invalid settings: BATCH_SIZE: must be >= 1; missing required settings: CRON_SECRET"
    ]


async def test_process_with_the_database_down_exits_3_with_one_line(
    cli_env: pytest.MonkeyPatch, stubs: Stubs, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = dead_dsn()
    set_env(cli_env, stub_env(stubs, dsn))
    port = dsn.rsplit(":", 1)[1].split("/")[0]

    code, out, err = await run_cli(["process"], capsys)

    assert code == 3
    assert json.loads(out) == {"success": False, "error": "database unavailable"}
    [line] = plain_lines(err)
    assert line.startswith("error: database unavailable: ")
    assert f"127.0.0.1:{port}" in line
    assert "check DATABASE_URL" in line
    assert DB_PASSWORD not in err
    assert stubs.openrouter.requests == 0


def run_app(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=cwd,
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_process_as_a_subprocess_keeps_stdout_for_the_json(
    tmp_path: Path, stubs: Stubs, db_dsn: str, conn: asyncpg.Connection
) -> None:
    await seed_campaign(conn, leads=2)

    result = await asyncio.to_thread(
        run_app, ["process"], stub_env(stubs, db_dsn) | {"LOG_LEVEL": "DEBUG"}, tmp_path
    )

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["processed"] == 2


def test_process_as_a_subprocess_with_the_database_down(tmp_path: Path, stubs: Stubs) -> None:
    result = run_app(["process"], stub_env(stubs, dead_dsn()), tmp_path)

    assert result.returncode == 3
    assert json.loads(result.stdout) == {"success": False, "error": "database unavailable"}
    [line] = plain_lines(result.stderr)
    assert "is Postgres running at 127.0.0.1:" in line
    assert DB_PASSWORD not in result.stderr


# --- serve's start-up line ---------------------------------------------------------------


def test_serve_logs_one_start_up_line_without_secrets(tmp_path: Path, stubs: Stubs) -> None:
    dsn = f"postgresql://app_user:{DB_PASSWORD}@127.0.0.1:{free_port()}/campaigns"
    env = stub_env(stubs, dsn) | {"PORT": str(free_port())}
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "campaign-queue starting" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)

    starts = [json.loads(x) for x in lines if "campaign-queue starting" in x]
    assert len(starts) == 1, lines
    [start] = starts
    assert start["severity"] == "INFO"
    assert start["version"] == version("campaign-queue")
    assert start["store"] == "asyncpg"
    shown = start["settings"]
    assert shown["database_url"] == {
        "host": "127.0.0.1",
        "port": int(dsn.rsplit(":", 1)[1].split("/")[0]),
        "database": "campaigns",
    }
    assert shown["openrouter_api_key"] == "set"
    assert shown["cron_secret"] == "set"
    assert shown["supabase_service_role_key"] == "set"
    assert shown["send_url"] == env["SEND_URL"]
    assert shown["port"] == int(env["PORT"])
    assert shown["docs_enabled"] is False
    text = "".join(lines)
    for secret in (DB_PASSWORD, dsn, CRON_SECRET, stubs.openrouter.api_key, "app_user"):
        assert secret not in text
    assert stubs.send.service_role_key not in text


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_says_where_it_listens_and_when_a_signal_stops_it(
    tmp_path: Path, stubs: Stubs, stop: signal.Signals
) -> None:
    port = free_port()
    env = stub_env(stubs, dead_dsn()) | {"PORT": str(port), "LOG_LEVEL": "WARNING"}
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        ready, _, _ = select.select([process.stderr], [], [], 30)  # the server listens
        first = process.stderr.readline() if ready else "(nothing in 30 s)"
        process.send_signal(stop)
        _, rest = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert process.returncode == 0, first + rest
    assert first == (
        f"campaign-queue: listening on http://0.0.0.0:{port} (Ctrl-C or SIGTERM stops it)\n"
    )
    assert [line for line in rest.splitlines() if not line.startswith("{")] == [
        f"campaign-queue: {stop.name}: stopping; the calls in progress finish first",
        "campaign-queue: stopped",
    ]


def test_the_effective_settings_never_show_a_secret(stubs: Stubs) -> None:
    values: dict[str, Any] = {k.lower(): v for k, v in stubs.env().items()}
    values.update(
        supabase_url="https://user:url-password@abcd.supabase.co/?apikey=query-token",
        supabase_service_role_key="service-role-secret",
        send_url="https://hooks.example/send?token=send-token#frag",
        openrouter_base_url="https://me:or-pass@openrouter.example/api/v1",
        cron_secret=CRON_SECRET,
    )
    settings = Settings.model_validate(values)

    shown = effective_settings(settings)

    assert store_kind(settings) == "supabase"
    assert shown["database_url"] is None
    assert shown["supabase_url"] == "https://abcd.supabase.co/"
    assert shown["send_url"] == "https://hooks.example/send"
    assert shown["openrouter_base_url"] == "https://openrouter.example/api/v1"
    assert set(shown) >= set(Settings.model_fields)
    text = json.dumps(shown)
    for secret in (
        "url-password",
        "query-token",
        "service-role-secret",
        "send-token",
        "or-pass",
        CRON_SECRET,
        stubs.openrouter.api_key,
    ):
        assert secret not in text


# --- what a connection failure says -------------------------------------------------------


def test_migrate_against_an_unreachable_port_names_it_and_what_to_check(tmp_path: Path) -> None:
    dsn = dead_dsn()
    port = dsn.rsplit(":", 1)[1].split("/")[0]

    result = run_app(["migrate"], {"DATABASE_URL": dsn}, tmp_path)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: migrations not applied: cannot reach 127.0.0.1:{port} (ConnectionRefusedError): "
        f"is Postgres running at 127.0.0.1:{port}? check DATABASE_URL"
    ]


@pytest.mark.parametrize(
    ("dsn", "exc", "line"),
    [
        (
            f"postgresql://postgres:{DB_PASSWORD}@db.abcdefghijklmnop.supabase.co:5432/postgres",
            OSError(101, "Network is unreachable"),
            "cannot reach db.abcdefghijklmnop.supabase.co:5432 (OSError): Supabase's direct host "
            "is IPv6 only unless you bought the IPv4 add-on: use the session pooler for "
            "migrate, the transaction pooler for the service",
        ),
        (
            f"postgresql://postgres.abcd:{DB_PASSWORD}@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
            TimeoutError(),
            "cannot reach aws-0-eu-west-1.pooler.supabase.com:6543 (TimeoutError): is Postgres "
            "running at aws-0-eu-west-1.pooler.supabase.com:6543? check DATABASE_URL",
        ),
        (
            f"postgresql://postgres:{DB_PASSWORD}@localhost/app",
            ConnectionRefusedError(111, "refused"),
            "cannot reach localhost:5432 (ConnectionRefusedError): is Postgres running at "
            "localhost:5432? check DATABASE_URL",
        ),
        (
            "postgresql://postgres@/app?host=/run/postgresql",
            FileNotFoundError(2, "no socket"),
            "cannot reach the socket in /run/postgresql (FileNotFoundError): is Postgres "
            "running at the socket in /run/postgresql? check DATABASE_URL",
        ),
        (
            f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/app",
            asyncpg.InvalidPasswordError("password authentication failed"),
            "Postgres at 127.0.0.1:5432 refused the login (InvalidPasswordError): check the "
            "user and password in DATABASE_URL",
        ),
        (
            f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/app",
            asyncpg.InvalidCatalogNameError('database "app" does not exist'),
            "Postgres at 127.0.0.1:5432 has no database 'app' (InvalidCatalogNameError): "
            "check DATABASE_URL",
        ),
        (
            f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/app",
            asyncpg.UniqueViolationError("duplicate key"),
            None,
        ),
        (
            "postgresql://postgres@/app?host=localhost&port=\u00b2",  # a digit int() refuses
            ConnectionRefusedError(111, "refused"),
            "cannot reach localhost:5432 (ConnectionRefusedError): is Postgres running at "
            "localhost:5432? check DATABASE_URL",
        ),
    ],
)
def test_a_connection_failure_says_what_to_check(
    dsn: str, exc: BaseException, line: str | None
) -> None:
    assert describe_connection_failure(dsn, exc) == line
