"""SIGTERM drains the service and `python -m app process`: the platform's grace period (Cloud
Run gives 10 s) is then enough for the calls in progress to finish what they started and give
the rest back, where a kill would leave those messages under a lease until it expires (and
spend a retry).

In the service, the server's own handler (uvicorn's: stop accepting, wait for the calls, exit)
still runs, after ours. Signals are only seen from the main thread; elsewhere (a test's server
thread) this does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


def on_sigterm(callback: Callable[[], None]) -> Callable[[], None]:
    """Calls callback on SIGTERM, then the handler that was there; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        callback()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # no server handler: terminate, as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return undo


def drain_on_sigterm(callback: Callable[[], None]) -> Callable[[], None]:
    """For a process with no server to stop it (`python -m app process`): the first SIGTERM
    calls callback instead of terminating, and the process ends by itself once drained; a
    second one does what the handler that was there does (by default: terminate at once).
    Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)
        callback()

    signal.signal(signal.SIGTERM, handler)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return undo
