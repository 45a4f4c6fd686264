"""Copies sql/ into a Supabase CLI project's supabase/migrations, for `supabase db push`.

    python3 deploy/to_supabase_migrations.py ../my-app/supabase/migrations

Each file of sql/ becomes `<version>_campaign_queue_<its name>`, versions (the CLI's
YYYYMMDDHHMMSS) later than every migration already there and in sql/'s order, so
`supabase db push` applies them after the project's own. A file whose exact content is
already there under that name is skipped, so running it again after an upgrade of this
project copies only the files that are new or changed (each is idempotent: re-applying a
changed one in full is safe). Standard library only. Prints what it wrote.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
PREFIX = "campaign_queue_"
_VERSION = re.compile(r"^(\d{14})_(.+)$")


def copy_migrations(
    migrations_dir: Path, sql_dir: Path = SQL_DIR, now: datetime | None = None
) -> list[Path]:
    """Writes the new or changed files of sql_dir into migrations_dir; returns them."""
    migrations_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(p for p in migrations_dir.glob("*.sql") if _VERSION.match(p.stem))
    present = {
        (match.group(2), path.read_text(encoding="utf-8"))
        for path in existing
        if (match := _VERSION.match(path.stem))
    }
    latest = max((_parse(p.stem[:14]) for p in existing), default=None)
    version = (now or datetime.now(UTC)).replace(microsecond=0, tzinfo=None)
    if latest is not None and version <= latest:
        version = latest + timedelta(seconds=1)
    written = []
    for source in sorted(sql_dir.glob("[0-9][0-9][0-9]_*.sql")):
        name = PREFIX + source.stem
        text = source.read_text(encoding="utf-8")
        if (name, text) in present:
            continue
        target = migrations_dir / f"{version:%Y%m%d%H%M%S}_{name}.sql"
        target.write_text(text, encoding="utf-8")
        written.append(target)
        version += timedelta(seconds=1)
    return written


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%d%H%M%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 deploy/to_supabase_migrations.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("migrations_dir", type=Path, help="the project's supabase/migrations")
    args = parser.parse_args(argv)
    written = copy_migrations(args.migrations_dir)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} file(s) written" if written else "up to date: nothing to copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
