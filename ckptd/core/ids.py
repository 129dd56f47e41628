"""New job ids that sort by creation time and never collide.

An id looks like ``20261127T192416.123456Z-9f3ac1d27b8e4a10``: the UTC time to the
microsecond, then 64 random bits. ``ls`` therefore lists jobs in FIFO order, and two hosts or
processes creating ids at the same microsecond still differ by the random part (a collision
needs the same microsecond and the same 64 bits). Within one process ids are strictly
increasing even if the wall clock steps back: the time part never goes below the last one.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime

_lock = threading.Lock()
_last_us = 0
_pid = os.getpid()


def _reset_after_fork() -> None:
    global _last_us, _pid, _lock
    _last_us = 0
    _pid = os.getpid()
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_reset_after_fork)


def new_id(now: float | None = None) -> str:
    """Return a new unique id whose string order is its creation order."""
    global _last_us
    us = int((time.time() if now is None else now) * 1_000_000)
    with _lock:
        if us <= _last_us:
            us = _last_us + 1
        _last_us = us
    seconds, micro = divmod(us, 1_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
    return f"{stamp}.{micro:06d}Z-{os.urandom(8).hex()}"


_STAMP = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
STAMP_LENGTH = 23  # of the time part of an id: 20261127T192416.123456Z


_GENERATED = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{16}")


def is_generated(job_id: str) -> bool:
    """Whether ``job_id`` has the form :func:`new_id` makes (such an id names one job only:
    no other submit makes it again)."""
    return _GENERATED.fullmatch(job_id) is not None


def id_stamp(when: float) -> str:
    """The time part an id made at ``when`` starts with (compare ids' first 23 characters
    with it as strings: much cheaper than parsing each id's time)."""
    us = int(when * 1_000_000)
    seconds, micro = divmod(us, 1_000_000)
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}.{micro:06d}Z"


def made_after(job_id: str, stamp: str) -> bool:
    """True when ``job_id`` is an id of :func:`new_id` made after the time whose
    :func:`id_stamp` is ``stamp`` (False for other ids: their time is not known)."""
    return job_id[:STAMP_LENGTH] > stamp and _STAMP.match(job_id) is not None


def id_time(job_id: str) -> datetime | None:
    """Return the creation time encoded in an id made by :func:`new_id`, else None."""
    try:
        return datetime.strptime(job_id[:23], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
