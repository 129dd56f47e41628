"""How a handler's attempt ends when it is not a plain return or a plain error.

Raised by a handler (control flow, not errors): ``raise Retry(delay=30)`` asks for another
attempt after 30 seconds (it uses up an attempt, so ``max_attempts`` still bounds a job that
never succeeds); ``raise Fail("no such SKU")`` moves the job to ``failed/`` at once, whatever
attempts are left. Any other exception fails the attempt and the job is retried with backoff.

Raised *into* a handler by its worker, to ask it to stop (:class:`Interrupt`):
:class:`TimeLimit` when the attempt ran over its time limit, :class:`Cancelled` when an
operator cancelled the job. They derive from ``BaseException``, as ``KeyboardInterrupt`` and
``asyncio.CancelledError`` do, so that a handler's ``except Exception`` (a retry loop around
an HTTP call, say) does not swallow them; ``finally`` blocks still run. A handler may catch
them to save a checkpoint before it stops.
"""

from __future__ import annotations


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
