"""`python -m app migrate` as an operator runs it against an existing database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.sandbox.database import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent.parent


def migrate(dsn: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env["PYTHONPATH"] = str(ROOT)
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_migrate_applies_once_then_has_nothing_to_do(pg_server_dsn: str) -> None:
    dsn = await create_database(pg_server_dsn, "cq_migrate_cli")
    try:
        first = migrate(dsn)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("applied: 001_")
        second = migrate(dsn)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "up to date: nothing to apply"
    finally:
        await drop_database(pg_server_dsn, "cq_migrate_cli")


def test_migrate_without_a_database_url_names_it() -> None:
    result = migrate(None)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: missing required setting: DATABASE_URL"


def test_migrate_with_a_database_url_that_is_not_postgres_names_it_in_one_line() -> None:
    result = migrate("mysql://root:hunter2-secret@127.0.0.1/app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid settings: DATABASE_URL: must be a Postgres URL starting with "
        "postgresql:// or postgres://"
    ]


def test_migrate_against_an_unreachable_database_says_so_in_one_line() -> None:
    result = migrate("postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: migrations not applied:")
    assert "hunter2-secret" not in result.stderr
