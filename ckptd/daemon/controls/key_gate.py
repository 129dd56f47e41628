"""Whether a job of a key may be claimed now: the key's max_running and rate.

The limits of a key come from ``[queues.Q.keys]`` and ``[queues.Q.keys."K"]`` (re-read on
SIGHUP) and from the queue's ``key_limits.json`` (``ckptd limit Q --key K``), in the order
:func:`ckptd.core.key_settings.key_limits_of` says. As for the queue's own limits
(:mod:`ckptd.daemon.controls.gate`), nothing is only in memory:

- **max_running** counts the key's claimed jobs in the index, which after a restart (or a
  failover) include the jobs adopted from ``claimed/``, whose files say their key: a
  restart does not open a key's limit.
- **rate** is a token bucket per key that holds one token more than a queue's
  (:data:`SLACK`): a key's rate is often a few a second, and with a bucket of one a claim
  made late (the loop was busy) lost that lateness for good (10/s with claims 20 ms late
  was 8.3/s). A restart starts with full buckets.

The dispatcher asks through :meth:`KeyGate.rules` (one per queue and turn) and tells
:meth:`KeyGate.took` after each claim. Memory per key: a cached view of its limits (about
200 bytes) and, for a key with a rate, its token bucket (about 150 bytes); both are bounded
(:data:`MOST_KEYS`), dropped when idle.
"""

from __future__ import annotations

from collections.abc import Mapping

from ckptd.core.config import LiveSettings, Settings
from ckptd.core.job_keys import EVERY_KEY
from ckptd.core.key_settings import (
    KeyLimit,
    KeyLimitsInForce,
    key_limits_of,
    limits_any_key,
)
from ckptd.core.queue_controls import Rate
from ckptd.daemon.controls.gate import TokenBucket
from ckptd.daemon.controls.key_lines import UNTIL_ONE_ENDS

SLACK = 1.0  # tokens a key's bucket holds beyond the queue's burst (see above)
MOST_KEYS = 100_000  # cached limits and buckets kept at most (then the idle are dropped)


class KeyRulesNow:
    """The keys' limits of one queue at one instant, as a take asks them."""

    __slots__ = ("gate", "queue", "running", "now", "fair", "generation", "limited")

    def __init__(self, gate: KeyGate, queue: str, running: Mapping[str, int], now: float,
                 fair: bool, generation: int, limited: bool) -> None:
        self.gate = gate
        self.queue = queue
        self.running = running
        self.now = now
        self.fair = fair
        self.generation = generation
        self.limited = limited

    def blocked(self, key: str) -> float | None:
        """None when a job of ``key`` may be claimed now, else until when it may not."""
        if not self.limited:
            return None
        return self.gate.blocked(self.queue, key, self.running.get(key, 0), self.now)

    def weight(self, key: str) -> int:
        """Turns of ``key`` per round of the fair share."""
        return self.gate.limits(self.queue, key).weight


