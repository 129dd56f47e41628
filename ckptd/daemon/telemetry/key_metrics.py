"""Claims per key, counted with a bounded set of labels: the busiest keys, then "other".

A queue may have ten thousand keys (one per customer); a Prometheus series per key would
be ten thousand series per family. :class:`KeyClaims` gives a key a label of its own once it
is among the :data:`TOP_KEYS` busiest of its queue (by running and ready jobs, when a
snapshot is taken) while fewer than :data:`MOST_LABELS` keys have one; every other claim
counts under ``other``. A label, once given, stays until the daemon restarts, so each
series only grows (a counter that Prometheus can take rates of); the claims a key made
before it got its label stay in ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable

TOP_KEYS = 10  # keys shown by name: in status, the dashboard and the gauges of /metrics
MOST_LABELS = 2 * TOP_KEYS  # keys with a claims counter of their own, per queue
OTHER = "other"  # the label of every other key (a key named "other" is never labelled)


class KeyClaims:
    """Claims of one queue's keys: the labelled ones by key, the rest in ``other``."""

    __slots__ = ("labelled", "other")

    def __init__(self) -> None:
        self.labelled: dict[str, int] = {}
        self.other = 0

    def claimed(self, key: str) -> None:
        """A job of ``key`` was claimed."""
        if key in self.labelled:
            self.labelled[key] += 1
        else:
            self.other += 1

    def promote(self, busiest: Iterable[str]) -> None:
        """Give a label to the busiest keys that have none, while there is room."""
        for key in busiest:
            if len(self.labelled) >= MOST_LABELS:
                return
            if key and key != OTHER:
                self.labelled.setdefault(key, 0)

    def as_dict(self) -> dict[str, int]:
        """The counters by label (``other`` last), for the snapshot."""
        return {**self.labelled, OTHER: self.other}
