"""A clock that moves only when told: what the daemon reads as "now" in tests."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Returns the same time until :meth:`advance` (or :meth:`set`) moves it.

    Call it for the time, as ``time.time`` is called: ``Daemon(settings, clock=clock)``. It
    starts at ``start`` (UNIX seconds; default: the real time when it was made, so that
    timestamps it stamps on job files look like today's). Safe to read and move from any
    thread; it never goes backwards.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (not negative); return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backwards ({seconds:g}s)")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        """Move to the UNIX time ``when`` (not before the current time)."""
        with self._lock:
            if when < self._now:
                raise ValueError(f"a clock does not go backwards ({when:.6f} < {self._now:.6f})")
            self._now = float(when)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
