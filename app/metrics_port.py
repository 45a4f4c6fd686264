"""METRICS_PORT: GET /metrics without a secret on a listener of its own (README: "Metrics").

Fly's metrics scraper (fly.toml's [metrics]) takes only a port and a path: it sends no
Authorization header, and the service's /metrics needs the status's secret. This second
listener answers GET /metrics, the same exposition, to anyone who reaches the port, and 404 to
every other path: the operator keeps the port private (on Fly, a port in no [http_service] or
[[services]] is reached only over the organisation's private network).

It runs in the service's event loop, beside it (app.serve): it starts once the service has
started (its clients built), and stops first when the service stops, before the clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from app.logs import log
from app.status_page import STATUS_RUNS_MAX
from app.store.rpc import DatabaseError
from app.store.store import Pacing

if TYPE_CHECKING:
    from app.main import Services

PATH = "/metrics"
# Every address of the machine, as the service's 0.0.0.0 (app.serve), and its IPv6 ones too:
# Fly's private network (6PN, <app>.internal) is IPv6. The wildcard "::" takes both families
# where the machine has IPv6; "0.0.0.0" where it has not.
DUAL_STACK = "::"
IPV4_ANY = "0.0.0.0"
STOP_WAIT_S = 5


def metrics_only_app(current: Callable[[], Services]) -> ASGIApp:
    """GET /metrics of the services current() returns; 404 for any other path, 405 for another
    method."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != PATH:
            await _answer(
                send,
                404,
                {"success": False, "error": f"not found: this port serves GET {PATH} only"},
            )
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, {"success": False, "error": "method not allowed"}, allow="GET")
            return
        services = current()
        pacing = Pacing.from_settings(services.settings)
        try:
            status = await services.store.queue_status(None, pacing, STATUS_RUNS_MAX)
        except DatabaseError as exc:
            log.error("database unavailable", extra={"error": str(exc)})
            await _answer(send, 503, {"success": False, "error": "database unavailable"})
            return
        await services.metrics.answer(status, scope, receive, send)

    return app


async def _answer(send: Send, code: int, body: dict[str, object], allow: str | None = None) -> None:
    headers = [(b"content-type", b"application/json")]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def bind(port: int) -> tuple[socket.socket, str]:
    """A listening socket on every address of the machine, IPv6 and IPv4 where it can, and
    the host it shows as. OSError when the port is taken."""
    if socket.has_ipv6:
        try:
            return _listening(socket.AF_INET6, DUAL_STACK, port), f"[{DUAL_STACK}]"
        except OSError as exc:
            if exc.errno not in _NO_IPV6:
                raise
    return _listening(socket.AF_INET, IPV4_ANY, port), IPV4_ANY


# IPv6 off in this machine or container.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)


def _listening(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(100)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MetricsListener(uvicorn.Server):
    """uvicorn on the bound socket, started and stopped by the service's server: it takes no
    signal itself (the service's server has them, and its handler drains the calls)."""

    def __init__(self, sock: socket.socket, current: Callable[[], Services]) -> None:
        config = uvicorn.Config(
            metrics_only_app(current),
            lifespan="off",
            log_level="warning",
            access_log=False,
            # A scrape stuck on the database never holds the service's shutdown longer.
            timeout_graceful_shutdown=STOP_WAIT_S,
        )
        super().__init__(config)
        self._socket = sock
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._listening.set()

    async def start(self) -> None:
        """Returns once it listens; raises what stopped it from starting."""
        self._task = asyncio.create_task(self.serve(sockets=[self._socket]))
        listening = asyncio.ensure_future(self._listening.wait())
        await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if self._task.done():
            await self._task

    async def stop(self) -> None:
        """Stops listening, lets a scrape under way answer (STOP_WAIT_S at most), and never
        raises: the service's shutdown goes on whatever happened here."""
        if self._task is None:
            return
        self.should_exit = True
        try:
            await self._task
        except Exception:
            log.exception("the metrics listener failed")
