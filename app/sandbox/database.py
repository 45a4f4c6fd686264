"""An embedded Postgres (pgserver) or the one TEST_DATABASE_URL names, with sql/ applied."""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.store.migrations import apply_migrations

# The sandbox trades durability for speed; never set these on a real database.
_SANDBOX_TUNING = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class PostgresServer:
    """A running Postgres: `dsn` reaches its maintenance database as a superuser."""

    dsn: str
    _server: object | None = field(default=None, repr=False)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def start_postgres(data_dir: Path | None = None) -> PostgresServer:
    """TEST_DATABASE_URL when set; otherwise an embedded server in data_dir (or a temporary one).

    The embedded server stops when the process ends (pgserver registers that at exit).
    """
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        return PostgresServer(dsn=external)

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver

    tmpdir = None
    if data_dir is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="campaign-queue-pg-")
        data_dir = Path(tmpdir.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    for name, value in _SANDBOX_TUNING.items():
        server.psql(f"alter system set {name} = '{value}';")
    server.psql("select pg_reload_conf();")
    return PostgresServer(dsn=server.get_uri(), _server=server, _tmpdir=tmpdir)


async def create_database(admin_dsn: str, name: str, template: str | None = None) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
        suffix = f' template "{template}"' if template else ""
        await conn.execute(f'create database "{name}"{suffix}')
    finally:
        await conn.close()
    return dsn_with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def create_migrated_database(admin_dsn: str, name: str | None = None) -> str:
    """A new database with every migration applied; returns its DSN."""
    dsn = await create_database(admin_dsn, name or f"cq_{uuid.uuid4().hex[:12]}")
    await apply_migrations(dsn)
    return dsn


@contextmanager
def running_postgres(data_dir: Path | None = None) -> Iterator[PostgresServer]:
    server = start_postgres(data_dir)
    try:
        yield server
    finally:
        server.stop()
