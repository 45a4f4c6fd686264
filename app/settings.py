"""One validated settings object, read from the environment and `.env`."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_CRON_SECRET_CHARS = 16
# A header's bytes have no agreed encoding: httpx and browsers refuse other characters,
# requests sends latin-1, curl the terminal's UTF-8. Such a secret could match one client only.
NOT_ASCII_CRON_SECRET = (
    "must be printable ASCII (letters, digits, punctuation, spaces): "
    "HTTP clients send other characters in a header differently or not at all"
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """Missing or invalid settings. str() is one line naming each setting and why, e.g.
    `invalid settings: BATCH_SIZE: must be >= 1; PORT: not a number`; never a value."""


class MissingSettingsError(SettingsError):
    """Only required settings are absent; the message names them all."""


class Settings(BaseSettings):
    # An empty variable counts as unset (CRON_SECRET= is missing, not an empty secret).
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
        allow_inf_nan=False,
    )

    # Database: DATABASE_URL (asyncpg) wins; otherwise Supabase RPC over PostgREST.
    database_url: SecretStr | None = None
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    # None: 0 when the URL targets Supabase's transaction pooler (port 6543), else 100.
    database_statement_cache_size: int | None = Field(default=None, ge=0)
    database_pool_max_size: int = Field(default=10, ge=1, le=200)

    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    default_model: str = "openai/gpt-4o-mini"
    # Comma-separated models OpenRouter tries, in order, when the main one fails (its
    # `models` list, after the main model). Empty: none.
    fallback_models: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Default: {SUPABASE_URL}/functions/v1/internal-send-ai-message
    send_url: str | None = None

    cron_secret: SecretStr | None = None
    # Optional: without it every /operator/ route answers 404 (README, "Operator actions").
    operator_token: SecretStr | None = None

    batch_size: int = Field(default=5, ge=1, le=100)
    max_concurrency: int = Field(default=5, ge=1, le=50)
    max_messages: int = Field(default=1000, ge=1, le=10000)
    time_budget_s: float = Field(default=50.0, gt=0, le=3600)
    # The processor renews its leases every LOCK_TIMEOUT_S / 3: under 2 s they lapse.
    lock_timeout_s: int = Field(default=600, ge=2)
    skip_after_minutes: int = Field(default=60, ge=1)

    generate_timeout_s: float = Field(default=30.0, gt=0)
    split_timeout_s: float = Field(default=20.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    retry_max_tries: int = Field(default=3, ge=1, le=10)
    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_wait_s: float = Field(default=60.0, ge=0)
    circuit_failure_threshold: int = Field(default=5, ge=1)

    # Pacing per WhatsApp inbox, across every instance (docs/architecture.md, "Pacing"): the
    # first parts of
    # two messages of one inbox go out a gap drawn from [min, max] apart, at most the cap a
    # day. 0 turns the gap or the cap off. Per-inbox overrides: campaign_inbox_pacing.
    inbox_min_gap_s: float = Field(default=20.0, ge=0, le=86_400)
    inbox_max_gap_s: float = Field(default=60.0, ge=0, le=86_400)
    inbox_daily_cap: int = Field(default=300, ge=0, le=1_000_000)
    # The calendar day the cap counts, for inboxes whose row names no timezone of its own.
    inbox_timezone: str = "America/Sao_Paulo"
    # Number health: warm-up and the hourly cap (README, "Number health"), off by default (on
    # for numbers already in use they would throttle a running business overnight). The
    # warm-up's cap grows from the start cap on day 0 to INBOX_DAILY_CAP on day
    # INBOX_WARMUP_DAYS; at most INBOX_HOURLY_CAP first parts an inbox in any 60 minutes.
    inbox_warmup_days: int = Field(default=0, ge=0, le=3650)
    inbox_warmup_start_cap: int = Field(default=20, ge=1, le=1_000_000)
    inbox_hourly_cap: int = Field(default=0, ge=0, le=3600)

    # The failure brake (README "Failure brake"): an inbox whose last 20 sends hold at least
    # this many failures for good at the send endpoint (400/404: invalid or unknown numbers)
    # pauses for INBOX_BRAKE_HOURS. 0 failures turns it off.
    inbox_brake_failures: int = Field(default=5, ge=0, le=20)
    inbox_brake_hours: float = Field(default=6.0, gt=0, le=720)
    # Stop-on-reply (README, "Number health"): a contact whose phone has a replied campaign
    # message in the workspace within this many days gets no further one. 0: off.
    reply_stop_days: int = Field(default=30, ge=0, le=36_500)

    # Repetition guard (README, "Number health"): a first part whose normalized text its inbox
    # sent in the last 24 hours is written once more, told to vary; else retried later.
    repetition_guard: bool = True

    # Lead-local hours (README "Number health"): the send window read in the lead's own zone,
    # from the phone number where it maps to exactly one zone, else the campaign's.
    lead_local_window: bool = False

    port: int = Field(default=8080, ge=1, le=65535)
    # --- The metrics port (README: "Metrics"). Set: `python -m app serve` also answers
    # GET /metrics, WITHOUT authentication and nothing else, on this port, for a scraper that
    # sends no credentials (Fly's). Only for a port the platform keeps private (on Fly: one
    # not in [http_service] or [[services]]). Unset: no second listener.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: str = "INFO"
    # /docs, /redoc and /openapi.json: off by default, the service is public on Cloud Run.
    docs_enabled: bool = False

    @field_validator("supabase_url", "openrouter_base_url", "send_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _postgres_url(value)

    @field_validator("fallback_models", mode="before")
    @classmethod
    def _comma_separated_models(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            models = [str(m).strip() for m in value]
            if any(" " in m for m in models):
                raise ValueError("a model name has a space in it (comma-separated names)")
            return list(dict.fromkeys(m for m in models if m))  # in order, once each
        return value

    @field_validator("cron_secret", "operator_token")
    @classmethod
    def _long_cron_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Trimmed: a secret mounted from a file often ends with a newline.
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if len(secret) < MIN_CRON_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_CRON_SECRET_CHARS} characters")
        if not (secret.isascii() and secret.isprintable()):
            raise ValueError(NOT_ASCII_CRON_SECRET)
        return SecretStr(secret)

    @field_validator("operator_token")
    @classmethod
    def _operator_token_not_the_cron_secret(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # The same value would let the scheduler's secret act on campaigns.
        cron = info.data.get("cron_secret")
        if (
            value is not None
            and cron is not None
            and hmac.compare_digest(
                value.get_secret_value().encode(), cron.get_secret_value().encode()
            )
        ):
            raise ValueError("must not be the CRON_SECRET")
        return value

    @field_validator("inbox_max_gap_s")
    @classmethod
    def _max_gap_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("inbox_min_gap_s", 0.0):
            raise ValueError("must be at least INBOX_MIN_GAP_S")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _metrics_port_not_the_service_port(
        cls, value: int | None, info: ValidationInfo
    ) -> int | None:
        if value is not None and value == info.data.get("port"):
            raise ValueError(
                "must differ from PORT (the service's port, where /metrics needs the secret)"
            )
        return value

    @field_validator("inbox_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "not a known time zone (an IANA name, e.g. America/Sao_Paulo)"
            ) from None
        return name

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError("must be one of " + ", ".join(_LOG_LEVELS))
        return level

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_naming_every_problem(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self]
    ) -> Self:
        try:
            settings = handler(data)
        except ValidationError as exc:
            given = data if isinstance(data, dict) else {}
            invalid = [_describe(error) for error in exc.errors()]
            missing = _missing(lambda name: given.get(name) is not None)
            raise SettingsError(_one_line(invalid, missing)) from None
        missing = _missing(lambda name: getattr(settings, name) is not None)
        if missing:
            raise MissingSettingsError(_one_line([], missing))
        return settings

    @property
    def resolved_send_url(self) -> str:
        if self.send_url:
            return self.send_url
        assert self.supabase_url is not None
        return self.supabase_url.rstrip("/") + "/functions/v1/internal-send-ai-message"

    @property
    def statement_cache_size(self) -> int:
        if self.database_statement_cache_size is not None:
            return self.database_statement_cache_size
        if self.database_url is None:
            return 100
        parts = urlsplit(self.database_url.get_secret_value())
        return 0 if parts.port == 6543 or "pooler" in (parts.hostname or "") else 100


class DatabaseSettings(BaseSettings):
    """Only the database, from the environment or `.env`: what `python -m app migrate` and
    `status` need (no OpenRouter key, no CRON_SECRET). Checked as Settings checks them."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    database_url: SecretStr | None = None
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None

    @field_validator("supabase_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _postgres_url(value)


def load_database_settings() -> DatabaseSettings:
    """DatabaseSettings, or SettingsError: one line naming each invalid setting, and
    DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY) when neither is set."""
    try:
        settings = DatabaseSettings()
    except ValidationError as exc:
        raise SettingsError(_one_line([_describe(e) for e in exc.errors()], [])) from None
    if settings.database_url is None and not (
        settings.supabase_url and settings.supabase_service_role_key
    ):
        raise MissingSettingsError(_one_line([], [_DATABASE]))
    return settings


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be a URL starting with http:// or https://")
    return value


def _postgres_url(value: SecretStr | None) -> SecretStr | None:
    """The schemes asyncpg takes. No host is fine: libpq's `?host=/socket/dir` form."""
    if value is None:
        return None
    url = value.get_secret_value().strip()
    if urlsplit(url).scheme.lower() not in ("postgresql", "postgres"):
        raise ValueError("must be a Postgres URL starting with postgresql:// or postgres://")
    return SecretStr(url)


def load_settings() -> Settings:
    """Settings from the environment and `.env`.

    Raises SettingsError (MissingSettingsError when only required settings are absent),
    whose str() is one line naming every missing or invalid setting, never a value.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise _settings_error(exc) from None


def _settings_error(exc: ValidationError) -> SettingsError:
    # pydantic wraps validator errors; ours is the one clear line.
    for error in exc.errors():
        inner = (error.get("ctx") or {}).get("error")
        if isinstance(inner, SettingsError):
            return inner
    return SettingsError(_one_line([_describe(error) for error in exc.errors()], []))


_DATABASE = "DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)"


def _missing(present: Callable[[str], bool]) -> list[str]:
    missing = []
    if not present("database_url") and not (
        present("supabase_url") and present("supabase_service_role_key")
    ):
        missing.append(_DATABASE)
    if not present("openrouter_api_key"):
        missing.append("OPENROUTER_API_KEY")
    if not present("send_url") and not present("supabase_url"):
        missing.append("SEND_URL (or SUPABASE_URL)")
    if not present("supabase_service_role_key"):
        missing.append("SUPABASE_SERVICE_ROLE_KEY (the send endpoint's X-Service-Role-Key)")
    if not present("cron_secret"):
        missing.append("CRON_SECRET")
    return missing


def _one_line(invalid: list[str], missing: list[str]) -> str:
    problems = []
    if invalid:
        problems.append("invalid settings: " + "; ".join(invalid))
    if missing:
        problems.append("missing required settings: " + ", ".join(missing))
    return "; ".join(problems)


def _describe(error: ErrorDetails) -> str:
    """`NAME: why` for one pydantic error; the input is never echoed (it may be a secret)."""
    name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "int_from_float" or (kind == "int_parsing" and _is_float(error.get("input"))):
        why = "not a whole number"
    elif kind in ("int_parsing", "float_parsing", "int_type", "float_type"):
        why = "not a number"
    elif kind in ("bool_parsing", "bool_type"):
        why = "must be true or false"
    elif kind == "finite_number":
        why = "must be a finite number"
    elif kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        why = f"must be {symbol} {ctx.get(key)}"
    elif kind == "value_error" and "error" in ctx:
        why = str(ctx["error"])
    else:
        why = error["msg"]
    return f"{name}: {why}"


def _is_float(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