class KeyGate:
    """The limits of every key of every queue of one daemon."""

    def __init__(self, live: LiveSettings) -> None:
        self.live = live
        self.overrides: dict[str, dict[str, KeyLimit]] = {}  # from key_limits.json files
        self.override_where: dict[str, str] = {}
        self.override_errors: dict[str, str] = {}
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.throttled: dict[str, int] = {}  # per queue: a key waited for a token
        self.held: dict[str, int] = {}  # per queue: a key was at its max_running
        self._cache: dict[tuple[str, str], KeyLimitsInForce] = {}
        self._limited: dict[str, bool] = {}
        self._generation = 0
        self._seen: Settings | None = None

    def changed(self) -> None:
        """A limit changed (a file, a request): keys held by their limits look again."""
        self._generation += 1
        self._cache.clear()
        self._limited.clear()

    @property
    def generation(self) -> int:
        """Changes with every change of any key's limits (a reload included)."""
        if self.live.current is not self._seen:
            self._seen = self.live.current
            self.changed()
        return self._generation

    def clear(self) -> None:
        """Forget the files' limits and the buckets (recovery reads the files again)."""
        self.overrides.clear()
        self.override_where.clear()
        self.override_errors.clear()
        self.buckets.clear()
        self.changed()

    def set_override(self, queue: str, limits: dict[str, KeyLimit] | None, where: str = ""
                     ) -> None:
        """The queue's ``key_limits.json`` as read now (None: there is none)."""
        if limits is None:
            self.overrides.pop(queue, None)
            self.override_where.pop(queue, None)
        else:
            self.overrides[queue] = limits
            self.override_where[queue] = where
        self.changed()

    def limits(self, queue: str, key: str) -> KeyLimitsInForce:
        """The limits in force for ``key`` of ``queue``."""
        self.generation  # noqa: B018 - a reload clears the cache
        found = self._cache.get((queue, key))
        if found is None:
            if len(self._cache) >= MOST_KEYS:
                self._cache.clear()
            found = self._cache[(queue, key)] = key_limits_of(
                self.live.current.queue(queue).keys, key, self.overrides.get(queue),
                self.override_where.get(queue, "config"))
        return found

    def limited(self, queue: str) -> bool:
        """True when some key of ``queue`` has a max_running or a rate."""
        self.generation  # noqa: B018
        found = self._limited.get(queue)
        if found is None:
            found = self._limited[queue] = limits_any_key(
                self.live.current.queue(queue).keys, self.overrides.get(queue))
        return found

    def fair(self, queue: str) -> bool:
        """True when ``queue`` shares its workers fairly between keys (``fair = true``)."""
        return bool(self.live.current.queue(queue).fair)

    def rules(self, queue: str, running: Mapping[str, int], now: float) -> KeyRulesNow:
        """What a take of ``queue`` asks, now (``running``: claimed jobs per key)."""
        return KeyRulesNow(self, queue, running, now, self.fair(queue), self.generation,
                           self.limited(queue))

    def blocked(self, queue: str, key: str, running: int, now: float) -> float | None:
        """None when a job of ``key`` may be claimed now (``running`` of its jobs are);
        else until when it may not (inf: until one of them ends)."""
        limits = self.limits(queue, key)
        if limits.max_running is not None and running >= limits.max_running:
            self.held[queue] = self.held.get(queue, 0) + 1
            return UNTIL_ONE_ENDS
        if limits.rate is not None:
            bucket = self._bucket(queue, key, limits.rate, now)
            if not bucket.ready(now):
                self.throttled[queue] = self.throttled.get(queue, 0) + 1
                return bucket.next_at()
        return None

    def took(self, queue: str, key: str, now: float) -> None:
        """A job of ``key`` was claimed: it used a token of the key's rate."""
        if not key or not self.limited(queue):
            return
        rate = self.limits(queue, key).rate
        if rate is not None:
            self._bucket(queue, key, rate, now).take(now)

    def _bucket(self, queue: str, key: str, rate: Rate, now: float) -> TokenBucket:
        bucket = self.buckets.get((queue, key))
        if bucket is None or bucket.rate != rate:  # new, or the rate changed
            if bucket is None and len(self.buckets) >= MOST_KEYS:
                self._drop_full(now)
            bucket = self.buckets[(queue, key)] = TokenBucket(rate, now, rate.burst + SLACK)
        return bucket

    def _drop_full(self, now: float) -> None:
        """Forget the buckets that are full again: a new one starts full, the same."""
        for name, bucket in list(self.buckets.items()):
            bucket.ready(now)
            if bucket.tokens >= bucket.size:
                del self.buckets[name]

    def view(self, queue: str) -> dict[str, object]:
        """What status shows of the queue's limits per key (those of every key)."""
        keys = self.live.current.queue(queue).keys
        every = key_limits_of(keys, EVERY_KEY, self.overrides.get(queue),
                              self.override_where.get(queue, "config"))
        found: dict[str, object] = {
            "fair": self.fair(queue), "every_key": every.as_dict(),
            "named": sorted(set(keys.named if keys else ()) |
                            {k for k in self.overrides.get(queue, {}) if k != EVERY_KEY}),
            "throttled": self.throttled.get(queue, 0), "held": self.held.get(queue, 0)}
        if queue in self.override_errors:
            found["error"] = self.override_errors[queue]
        return found
