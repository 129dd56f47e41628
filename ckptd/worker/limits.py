"""Time limits and cancels: when a running attempt is asked to stop, and when it is stopped
by force.

- A time limit (the job's ``time_limit``, else the queue's, sent by the daemon, else the
  worker's ``--time-limit``) starts when the handler starts. When it runs out the handler is
  asked to stop: :class:`ckptd.TimeLimit` is raised in it (at its next checkpoint or
  progress, and at once where the pool can do it safely).
- A cancel asks the handler to stop at once (:class:`ckptd.Cancelled` at its next
  checkpoint or progress, ``job.cancelled``).
- Either way, a handler still running ``grace`` seconds later is stopped by force (a child
  process is killed; a thread or a task is written off), and its attempt ends.

Pure bookkeeping with the time passed in: the worker's I/O thread calls :meth:`Limits.due`
and carries out what it returns.
"""

from __future__ import annotations

from collections.abc import Iterable

from ckptd.core.outcomes import Cancelled, TimeLimit
from ckptd.core.timefmt import format_duration
from ckptd.wire.messages import JobMessage
from ckptd.worker.running import Attempt

SOFT = "soft"  # ask the handler to stop
HARD = "hard"  # stop it by force


def over_limit(limit: float | None) -> str:
    """Why a time limit stops an attempt: ``the attempt ran over its time limit of 1.5s``."""
    if not limit:
        return "the attempt ran over its time limit"
    said = f"{limit:g}s" if limit < 60 else format_duration(limit)
    return f"the attempt ran over its time limit of {said}"


class Limits:
    """Deadlines of the attempts a worker runs."""

    def __init__(self, grace: float, default_limit: float | None = None) -> None:
        self.grace = max(0.0, grace)
        self.default_limit = default_limit or None

    def limit_of(self, body: JobMessage) -> float | None:
        """The time limit of a job message: its own, else the worker's default."""
        limit = body.time_limit  # positive when there is one (wire.fields.Seconds)
        return float(limit) if limit is not None else self.default_limit

    def started(self, attempt: Attempt, now: float) -> None:
        """The handler of ``attempt`` starts now: its time limit starts to run."""
        attempt.started = now
        if attempt.time_limit is not None:
            attempt.soft_at = now + attempt.time_limit
            attempt.hard_at = attempt.soft_at + self.grace
        if attempt.flags.cancelled:  # cancelled while it waited for a slot
            attempt.soft_at = now
            attempt.hard_at = now + self.grace

    def cancelled(self, attempt: Attempt, now: float, by: str | None) -> None:
        """``attempt`` was cancelled: ask it to stop now, by force after the grace."""
        who = f" by {by}" if by else ""
        attempt.flags.ask(Cancelled(f"the job was cancelled{who}"))
        attempt.soft_at = now
        hard = now + self.grace
        attempt.hard_at = hard if attempt.hard_at is None else min(attempt.hard_at, hard)
        attempt.interrupted = False  # deliver this stop too

    def due(self, attempts: Iterable[Attempt], now: float) -> list[tuple[Attempt, str]]:
        """What to do now: (attempt, SOFT) to ask it to stop, (attempt, HARD) to stop it."""
        actions: list[tuple[Attempt, str]] = []
        for attempt in attempts:
            if attempt.ended or attempt.started is None:
                continue
            if attempt.hard_at is not None and now >= attempt.hard_at and not attempt.killed:
                attempt.killed = True
                actions.append((attempt, HARD))
            elif (attempt.soft_at is not None and now >= attempt.soft_at
                  and not attempt.interrupted):
                attempt.interrupted = True
                if attempt.flags.stop is None and attempt.time_limit is not None:
                    attempt.flags.ask(TimeLimit(over_limit(attempt.time_limit)))
                actions.append((attempt, SOFT))
        return actions

    def next_deadline(self, attempts: Iterable[Attempt]) -> float | None:
        """The earliest moment :meth:`due` has something to do, or None."""
        times = []
        for attempt in attempts:
            if attempt.ended or attempt.started is None:
                continue
            if attempt.soft_at is not None and not attempt.interrupted:
                times.append(attempt.soft_at)
            if attempt.hard_at is not None and not attempt.killed:
                times.append(attempt.hard_at)
        return min(times) if times else None
