"""One validated settings object, read from the environment and `.env`."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MissingSettingsError(ValueError):
    """Raised at start-up when required settings are absent; the message names them all."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

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

    # Default: {SUPABASE_URL}/functions/v1/internal-send-ai-message
    send_url: str | None = None

    cron_secret: SecretStr | None = None

    batch_size: int = Field(default=5, ge=1, le=100)
    max_concurrency: int = Field(default=5, ge=1, le=50)
    max_messages: int = Field(default=1000, ge=1, le=10000)
    time_budget_s: float = Field(default=50.0, gt=0, le=3600)
    lock_timeout_s: int = Field(default=600, ge=1)
    skip_after_minutes: int = Field(default=60, ge=1)

    generate_timeout_s: float = Field(default=30.0, gt=0)
    split_timeout_s: float = Field(default=20.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    retry_max_tries: int = Field(default=3, ge=1, le=10)
    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_wait_s: float = Field(default=60.0, ge=0)
    circuit_failure_threshold: int = Field(default=5, ge=1)

    port: int = 8080
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _require_what_the_service_needs(self) -> Self:
        missing = []
        if self.database_url is None and (
            self.supabase_url is None or self.supabase_service_role_key is None
        ):
            missing.append("DATABASE_URL (or SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY)")
        if self.openrouter_api_key is None:
            missing.append("OPENROUTER_API_KEY")
        if self.send_url is None and self.supabase_url is None:
            missing.append("SEND_URL (or SUPABASE_URL)")
        if self.supabase_service_role_key is None:
            missing.append("SUPABASE_SERVICE_ROLE_KEY (the send endpoint's X-Service-Role-Key)")
        if self.cron_secret is None:
            missing.append("CRON_SECRET")
        if missing:
            raise MissingSettingsError("missing required settings: " + ", ".join(missing))
        return self

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
    """Only what `python -m app migrate` needs, from the environment or `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: SecretStr | None = None


def load_settings() -> Settings:
    """Settings from the environment; raises MissingSettingsError naming what is absent."""
    try:
        return Settings()
    except MissingSettingsError:
        raise
    except ValueError as exc:
        cause = _missing_settings_cause(exc)
        if cause is not None:
            raise cause from None
        raise


def _missing_settings_cause(exc: ValueError) -> MissingSettingsError | None:
    # pydantic wraps validator errors; surface ours as the one clear line it is.
    for error in getattr(exc, "errors", lambda: [])():
        ctx = error.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, MissingSettingsError):
            return inner
    return None
