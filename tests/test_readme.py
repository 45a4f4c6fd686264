"""The README stands on its own and says what the code does: links, settings, the answer.

Where the code grows (a new setting, a new answer field), these tests name what the README
and .env.example must add.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest

from app.main import ProcessQueueBody
from app.models import ProcessQueueResult
from app.sandbox.seed import seed_campaign
from app.settings import Settings
from app.store.migrations import apply_migrations

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ["README.md", "deploy/README.md", "bench/README.md", "docs/architecture.md"]


def _section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_stays_inside_the_repository(doc: str) -> None:
    path = ROOT / doc
    text = path.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    for target in links:
        assert not re.match(r"^[a-z]+:", target), f"{doc} links outside: {target}"
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _default_text(name: str) -> str:
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    if default is None or default == []:
        return ""
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_env_example_lists_every_setting_with_its_default() -> None:
    listed = _env_example()
    for name in Settings.model_fields:
        assert name.upper() in listed, f".env.example lacks {name.upper()}"
        assert listed[name.upper()] == _default_text(name), name.upper()


def test_env_example_read_as_dot_env_gives_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # .env is read from the working directory
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    required = {
        "supabase_url": "https://project.supabase.co",
        "supabase_service_role_key": "service-role-key",
        "openrouter_api_key": "or-key",
        "cron_secret": "c" * 16,
    }
    settings = Settings(**required)  # type: ignore[arg-type]
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name in required:
            continue
        assert value == field.get_default(call_default_factory=True), name
    assert settings.database_url is None
    assert settings.statement_cache_size == 100


def test_the_settings_table_names_every_setting_with_its_default() -> None:
    rows = [line for line in _section("Settings").splitlines() if line.startswith("| `")]
    documented: dict[str, str] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        names = re.findall(r"`([A-Z_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split("/")]
        for i, name in enumerate(names):
            documented[name] = defaults[i] if len(defaults) == len(names) else cells[1]
    for name in Settings.model_fields:
        assert name.upper() in documented, f"README's settings table lacks {name.upper()}"
        default = _default_text(name)
        if default:
            assert default in documented[name.upper()], name.upper()


def test_the_readme_says_where_dot_env_is_read_and_how_to_serve() -> None:
    assert "working directory" in _section("Settings")
    assert "python -m app serve" in _section("Run it against your own Supabase")


def test_every_field_of_the_answer_and_of_the_body_is_described() -> None:
    surface = _section("The HTTP surface")
    answer_rows = re.findall(r"^\| `(\w+)` \|", surface, re.MULTILINE)
    for name in ProcessQueueResult.model_fields:
        assert name in answer_rows, f"the answer's {name} is not described"
    for name in ProcessQueueBody.model_fields:
        assert name in answer_rows, f"the body's {name} is not described"


def test_every_status_code_is_described() -> None:
    surface = _section("The HTTP surface")
    post, status = surface.split("### Seeing the queue")
    statuses = re.findall(r"^\| (\d{3}) \|", post, re.MULTILINE)
    assert sorted(statuses) == ["200", "401", "422", "500", "502", "503"]
    status, operator = status.split("### Operator actions")
    statuses = re.findall(r"^\| (\d{3}) \|", status, re.MULTILINE)
    assert sorted(statuses) == ["200", "401", "422", "503"]  # GET /status
    statuses = re.findall(r"^\| (\d{3}) \|", operator, re.MULTILINE)
    assert sorted(statuses) == ["200", "401", "403", "404", "409", "422", "503"]
    healthz = surface[surface.index("`GET /healthz`") :]
    assert "200" in healthz
    assert "503" in healthz
    assert "X-Cron-Secret" in surface
    assert "Authorization: Bearer" in surface


def test_supabase_connections_are_explained() -> None:
    section = _section("Run it against your own Supabase")
    for needed in (
        "db.<project-ref>.supabase.co",
        "IPv6",
        "Session pooler",
        "Transaction pooler",
        ":6543",
        "DATABASE_STATEMENT_CACHE_SIZE=0",
        "supabase/migrations",
        "supabase db push",
        "campaign_queue_migrations",
        "deploy/to_supabase_migrations.py",
    ):
        assert needed in section, needed


def test_the_pacing_section_and_the_guarantees_stay() -> None:
    assert "## Pacing: one WhatsApp number, one safe pace" in README
    assert "What a call guarantees, whatever fails" in README


def test_the_secret_in_examples_is_never_a_real_looking_value() -> None:
    for doc in [*DOCS, ".env.example", "fly.toml", "cron.yaml"]:
        text = (ROOT / doc).read_text()
        assert not re.search(r"sk-or-[A-Za-z0-9]{8,}", text), doc
        assert not re.search(r"eyJ[A-Za-z0-9_-]{20,}", text), doc  # a JWT (service-role key)


# --- what the README shows, run or checked against the code --------------------------------


class _SecretChecker(http.server.BaseHTTPRequestHandler):
    """Records the Authorization header of each request; answers 200 `{}`."""

    seen: ClassVar[list[str | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _SecretChecker.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_the_local_curl_works_when_pasted(tmp_path: Path) -> None:
    """The block of "Run it against your own Supabase", pasted into a shell that has no
    CRON_SECRET, in a folder whose .env holds it (as `cp .env.example .env` leaves it)."""
    section = _section("Run it against your own Supabase")
    [block] = [
        b
        for b in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        if "curl" in b and "8080" in b
    ]
    secret = "s3cret-" + "x" * 20
    (tmp_path / ".env").write_text(f"OPENROUTER_API_KEY=\nCRON_SECRET={secret}\nBATCH_SIZE=5\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SecretChecker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _SecretChecker.seen = []
    try:
        script = block.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{server.server_port}")
        env = {k: v for k, v in os.environ.items() if k != "CRON_SECRET"}
        done = subprocess.run(
            ["bash", "-c", "set -e\n" + script], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    calls = [line for line in block.splitlines() if line.lstrip().startswith("curl")]
    assert len(_SecretChecker.seen) == len(calls)
    assert _SecretChecker.seen.count(f"Bearer {secret}") == sum("Authorization" in c for c in calls)
    assert _SecretChecker.seen.count(f"Bearer {secret}") >= 2  # the POST and the status


async def test_every_field_of_the_status_is_described(conn: asyncpg.Connection) -> None:
    await seed_campaign(conn, leads=2)
    status = json.loads(await conn.fetchval("select campaign_queue_status()::text"))
    section = README[README.index("### Seeing the queue") : README.index("## Pacing")]
    keys = set(status)
    for nested in ("queue", "throughput"):
        keys |= set(status[nested])
    for listed in ("runs", "inboxes"):
        assert status[listed], listed  # seeded: one run, one inbox
        keys |= set(status[listed][0])
    # Named as code (`key`) or in a field list ({a, b} / [{a, b}]), not merely a word of prose.
    missing = sorted(k for k in keys if not re.search(rf"(`|\{{|, ){k}(`|,|\}})", section))
    assert not missing, f"the README's /status section lacks {missing}"


async def test_the_switch_over_names_every_column_trigger_and_table_it_adds(
    conn: asyncpg.Connection,
) -> None:
    section = _section("Switching over from the edge function")
    added_columns = set(
        re.findall(
            r"alter table campaign_messages add column if not exists (\w+)",
            "\n".join(p.read_text() for p in sorted((ROOT / "sql").glob("*.sql"))),
        )
    )
    assert {"lock_token", "parts_sent", "ai_cost_usd"} <= added_columns
    triggers = await conn.fetch(
        "select tgname from pg_trigger"
        " where tgrelid = 'campaign_messages'::regclass and not tgisinternal"
    )
    product_tables = set(
        re.findall(
            r"create table if not exists (\w+)", (ROOT / "sql/001_roles_and_tables.sql").read_text()
        )
    )
    tables = await conn.fetch(
        "select tablename from pg_tables where schemaname = 'public'"
        " and tablename <> all($1::text[])",
        sorted(product_tables),
    )
    names = added_columns | {t["tgname"] for t in triggers} | {t["tablename"] for t in tables}
    missing = sorted(n for n in names if f"`{n}`" not in section)
    assert not missing, f"the switch-over section lacks {missing}"
    for needed in ("cron.unschedule('campaign-process-queue')", "campaign-queue-process"):
        assert needed in section


async def test_rolling_back_then_forward_as_the_switch_over_says_brings_our_functions_back(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    """The rollback drops our two claim functions; `migrate` alone then applies nothing (its
    ledger holds every file), so the README says what to run before it."""
    sql_blocks = re.findall(
        r"```sql\n(.*?)```", _section("Switching over from the edge function"), re.S
    )
    [rollback] = [
        b for b in sql_blocks if "get_and_lock_campaign_messages" in b and "drop function" in b
    ]
    [forward] = [b for b in sql_blocks if "campaign_queue_migrations" in b]
    await conn.execute(rollback)
    await conn.execute("drop trigger cq_count_updated_messages on campaign_messages")

    await conn.execute(forward)
    await apply_migrations(db_dsn)

    assert (
        await conn.fetchval(
            "select count(*) from pg_proc where proname = any($1::text[])",
            ["get_and_lock_campaign_messages", "mark_old_campaign_messages_as_skipped"],
        )
        == 2
    )
    assert (
        await conn.fetchval(
            "select count(*) from pg_trigger where tgname = 'cq_count_updated_messages'"
        )
        == 1
    )


ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
# Cited by code, SQL and tests as `docs/architecture.md, "<heading>"`: renaming one breaks them.
STABLE_HEADINGS = [
    "What it replaces",
    "Layout",
    "Data model",
    "Invariants",
    "SQL functions",
    "Lock order",
    "HTTP surface",
    "Outbound calls",
    "Settings",
    "Life of a message",
    "Pacing",
    "Status",
    "Running it",
    "Known limits",
]


def test_the_architecture_keeps_its_headings_and_stands_alone() -> None:
    headings = re.findall(r"^#{2,3} (.+)$", ARCHITECTURE, re.MULTILINE)
    for heading in STABLE_HEADINGS:
        assert heading in headings, heading
    for doc in (ARCHITECTURE, README):
        assert "DESIGN" not in doc  # a document the repository does not have


def test_the_architecture_states_every_function_the_service_role_may_call() -> None:
    grants = (ROOT / "sql" / "090_grants.sql").read_text()
    granted = grants[: grants.index("Internal helpers")]
    names = set(re.findall(r"'(\w+)\(", granted))
    assert "get_and_lock_campaign_messages" in names
    section = ARCHITECTURE[ARCHITECTURE.index("## SQL functions") :]
    section = section[: section.index("\n## ")]
    missing = sorted(n for n in names if f"`{n}(" not in section)
    assert not missing, f"docs/architecture.md's SQL functions lack {missing}"
