"""How a worker process is stopped: SIGTERM and Ctrl-C, for ``ckptd worker`` and for
``Worker(...).run()`` alike.

- The first SIGTERM or SIGINT stops taking jobs, lets the running ones finish, waits for the
  daemon to confirm their answers, and returns (no traceback, exit 0).
- A second one stops now: the running jobs are given back to the daemon, which runs them
  again at once without counting the attempt, and the worker says which.
- While the worker is still looking for its daemon, either one stops it at once.

Handlers are installed only when ``run()`` is called from the main thread (Python delivers
signals there), and the previous ones are put back when it returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol


class ConnectInterrupted(BaseException):
    """Raised in the main thread by a stop signal while the worker is still connecting."""


class Stoppable(Protocol):
    """What the signal handlers ask of a worker."""

    connecting: bool

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""

    def stop(self) -> None:
        """Finish the running jobs, then return from ``run()``."""

    def stop_now(self) -> None:
        """Give the running jobs back and return from ``run()`` now."""


def _handler(worker: Stoppable) -> Callable[[int, FrameType | None], None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        if worker.connecting:
            raise ConnectInterrupted(signum)
        if worker.stopping:
            worker.stop_now()
        else:
            worker.stop()
    return on_signal


def install(worker: Stoppable) -> None:
    """Handle SIGTERM and SIGINT for ``worker`` from now on (main thread only)."""
    handler = _handler(worker)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextmanager
def stop_signals(worker: Stoppable) -> Iterator[None]:
    """Handle SIGTERM and SIGINT for ``worker`` while the block runs, if this is the main
    thread; put the previous handlers back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    install(worker)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
