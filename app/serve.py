"""`python -m app serve`: uvicorn on 0.0.0.0:$PORT, saying where it listens and when it stops.

Three plain lines on stderr, beside the service's JSON log: where it listens once it does,
which signal stops it (Ctrl-C is SIGINT; the platforms send SIGTERM, which also drains the
calls in progress, see app.shutdown), and that it stopped. Exit 0 after a signal; 2 on a
bad setting (one line naming it); 3 when the start-up fails (uvicorn's code; a METRICS_PORT
already taken: one line naming it).

With METRICS_PORT, a second listener in the same event loop answers GET /metrics without a
secret (app.metrics_port): it starts after the service, says where on a fourth line, and stops
first.
"""

from __future__ import annotations

import signal
import socket
import sys
from types import FrameType

import uvicorn

from app.metrics_port import PATH as METRICS_PATH
from app.metrics_port import MetricsListener, bind
from app.settings import SettingsError, load_settings

HOST = "0.0.0.0"


def say(line: str) -> None:
    print(f"campaign-queue: {line}", file=sys.stderr, flush=True)


class _AnnouncingServer(uvicorn.Server):
    stopped_by: int | None = None
    metrics: tuple[MetricsListener, str] | None = None  # the listener, and where it listens

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            say(f"listening on http://{HOST}:{self.config.port} (Ctrl-C or SIGTERM stops it)")
            if self.metrics is not None:
                listener, where = self.metrics
                await listener.start()
                say(f"metrics without a secret on http://{where}{METRICS_PATH} (METRICS_PORT)")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # No I/O in a signal handler (a print it interrupts would be re-entered): noted here,
        # said when the shutdown starts.
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.stopped_by is not None:
            name = signal.Signals(self.stopped_by).name
            say(f"{name}: stopping; the calls in progress finish first")
        if self.metrics is not None:  # before the service's clients close
            await self.metrics[0].stop()
        await super().shutdown(sockets)


def serve() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:  # missing or invalid: one line naming them, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics_socket = None
    if settings.metrics_port is not None:
        try:
            metrics_socket, metrics_host = bind(settings.metrics_port)
        except OSError as exc:
            print(
                f"error: METRICS_PORT: cannot listen on port {settings.metrics_port}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return 3
    from app.main import app  # no I/O at import: the clients come in its lifespan

    config = uvicorn.Config(app, host=HOST, port=settings.port, log_level="warning")
    server = _AnnouncingServer(config)
    if metrics_socket is not None:
        listener = MetricsListener(metrics_socket, lambda: app.state.services)
        server.metrics = (listener, f"{metrics_host}:{settings.metrics_port}")
    # uvicorn raises the signal it stopped on again once its handlers are gone, for the ones
    # that were there before: these have nothing left to do (the line is said, the server
    # is down), so the exit is 0 rather than death by SIGTERM or a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, _nothing) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("stopped")
    return 0


def _nothing(signum: int, frame: FrameType | None) -> None:
    pass
