"""Applies sql/ in order and records what it applied (`python -m app migrate`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.store.postgres import describe_connection_failure

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"

# One lock id for every instance: concurrent start-ups apply migrations one at a time.
_MIGRATION_LOCK_ID = 4_242_001

_LEDGER_DDL = """
create table if not exists campaign_queue_migrations (
  name text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
)
"""


class ConnectionFailedError(Exception):
    """No connection could be made; str() is one line naming the host and port and what to
    check, never the password."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    files = sorted(sql_dir.glob("[0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations found in {sql_dir}")
    return [Migration(name=f.name, sql=f.read_text(encoding="utf-8")) for f in files]


async def apply_migrations(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Applies each migration not yet recorded (or changed since); returns the names applied.

    Every file is idempotent on its own, so re-applying a changed file is safe.
    """
    migrations = load_migrations(sql_dir)
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        hint = describe_connection_failure(dsn, exc)
        if hint is None:
            raise
        raise ConnectionFailedError(hint) from exc
    try:
        await conn.execute("select pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(_LEDGER_DDL)
            rows = await conn.fetch("select name, checksum from campaign_queue_migrations")
            done = {r["name"]: r["checksum"] for r in rows}
            applied = []
            for migration in migrations:
                if done.get(migration.name) == migration.checksum:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        """
                        insert into campaign_queue_migrations (name, checksum) values ($1, $2)
                        on conflict (name) do update
                          set checksum = excluded.checksum, applied_at = now()
                        """,
                        migration.name,
                        migration.checksum,
                    )
                applied.append(migration.name)
            return applied
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
