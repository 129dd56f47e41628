"""What a handler raises to say how its attempt ended, when it is not a plain error.

Not errors: control flow. ``raise Retry(delay=30)`` asks for another attempt after 30
seconds (it uses up an attempt, so ``max_attempts`` still bounds a job that never succeeds);
``raise Fail("no such SKU")`` moves the job to ``failed/`` at once, whatever attempts are left.
Any other exception fails the attempt and the job is retried with backoff.
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
