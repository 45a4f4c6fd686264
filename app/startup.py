"""The start-up line: version, store kind and the effective settings, without a secret.

Never a key, the CRON_SECRET, a database password or a full DATABASE_URL: a secret shows
as "set" (or null), DATABASE_URL as its host, port and database, and a URL setting loses
its user, password and query.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr

from app.logs import log
from app.settings import Settings
from app.store.dsn import database_address

DISTRIBUTION = "campaign-queue"


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def store_kind(settings: Settings) -> str:
    """asyncpg when DATABASE_URL is set (it wins), else supabase (PostgREST)."""
    return "asyncpg" if settings.database_url is not None else "supabase"


def public_url(url: str | None) -> str | None:
    """The URL without its user, password, query and fragment (where tokens may hide)."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        netloc = host + (f":{parts.port}" if parts.port is not None else "")
    except ValueError:
        netloc = host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_URL_SETTINGS = ("supabase_url", "openrouter_base_url", "send_url")


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting as the service uses it, secrets left out."""
    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "database_url":
            shown[name] = None if value is None else _address(value.get_secret_value())
        elif isinstance(value, SecretStr):
            shown[name] = "set"
        elif name in _URL_SETTINGS:
            shown[name] = public_url(value)
        else:
            shown[name] = value
    shown["send_url"] = public_url(settings.resolved_send_url) if _can_send(settings) else None
    shown["database_statement_cache_size"] = settings.statement_cache_size
    return shown


def _address(dsn: str) -> dict[str, Any]:
    where = database_address(dsn)
    return {"host": where.host, "port": where.port, "database": where.database}


def _can_send(settings: Settings) -> bool:
    return settings.send_url is not None or settings.supabase_url is not None


def log_start_up(settings: Settings) -> None:
    """One JSON line through app.logs (configure_logging first)."""
    log.info(
        "campaign-queue starting",
        extra={
            "version": package_version(),
            "store": store_kind(settings),
            "settings": effective_settings(settings),
        },
    )


def secrets_of(settings: Settings) -> list[str]:
    """What the log formatter redacts: every secret setting, and the database password."""
    values = [
        settings.openrouter_api_key,
        settings.supabase_service_role_key,
        settings.cron_secret,
        settings.operator_token,
        settings.database_url,
    ]
    secrets = [v.get_secret_value() for v in values if v is not None]
    if settings.database_url is not None:
        try:
            password = urlsplit(settings.database_url.get_secret_value()).password
        except ValueError:
            password = None
        if password:
            secrets.append(password)
            secrets.append(unquote(password))
    return secrets
