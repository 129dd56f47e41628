"""How a handler's attempt ends when it is not a plain return or a plain error.

Raised by a handler (control flow, not errors): ``raise Retry(delay=30)`` asks for another
attempt after 30 seconds (it uses up an attempt, so ``max_attempts`` still bounds a job that
never succeeds); ``raise Fail("no such SKU")`` moves the job to ``failed/`` at once, whatever
attempts are left. Any other exception fails the attempt and the job is retried with backoff.

``raise Park(signal="approved", timeout=86400)`` ends the attempt and waits, in
``waiting/``, without holding a worker slot (:class:`Park`).

Raised *into* a handler by its worker, to ask it to stop (:class:`Interrupt`):
:class:`TimeLimit` when the attempt ran over its time limit, :class:`Cancelled` when an
operator cancelled the job. They derive from ``BaseException``, as ``KeyboardInterrupt`` and
``asyncio.CancelledError`` do, so that a handler's ``except Exception`` (a retry loop around
an HTTP call, say) does not swallow them; ``finally`` blocks still run. A handler may catch
them to save a checkpoint before it stops.
"""

from __future__ import annotations

from datetime import datetime


class Retry(Exception):
    """Raised by a handler to retry the job later (after ``delay`` seconds, or the backoff)."""

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Fail(Exception):
    """Raised by a handler to fail the job for good, without using its remaining attempts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Interrupt(BaseException):
    """Raised into a handler by its worker to ask it to stop now (see the subclasses)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TimeLimit(Interrupt):
    """Raised into a handler whose attempt ran over its time limit (``time_limit``).

    The attempt fails and is retried per the retry policy, from its last checkpoint; the
    handler may catch it to save one first, within the worker's grace period.
    """


class Cancelled(Interrupt):
    """Raised into a handler whose job was cancelled (``ckptd cancel``), at its next
    ``checkpoint()`` or ``progress()`` call; the job is already in ``failed/``."""


class Park(Exception):
    """Raised by a handler to wait without holding its worker slot or its lease.

    Checkpoint first: the job moves from ``claimed/`` to ``waiting/`` (its attempt ends
    without counting against ``max_attempts``), and runs again from its last checkpoint
    when the first of these happens: a ``signal`` (a name, or several) arrives for it; the
    time ``until`` comes (seconds since the epoch, or a timezone-aware datetime); its
    ``children`` (the jobs it spawned in this attempt) have all ended; or ``timeout``
    seconds pass (then ``job.woken["reason"]`` is ``"timeout"``). The next attempt reads
    ``job.signals``, ``job.children`` and ``job.woken``.
    """

    def __init__(self, reason: str = "parked", *, until: float | datetime | None = None,
                 signal: str | list[str] | tuple[str, ...] | None = None,
                 children: bool = False, timeout: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.until = until.timestamp() if isinstance(until, datetime) else until
        self.signals = ([signal] if isinstance(signal, str) else list(signal or []))
        self.children = children
        self.timeout = timeout
        if until is None and not self.signals and not children and timeout is None:
            raise ValueError("Park needs something to wait for: until=, signal=, "
                             "children=True or timeout=")
        if timeout is not None and timeout <= 0:
            raise ValueError("Park's timeout must be longer than 0s")
