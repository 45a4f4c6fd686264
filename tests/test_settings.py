"""Settings: missing or invalid values stop start-up with one line naming them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings
from app.store.answers import Pacing
from tests.stubs import SettingsFactory

VALID = {
    "DATABASE_URL": "postgresql://app:db-password@127.0.0.1:5432/app",
    "OPENROUTER_API_KEY": "sk-or-test-key",
    "SEND_URL": "https://project.supabase.co/functions/v1/internal-send-ai-message",
    "SUPABASE_SERVICE_ROLE_KEY": "service-role-key",
    "CRON_SECRET": "a-cron-secret-of-32-characters!!",
}
SETTING_NAMES = [name.upper() for name in Settings.model_fields]
NOT_POSTGRES = "must be a Postgres URL starting with postgresql:// or postgres://"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment with valid settings, and no .env to read."""
    monkeypatch.chdir(tmp_path)
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def refusal(env: pytest.MonkeyPatch, **values: str | None) -> str:
    for name, value in values.items():
        if value is None:
            env.delenv(name, raising=False)
        else:
            env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    line = str(raised.value)
    assert "\n" not in line
    assert isinstance(raised.value, ValueError)
    return line


def test_valid_settings_load(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.batch_size == 5
    assert settings.port == 8080
    assert settings.inbox_timezone == "America/Sao_Paulo"


def test_the_inbox_timezone_is_a_trimmed_iana_name(env: pytest.MonkeyPatch) -> None:
    env.setenv("INBOX_TIMEZONE", " Asia/Tokyo\n")
    assert load_settings().inbox_timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"BATCH_SIZE": "0"}, "invalid settings: BATCH_SIZE: must be >= 1"),
        ({"BATCH_SIZE": "101"}, "invalid settings: BATCH_SIZE: must be <= 100"),
        ({"MAX_CONCURRENCY": "lots"}, "invalid settings: MAX_CONCURRENCY: not a number"),
        ({"PORT": "abc"}, "invalid settings: PORT: not a number"),
        ({"PORT": "70000"}, "invalid settings: PORT: must be <= 65535"),
        ({"PORT": "0"}, "invalid settings: PORT: must be >= 1"),
        ({"TIME_BUDGET_S": "nan"}, "invalid settings: TIME_BUDGET_S: must be a finite number"),
        ({"LOCK_TIMEOUT_S": "1"}, "invalid settings: LOCK_TIMEOUT_S: must be >= 2"),
        ({"BATCH_SIZE": "2.5"}, "invalid settings: BATCH_SIZE: not a whole number"),
        (
            {"SUPABASE_URL": "project.supabase.co"},
            "invalid settings: SUPABASE_URL: must be a URL starting with http:// or https://",
        ),
        (
            {"OPENROUTER_BASE_URL": "openrouter.ai/api/v1"},
            "invalid settings: OPENROUTER_BASE_URL: must be a URL starting with http:// or "
            "https://",
        ),
        (
            {"SEND_URL": "ftp://example.com/send"},
            "invalid settings: SEND_URL: must be a URL starting with http:// or https://",
        ),
        (
            {"SEND_URL": "https://"},
            "invalid settings: SEND_URL: must be a URL starting with http:// or https://",
        ),
        (
            {"CRON_SECRET": "short-secret"},
            "invalid settings: CRON_SECRET: must be at least 16 characters",
        ),
        (
            {"CRON_SECRET": "   short-secret  \n "},
            "invalid settings: CRON_SECRET: must be at least 16 characters",
        ),
        (
            {"LOG_LEVEL": "verbose"},
            "invalid settings: LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            {"BATCH_SIZE": "0", "PORT": "abc"},
            "invalid settings: BATCH_SIZE: must be >= 1; PORT: not a number",
        ),
        (
            {"BATCH_SIZE": "0", "OPENROUTER_API_KEY": None, "CRON_SECRET": None},
            "invalid settings: BATCH_SIZE: must be >= 1; "
            "missing required settings: OPENROUTER_API_KEY, CRON_SECRET",
        ),
        (
            {"INBOX_TIMEZONE": "Mars/Olympus_Mons"},
            "invalid settings: INBOX_TIMEZONE: not a known time zone (an IANA name, e.g. "
            "America/Sao_Paulo)",
        ),
        (
            {"INBOX_TIMEZONE": "../../etc/passwd"},
            "invalid settings: INBOX_TIMEZONE: not a known time zone (an IANA name, e.g. "
            "America/Sao_Paulo)",
        ),
        ({"INBOX_BRAKE_FAILURES": "-1"}, "invalid settings: INBOX_BRAKE_FAILURES: must be >= 0"),
        ({"INBOX_BRAKE_FAILURES": "21"}, "invalid settings: INBOX_BRAKE_FAILURES: must be <= 20"),
        ({"INBOX_BRAKE_HOURS": "0"}, "invalid settings: INBOX_BRAKE_HOURS: must be > 0.0"),
        (
            {"INBOX_BRAKE_HOURS": "nan"},
            "invalid settings: INBOX_BRAKE_HOURS: must be a finite number",
        ),
        ({"CRON_SECRET": ""}, "missing required settings: CRON_SECRET"),
        ({"CRON_SECRET": None}, "missing required settings: CRON_SECRET"),
        ({"DATABASE_URL": "mysql://x"}, f"invalid settings: DATABASE_URL: {NOT_POSTGRES}"),
        ({"DATABASE_URL": "127.0.0.1:5432/app"}, f"invalid settings: DATABASE_URL: {NOT_POSTGRES}"),
        (
            {"DATABASE_URL": "postgresql+asyncpg://u:p@db/app"},
            f"invalid settings: DATABASE_URL: {NOT_POSTGRES}",
        ),
        ({"DOCS_ENABLED": "maybe"}, "invalid settings: DOCS_ENABLED: must be true or false"),
        (
            {"DOCS_ENABLED": "2", "BATCH_SIZE": "0"},
            "invalid settings: BATCH_SIZE: must be >= 1; DOCS_ENABLED: must be true or false",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    env: pytest.MonkeyPatch, values: dict[str, str | None], line: str
) -> None:
    assert refusal(env, **values) == line


