"""Priorities: the order in which a queue's due jobs are dispatched.

A job's priority is the ``priority`` field of its file (a whole number, lower runs first;
absent = 0), as in beanstalkd. :class:`ReadyLines` replaces a plain FIFO line: one FIFO line
per priority, and dispatch takes the head of the most urgent line.

The starvation rule is aging: a job that has waited moves up one priority level per
``priority_aging`` seconds (60 s by default, per queue). The line whose head has the lowest
*aged* priority (its priority less the levels it has waited) goes first. So a job of
priority 5 behind a flood of priority-0 jobs runs at the latest once it has waited
5 x ``priority_aging`` longer than the oldest priority-0 job still waiting: a flood can delay
the rest, never starve them. Every dispatch that aging decided (a less urgent line before a
more urgent one) is counted (``aged`` in ``status``, ``ckptd_priority_aged_total``), so
nobody misses that urgent work is arriving faster than it runs.

The daemon knows the priority of the jobs it creates (submits, retries, schedules). A job it
did not create (a file put into ``pending/`` by hand or by a client on its host, the
listing at start-up) has an unknown priority until its file is read: such ids wait in the
``unread`` line, and dispatch from their queue waits until they are read
(:func:`ckptd.daemon.engine.dispatch.read_unread`, a bounded number per turn). The bytes read are
kept for the claim where the store can keep them, so a job is still read once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ckptd.codec import loads
from ckptd.core.queue_controls import MAX_PRIORITY


def priority_of(value: Any) -> int:
    """The priority a job file (decoded, or its bytes) asks for; 0 for none or nonsense."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = loads(bytes(value))
        except ValueError:
            return 0
    found = value.get("priority") if isinstance(value, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) \
            and -MAX_PRIORITY <= found <= MAX_PRIORITY:
        return found
    return 0


class ReadyLines:
    """A queue's due jobs in dispatch order (see the module docstring).

    Behaves like the FIFO deque it replaces (``append``, ``appendleft``, ``popleft``,
    ``extend``, ``len``, iteration in dispatch order), plus the priorities: ``note`` records
    an id's priority before it is appended, ``add_unread`` holds an id whose priority is not
    known yet, ``learn`` files it once it is.
    """

    __slots__ = ("lines", "prio", "unread", "aging", "clock", "aged", "_zero")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._zero: deque[tuple[str, float]] = deque()
        self.lines: dict[int, deque[tuple[str, float]]] = {0: self._zero}
        self.prio: dict[str, int] = {}  # ids of open jobs whose priority is not 0
        self.unread: deque[str] = deque()
        self.aging = 0.0  # seconds per level; set from the settings by the dispatcher
        self.clock = clock
        self.aged = 0  # dispatches decided by aging

    # -- adding ----------------------------------------------------------------------------

    def note(self, job_id: str, priority: Any) -> None:
        """Record the priority of an open job (kept until it ends: a retry keeps it)."""
        level = priority_of({"priority": priority})
        if level:
            self.prio[job_id] = level
        elif self.prio:
            self.prio.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        """The job ended: forget its priority."""
        if self.prio:
            self.prio.pop(job_id, None)

    def _line(self, job_id: str) -> deque[tuple[str, float]]:
        level = self.prio.get(job_id, 0) if self.prio else 0
        if level == 0:
            return self._zero
        line = self.lines.get(level)
        if line is None:
            line = self.lines[level] = deque()
        return line

    def append(self, job_id: str) -> None:
        """Queue a due job at the end of its priority's line."""
        self._line(job_id).append((job_id, self.clock()))

    def appendleft(self, job_id: str) -> None:
        """Put a job back at the head of its line (a claim that did not happen)."""
        self._line(job_id).appendleft((job_id, self.clock()))

    def extend(self, ids: Iterable[str]) -> None:
        """Append several (known priorities)."""
        for job_id in ids:
            self.append(job_id)

    def add_unread(self, job_id: str) -> None:
        """A due job whose priority is not known until its file is read."""
        self.unread.append(job_id)

    def extend_unread(self, ids: Iterable[str]) -> None:
        """Several of those (the listing at start-up)."""
        self.unread.extend(ids)

    def learn(self, job_id: str, priority: int) -> None:
        """An unread job's file said its priority: queue it in its line."""
        self.note(job_id, priority)
        self.append(job_id)

    def keep_only(self, alive: set[str]) -> int:
        """Drop the ids that are not in ``alive`` (the open jobs): due jobs removed by
        someone else while no worker took them, and their priorities; return how many were
        dropped from the lines. One pass over every line."""
        dropped = 0
        for level in list(self.lines):
            line = self.lines[level]
            kept = deque(entry for entry in line if entry[0] in alive)
            dropped += len(line) - len(kept)
            if level == 0:
                line.clear()
                line.extend(kept)
            elif kept:
                self.lines[level] = kept
            else:
                del self.lines[level]
        unread = [job_id for job_id in self.unread if job_id in alive]
        dropped += len(self.unread) - len(unread)
        self.unread = deque(unread)
        for job_id in [j for j in self.prio if j not in alive]:
            del self.prio[job_id]
        return dropped

    # -- taking ----------------------------------------------------------------------------

    def popleft(self) -> str:
        """Take the id to dispatch next (IndexError when no line has one)."""
        lines = self.lines
        if len(lines) == 1:
            return self._zero.popleft()[0]  # the usual case: one priority
        best: deque[tuple[str, float]] | None = None
        best_key = (0.0, 0)
        first_level: int | None = None
        aging = self.aging
        now = self.clock() if aging > 0 else 0.0
        for level, line in lines.items():
            if not line:
                continue
            if first_level is None or level < first_level:
                first_level = level
            waited = (now - line[0][1]) / aging if aging > 0 else 0.0
            key = (level - waited, level)
            if best is None or key < best_key:
                best, best_key = line, key
        if best is None:
            raise IndexError("no ready job")
        job_id = best.popleft()[0]
        if best_key[1] != first_level:
            self.aged += 1
        if not best and best is not self._zero:
            del lines[best_key[1]]
        return job_id

    def __len__(self) -> int:
        lines = self.lines
        if len(lines) == 1:
            return len(self._zero)
        return sum(len(line) for line in lines.values())

    def __bool__(self) -> bool:
        return bool(self._zero) or (len(self.lines) > 1 and
                                    any(line for line in self.lines.values()))

    def __iter__(self) -> Iterator[str]:
        """The ids in dispatch order as of now, priorities first (aging left out)."""
        for level in sorted(self.lines):
            for job_id, _ in self.lines[level]:
                yield job_id

    def levels(self) -> dict[int, int]:
        """Jobs waiting per priority (the unread ones under None are left out)."""
        return {level: len(line) for level, line in sorted(self.lines.items()) if line}
