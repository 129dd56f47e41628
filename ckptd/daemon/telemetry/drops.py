"""Messages the daemon dropped (malformed, refused, unknown sender), counted by reason.

Counted per ``socket:reason``; shown by ``status`` and the metrics, and logged at most every
:data:`LOG_INTERVAL` seconds, and only when a count grew since the last line. Messages from
a worker the daemon does not know yet (:data:`ORDINARY`) are counted but never logged: every
worker sends a few after a daemon restart, before it says hello again.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
ORDINARY = ("unknown_worker",)
"""Reasons that are part of ordinary life (counted, not logged)."""


class Drops:
    """The drop counters of one daemon."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._last_log = 0.0
        self._logged: dict[str, int] = {}

    def count(self, socket_name: str, reason: str, now: float) -> None:
        """Count one dropped message."""
        self.counts[f"{socket_name}:{reason}"] += 1
        if now - self._last_log >= LOG_INTERVAL:
            self.log(now)

    def internal_error(self, socket_name: str, reason: str, now: float) -> None:
        """Count an unexpected exception while handling a message; log it, rate-limited."""
        key = f"{socket_name}:{reason}"
        if self.counts[key] == 0 or now - self._last_log >= LOG_INTERVAL:
            log.exception("unexpected error while handling a %s message; dropped it",
                          socket_name)
        self.count(socket_name, reason, now)

    def log(self, now: float) -> None:
        """Log the counts when they grew since the last line (at most every interval)."""
        if now - self._last_log < LOG_INTERVAL:
            return
        current = {key: count for key, count in self.counts.items()
                   if key.split(":", 1)[1] not in ORDINARY}
        if current == self._logged:
            return
        self._last_log = now
        self._logged = current
        log.warning("dropped malformed or refused messages so far (ckptd status --json shows "
                    "them by reason)", extra={"fields": current})

    def as_dict(self) -> dict[str, int]:
        """The counts, for status and the metrics."""
        return dict(self.counts)
