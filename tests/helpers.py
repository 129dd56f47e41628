"""Helpers shared by the test suites: waiting on asynchronous things, and nothing else.

Waiting goes through :func:`wait_for`, never a bare ``sleep`` that hopes something happened:
the predicate is polled until it holds or the timeout passes, and then the test fails
saying what it was waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised by :func:`wait_for` when the predicate did not hold in time."""


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01,
             message: str | None = None) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises :class:`WaitTimeout` (an AssertionError, so pytest shows it as a failure) after
    ``timeout`` seconds. The predicate is always called at least once, and once more at the
    deadline, so a slow machine does not lose the last chance.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
