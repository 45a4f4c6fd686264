"""The real Supabase CLI (the npm package `supabase`, pinned), for the tests that push sql/.

    python3 run.py python -m tests.supabase_cli     # installs it (.ci/run does, before the tests)

npm installs it into .tools/supabase-cli-<version>/ inside this checkout (git ignores .tools/):
a Node shim and the platform's binary, from the npm package, nothing downloaded at run time.
The CLI is run with its telemetry and update check off and `--db-url` at a local Postgres
only; its home is a folder of the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

VERSION = "2.117.0"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
INSTALL_DIR = TOOLS / f"supabase-cli-{VERSION}"
CLI = INSTALL_DIR / "node_modules" / ".bin" / "supabase"

# The CLI reaches nothing but the database given to it.
OFFLINE_ENV = {
    "SUPABASE_TELEMETRY_DISABLED": "1",
    "DO_NOT_TRACK": "1",
    "SUPABASE_NO_UPDATE_NOTIFIER": "1",
}


class CliMissingError(Exception):
    """The CLI is not installed and cannot be: str() says what is missing."""


def install() -> Path:
    """The CLI's path, installed with npm first when it is not here yet."""
    if CLI.exists():
        return CLI
    npm = shutil.which("npm")
    if npm is None:
        raise CliMissingError(
            f"the Supabase CLI {VERSION} is not in {INSTALL_DIR} and there is no npm to install "
            "it (apt-get install -y nodejs npm)"
        )
    TOOLS.mkdir(exist_ok=True)
    ignore = TOOLS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# tools for this checkout, never committed\n*\n")
    staging = TOOLS / f".supabase-cli-{VERSION}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    command = [npm, "install", "--prefix", str(staging), "--save-exact", "--no-audit"]
    command += ["--no-fund", "--loglevel=error", f"supabase@{VERSION}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise CliMissingError(f"npm install supabase@{VERSION} failed:\n{done.stderr[-2000:]}")
    try:
        staging.rename(INSTALL_DIR)  # all or nothing; a concurrent install may have won
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return CLI


def cli_db_url(dsn: str) -> str:
    """`dsn` as the CLI takes it. The CLI reads a Unix socket only from a `host` parameter
    beside a nominal host (`postgresql://user@127.0.0.1/db?host=/run/dir`): pgserver's DSN
    has no host part, which the CLI rejects."""
    parts = urlsplit(dsn)
    if parts.hostname or "host" not in parse_qs(parts.query):
        return dsn
    netloc = parts.netloc.rstrip("@").split(":")[0] or "postgres"
    return urlunsplit((parts.scheme, f"{netloc}@127.0.0.1", parts.path, parts.query, ""))


def push(cli: Path, workdir: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    """`supabase db push` of workdir/supabase/migrations to the database `dsn`."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, **OFFLINE_ENV, "HOME": str(home)}
    command = [str(cli), "db", "push", "--db-url", cli_db_url(dsn), "--yes"]
    command += ["--workdir", str(workdir)]
    return subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


if __name__ == "__main__":
    try:
        print(f"Supabase CLI {VERSION}: {install()}")
    except CliMissingError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
