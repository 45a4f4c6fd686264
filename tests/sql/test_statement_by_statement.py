"""sql/ run a statement at a time, outside a transaction: the Supabase CLI and `psql -f`.

`supabase db push` (deploy/README.md) and `psql -f` send each statement of a file on its own,
in autocommit, with no BEGIN around the file; `python -m app migrate` and the SQL editor run a
file whole, in one transaction. Every file must be valid both ways, stay idempotent, and leave
the same schema whichever way, and in whichever order, it was applied.

The CLI is the real one (tests/supabase_cli.py: the npm package, pinned), pushing to the
embedded Postgres over its Unix socket. Without it and without npm to install it, the test is
skipped on a developer's machine and fails under CI (where .ci/run installs it first).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.database import create_database, drop_database
from app.store.migrations import apply_migrations, load_migrations
from deploy.to_supabase_migrations import copy_migrations
from tests import supabase_cli

# The two ledgers, one per runner, are left out of the comparison: each runner writes only its own.
LEDGERS = ["-N", "supabase_migrations", "-T", "public.campaign_queue_migrations"]


def _postgres_tool(name: str) -> str:
    """A client program of the embedded server's own version (pgserver ships them)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    bundled = Path(POSTGRES_BIN_PATH) / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    assert found is not None, f"no {name}: neither pgserver's nor on PATH"
    return found


def _cli() -> Path:
    try:
        return supabase_cli.install()
    except supabase_cli.CliMissingError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (.ci/run installs it before the tests)")
        pytest.skip(str(exc))


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


async def _push(cli: Path, workdir: Path, dsn: str) -> str:
    done = await asyncio.to_thread(supabase_cli.push, cli, workdir, dsn)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


async def _psql_file_by_file(dsn: str) -> None:
    """Each file as `psql -f` runs it: statement by statement, autocommit, stop at an error."""
    psql = _postgres_tool("psql")
    for migration in load_migrations():
        path = supabase_cli.ROOT / "sql" / migration.name
        done = await asyncio.to_thread(
            _run, [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(path)]
        )
        assert done.returncode == 0, f"{migration.name}: {done.stderr}"


async def _schema(dsn: str) -> str:
    done = await asyncio.to_thread(
        _run, [_postgres_tool("pg_dump"), "--schema-only", *LEDGERS, "-d", dsn]
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _pushed_versions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select version from supabase_migrations.schema_migrations order by version"
        )
        return [r["version"] for r in rows]
    finally:
        await conn.close()


@pytest.mark.timeout(300)  # the first run installs the CLI with npm, unless .ci/run did
async def test_the_supabase_cli_and_app_migrate_give_one_schema_in_either_order(
    pg_server_dsn: str, tmp_path: Path
) -> None:
    cli = _cli()
    project = tmp_path / "project"
    migrations = project / "supabase" / "migrations"
    files = copy_migrations(migrations, now=datetime(2026, 1, 1, tzinfo=UTC))
    names = {
        "cli_first": f"cq_cli_first_{os.getpid()}",
        "migrate_first": f"cq_migrate_first_{os.getpid()}",
        "psql": f"cq_psql_{os.getpid()}",
    }
    dsns = {k: await create_database(pg_server_dsn, name) for k, name in names.items()}
    try:
        every_file = [m.name for m in load_migrations()]
        assert await apply_migrations(dsns["migrate_first"]) == every_file
        reference = await _schema(dsns["migrate_first"])
        assert "cq_count_inserted_messages" in reference  # the dump holds the triggers

        # The CLI, twice (the second push finds nothing to do), then `app migrate`.
        first = await _push(cli, project, dsns["cli_first"])
        assert all(f"Applying migration {path.name}" in first for path in files), first
        second = await _push(cli, project, dsns["cli_first"])
        assert "Applying migration" not in second, second
        assert await _pushed_versions(dsns["cli_first"]) == [p.name[:14] for p in files]
        assert await _schema(dsns["cli_first"]) == reference
        assert await apply_migrations(dsns["cli_first"]) == every_file
        assert await _schema(dsns["cli_first"]) == reference

        # The other way round: `app migrate`, then the CLI applies every file over it.
        over = await _push(cli, project, dsns["migrate_first"])
        assert all(f"Applying migration {path.name}" in over for path in files), over
        assert await _schema(dsns["migrate_first"]) == reference

        # `psql -f`, each file twice, then `app migrate`.
        await _psql_file_by_file(dsns["psql"])
        await _psql_file_by_file(dsns["psql"])
        assert await _schema(dsns["psql"]) == reference
        assert await apply_migrations(dsns["psql"]) == every_file
        assert await _schema(dsns["psql"]) == reference
    finally:
        for name in names.values():
            await drop_database(pg_server_dsn, name)
