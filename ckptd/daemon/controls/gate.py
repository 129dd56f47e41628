"""Whether a queue may have a job claimed now: pause, max_running, rate.

The dispatcher asks :meth:`Gate.allows` before it takes a job of a queue and tells
:meth:`Gate.took` after each claim; nothing else. What the gate holds comes from files and
settings, never only from memory, so it holds across restarts and failover:

- **pause**: the file ``<root>/<queue>/paused`` (its text is the reason); the daemon's
  watcher (or a bucket's listing) reports it and :mod:`~ckptd.daemon.controls.control_files` sets
  it here.
- **max_running**: at most N jobs of the queue claimed at once, over every worker. The count
  is the index's claimed jobs, which after a restart include the jobs adopted from
  ``claimed/``: a restart does not open the limit.
- **rate**: a token bucket per queue (``100/s``: a token every 10 ms, at most a tenth of a
  second's worth saved up). A restart starts with a full bucket, that tenth of a second.

Both limits come from ``[queues.NAME]`` (re-read on SIGHUP) or from the queue's
``limits.json`` (``ckptd limit``), which wins while it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from ckptd.core.answer_types import PauseView
from ckptd.core.config import LiveSettings
from ckptd.core.queue_controls import Limits, Rate, limits_of
from ckptd.core.timefmt import utc_iso


@dataclass
class Pause:
    """A paused queue: the reason (the file's text) and since when this daemon knows."""

    reason: str
    since: float

    def as_dict(self) -> PauseView:
        """For status and explain."""
        return {"reason": self.reason, "since": utc_iso(self.since)}


class TokenBucket:
    """Tokens refill at ``rate.per_second`` up to ``size`` (``rate.burst`` unless given);
    a claim takes one."""

    __slots__ = ("rate", "tokens", "at", "size")

    def __init__(self, rate: Rate, now: float, size: float | None = None) -> None:
        self.rate = rate
        self.size = rate.burst if size is None else size
        self.tokens = self.size
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.size,
                              self.tokens + (now - self.at) * self.rate.per_second)
        self.at = now

    def ready(self, now: float) -> bool:
        """True when a token is there."""
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        """Use one token."""
        self._refill(now)
        self.tokens -= 1.0

    def next_at(self) -> float:
        """When the next token is there."""
        return self.at + max(0.0, 1.0 - self.tokens) / self.rate.per_second


class Gate:
    """The pause and limits of every queue of one daemon."""

    def __init__(self, live: LiveSettings) -> None:
        self.live = live
        self.paused: dict[str, Pause] = {}
        self.overrides: dict[str, Limits] = {}  # from limits.json files
        self.override_errors: dict[str, str] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.throttled: dict[str, int] = {}  # turns a queue had work but no token

    def clear(self) -> None:
        """Forget everything (the daemon stopped leading; recovery reads the files again)."""
        self.paused.clear()
        self.overrides.clear()
        self.override_errors.clear()
        self.buckets.clear()

    def limits(self, queue: str) -> Limits:
        """The limits in force for ``queue``."""
        return limits_of(self.live.current, queue, self.overrides.get(queue))

    def allows(self, queue: str, running: int, now: float) -> bool:
        """May a job of ``queue`` be claimed now, with ``running`` of its jobs claimed?"""
        if self.paused and queue in self.paused:
            return False
        q = self.live.current.queues.get(queue)
        if q is None and not self.overrides:
            return True  # the usual case: a queue without limits
        limits = self.limits(queue)
        if limits.max_running is not None and running >= limits.max_running:
            return False
        if limits.rate is not None and not self._bucket(queue, limits.rate, now).ready(now):
            self.throttled[queue] = self.throttled.get(queue, 0) + 1
            return False
        return True

    def took(self, queue: str, now: float) -> None:
        """A job of ``queue`` was claimed: it used a token of the rate."""
        bucket = self.buckets.get(queue)
        if bucket is not None and (self.live.current.queues.get(queue) is not None
                                   or queue in self.overrides):
            rate = self.limits(queue).rate
            if rate is not None:
                self._bucket(queue, rate, now).take(now)

    def _bucket(self, queue: str, rate: Rate, now: float) -> TokenBucket:
        bucket = self.buckets.get(queue)
        if bucket is None or bucket.rate != rate:  # new, or the rate changed (reload, limit)
            bucket = self.buckets[queue] = TokenBucket(rate, now)
        return bucket

    def next_token(self, queues: list[str]) -> float | None:
        """When the earliest of ``queues`` (rate-limited, with work waiting) gets a token."""
        times = [self.buckets[q].next_at() for q in queues if q in self.buckets
                 and q not in self.paused and self.limits(q).rate is not None]
        return min(times) if times else None

    def view(self, queue: str, running: int) -> dict[str, object]:
        """What status shows of the queue's pause and limits (the start of its controls'
        view, which the engine completes)."""
        limits: dict[str, object] = {**self.limits(queue).as_dict(), "running": running,
                                     "throttled": self.throttled.get(queue, 0)}
        if queue in self.override_errors:
            limits["error"] = self.override_errors[queue]
        return {"paused": self.paused[queue].as_dict() if queue in self.paused else None,
                "limits": limits}
