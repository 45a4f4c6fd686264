"""Where a connection string points, for messages and logs: never its user or password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class DatabaseAddress:
    host: str | None  # a name, an IP, or a socket directory ("/run/postgresql")
    port: int | None
    database: str | None

    def __str__(self) -> str:
        """`host:port`, or `the socket in /dir`."""
        host = self.host or "localhost"
        if host.startswith("/"):
            return f"the socket in {host}"
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{host}:{self.port or 5432}"


def database_address(dsn: str) -> DatabaseAddress:
    """The (first) host, the port and the database of a postgres:// URL, as asyncpg reads it:
    the query's host, port and dbname when the URL has none."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname
        port: int | None = parts.port
    except ValueError:  # a port that is not a number
        return DatabaseAddress(None, None, None)
    query = parse_qs(parts.query)
    if not host:
        host = unquote((query.get("host") or [""])[0].split(",")[0]) or None
    if port is None:
        first = (query.get("port") or [""])[0].split(",")[0]
        port = int(first) if first.isascii() and first.isdigit() else 5432
    database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [""])[0] or None
    return DatabaseAddress(host, port, database)