def test_the_refusal_never_echoes_a_value(env: pytest.MonkeyPatch) -> None:
    line = refusal(
        env,
        CRON_SECRET="short-secret",
        DATABASE_URL="postgresql://app:hunter2-password@db:5432/app",
        SEND_URL="not-a-url-with-secret-token",
        BATCH_SIZE="lots-of-them",
    )
    for value in ("short-secret", "hunter2", "not-a-url", "lots-of-them"):
        assert value not in line


def test_the_cron_secret_is_trimmed(env: pytest.MonkeyPatch) -> None:
    env.setenv("CRON_SECRET", "  0123456789abcdef\n")
    settings = load_settings()
    assert settings.cron_secret is not None
    assert settings.cron_secret.get_secret_value() == "0123456789abcdef"


def test_short_leases_still_work(env: pytest.MonkeyPatch) -> None:
    for seconds in ("2", "3", "5"):
        env.setenv("LOCK_TIMEOUT_S", seconds)
        assert load_settings().lock_timeout_s == int(seconds)


def test_urls_are_trimmed_and_http_or_https(env: pytest.MonkeyPatch) -> None:
    env.delenv("SEND_URL")
    env.setenv("SUPABASE_URL", " HTTPS://project.supabase.co/ ")
    env.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9000/api/v1")
    settings = load_settings()
    assert settings.supabase_url == "HTTPS://project.supabase.co/"
    assert settings.resolved_send_url == (
        "HTTPS://project.supabase.co/functions/v1/internal-send-ai-message"
    )


def test_settings_built_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="CRON_SECRET: must be at least 16 characters"):
        Settings.model_validate({**{k.lower(): v for k, v in VALID.items()}, "cron_secret": ""})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@127.0.0.1:5432/app",
        "postgres://app:pw@db.example.com/app?sslmode=require",
        "PostgreSQL://app@db/app",
        "postgresql://postgres:@/postgres?host=/tmp/pgdata",  # a Unix socket (the sandbox's)
    ],
)
def test_a_postgres_database_url_loads(env: pytest.MonkeyPatch, url: str) -> None:
    env.setenv("DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == url


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), ("Yes", True)])
def test_docs_enabled_takes_the_usual_booleans(
    env: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    env.setenv("DOCS_ENABLED", value)
    assert load_settings().docs_enabled is expected


def test_the_operator_token_is_optional_and_checked_like_the_cron_secret(
    env: pytest.MonkeyPatch,
) -> None:
    assert load_settings().operator_token is None
    env.setenv("OPERATOR_TOKEN", "")
    assert load_settings().operator_token is None  # empty counts as unset
    line = refusal(env, OPERATOR_TOKEN="too-short-token")
    assert line == "invalid settings: OPERATOR_TOKEN: must be at least 16 characters"
    assert "too-short" not in line
    assert "printable ASCII" in refusal(env, OPERATOR_TOKEN="an-operator-tökén-of-enough")
    env.setenv("OPERATOR_TOKEN", " an-operator-token-0123\n")
    token = load_settings().operator_token
    assert token is not None
    assert token.get_secret_value() == "an-operator-token-0123"


def test_an_operator_token_equal_to_the_cron_secret_is_refused_in_one_line(
    env: pytest.MonkeyPatch,
) -> None:
    # The scheduler's secret must never act on campaigns: were the two the same, a Bearer
    # CRON_SECRET would pass as the operator's token on /operator/ and sign in to /console.
    line = refusal(env, OPERATOR_TOKEN=" " + VALID["CRON_SECRET"] + "\n")
    assert line == "invalid settings: OPERATOR_TOKEN: must not be the CRON_SECRET"
    assert VALID["CRON_SECRET"] not in line


def test_the_pacing_handed_to_the_database_carries_every_inbox_setting(
    make_settings: SettingsFactory,
) -> None:
    """The claim, the slot, the status and the metrics all get the same INBOX_* values."""
    settings = make_settings(
        inbox_min_gap_s=7,
        inbox_max_gap_s=9,
        inbox_daily_cap=120,
        inbox_timezone="Europe/Lisbon",
        inbox_warmup_days=14,
        inbox_warmup_start_cap=25,
        inbox_hourly_cap=30,
    )
    assert Pacing.from_settings(settings) == Pacing(
        7, 9, 120, "Europe/Lisbon", warmup_days=14, warmup_start_cap=25, hourly_cap=30
    )
