"""The README stands on its own and says what the code does: links, settings, the answer.

Where the code grows (a new setting, a new answer field), these tests name what the README
and .env.example must add.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.main import ProcessQueueBody
from app.models import ProcessQueueResult
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ["README.md", "deploy/README.md", "bench/README.md"]


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
    statuses = re.findall(r"^\| (\d{3}) \|", surface, re.MULTILINE)
    assert sorted(statuses) == ["200", "401", "422", "500", "502", "503"]
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
