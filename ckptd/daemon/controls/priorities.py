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

The daemon knows the priority of the jobs it creates (submits, retries, schedules). Of a file
it did not write (put into ``pending/`` by hand, listed at start-up) the priority is in its
name, ``<id>,p<N>.json`` (:func:`ckptd.store.file_names.pending_name`): a listing alone orders
the queue, no file is read before its claim. The ids a listing finds are held compactly in
the queue's :class:`~ckptd.daemon.controls.backlog.Backlog`, which these lines take from.

A queue whose jobs have keys holds one set of lines per key
(:mod:`ckptd.daemon.controls.key_lines`): each is a :class:`ReadyLines` with its ``key``,
filing its listed ids in the backlog under ``(priority, key)``, and sharing the queue's
priorities (``prio``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ckptd.codec import loads
from ckptd.core import jobs
from ckptd.daemon.controls.backlog import Backlog
from ckptd.store.file_names import Line, level_of_line
from ckptd.store.packed_ids import IdRun


def priority_of(value: object) -> int:
    """The priority a job file (decoded, or its bytes) asks for; 0 for none or nonsense."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = loads(bytes(value))
        except ValueError:
            return 0
    return jobs.priority_of(value)


class ReadyLines:
    """A queue's due jobs in dispatch order (see the module docstring).

    Behaves like the FIFO deque it replaces (``append``, ``appendleft``, ``popleft``,
    ``extend``, ``len``, iteration in dispatch order), plus the priorities: ``note`` records
    an id's priority before it is appended, ``add_listed`` files ids a listing found under
    the priority their names carry. Listed ids wait in the queue's backlog, ahead of the
    ids appended after them in their line. ``key``: the key whose lines these are ("" for
    the jobs without one).
    """

    __slots__ = ("lines", "prio", "aging", "clock", "aged", "_zero", "backlog", "key",
                 "listed_levels", "left")

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 backlog: Backlog | None = None, prio: dict[str, int] | None = None,
                 key: str = "") -> None:
        self._zero: deque[tuple[str, float]] = deque()
        self.lines: dict[int, deque[tuple[str, float]]] = {0: self._zero}
        # ids of open jobs whose priority is not 0 (shared by the lines of every key)
        self.prio: dict[str, int] = {} if prio is None else prio
        self.aging = 0.0  # seconds per level; set from the settings by the dispatcher
        self.clock = clock
        self.aged = 0  # dispatches decided by aging
        self.backlog = backlog if backlog is not None else Backlog()
        self.key = key
        self.listed_levels: set[int] = set()  # priorities with listed ids in the backlog
        self.left = 0  # ids that left pending/ while in a line (removed by hand, cancelled)

    def _bl(self, level: int) -> Line:
        """Where the backlog files this lines' listed ids of ``level``."""
        return (level, self.key) if self.key else level

    # -- adding ----------------------------------------------------------------------------

    def note(self, job_id: str, priority: object) -> None:
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

    def sweep(self, keep: Callable[[str], bool]) -> int:
        """Take out of the lines the ids that ``keep`` says are no longer pending, so that
        the counts per priority say what waits (dispatch would skip them anyway); one pass
        over the lines, made by a rescan after some left. Returns how many were taken."""
        taken = 0
        for level, line in list(self.lines.items()):
            kept = [entry for entry in line if keep(entry[0])]
            if len(kept) != len(line):
                taken += len(line) - len(kept)
                line.clear()
                line.extend(kept)
                if not line and level != 0:
                    del self.lines[level]
        self.left = 0
        return taken

    def priority(self, job_id: str) -> int:
        """The priority of an open job: noted, or that of the listed run holding it."""
        level = self.prio.get(job_id) if self.prio else None
        if level is not None:
            return level
        line = self.backlog.level_of(job_id)
        return 0 if line is None else level_of_line(line)

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
        """Put a job back at the head of its line (a claim that did not happen): it goes
        before the listed ids of its level too (stamped no later than they were listed), so
        that the next take is the same job, not the next listed one."""
        line = self._line(job_id)
        level = self.prio.get(job_id, 0) if self.prio else 0
        at = self.clock()
        if line:
            at = min(at, line[0][1])
        where = self._bl(level)
        if self.backlog.has_listed(where):
            at = min(at, self.backlog.since(where))
        line.appendleft((job_id, at))

    def extend(self, ids: Iterable[str]) -> None:
        """Append several (known priorities)."""
        for job_id in ids:
            self.append(job_id)

    def add_listed(self, level: int, ids: list[str]) -> int:
        """Ids a listing found with priority ``level`` in their names (none of them known
        to the index yet): held compactly in the backlog; return how many."""
        return self.add_runs(level, IdRun.runs_of(ids, self.clock()))

    def add_runs(self, level: Line, runs: Iterable[IdRun]) -> int:
        """Runs a listing made (sorted off the loop), as :meth:`add_listed`."""
        level = level_of_line(level)
        self.listed_levels.add(level)
        return self.backlog.add_runs(self._bl(level), runs)

    # -- taking ----------------------------------------------------------------------------

    def _listed(self) -> set[int]:
        """The priorities that have listed ids left (forgetting those that have none)."""
        backlog = self.backlog
        found = {level for level in self.listed_levels if backlog.has_listed(self._bl(level))}
        if len(found) != len(self.listed_levels):
            self.listed_levels = found
        return found

    def _head_time(self, level: int) -> float:
        line = self.lines.get(level)
        loose = line[0][1] if line else None
        where = self._bl(level)
        if self.backlog.has_listed(where):
            listed = self.backlog.since(where)
            return listed if loose is None or listed <= loose else loose
        assert loose is not None
        return loose

    def _take(self, level: int) -> str | None:
        """The next id of ``level``: the listed ones before those appended after them."""
        line = self.lines.get(level)
        backlog = self.backlog
        where = self._bl(level)
        if backlog.has_listed(where) and (not line or backlog.since(where) < line[0][1]):
            job_id = backlog.take(where)
            if job_id is not None:
                if level:
                    self.prio[job_id] = level
                return job_id
        if line:
            job_id = line.popleft()[0]
            if not line and level != 0:
                del self.lines[level]
            return job_id
        return None

    def _best(self) -> tuple[int, int] | None:
        """(the priority dispatch takes from next, the most urgent one), None when empty."""
        levels = {level for level, line in self.lines.items() if line}
        if self.listed_levels:
            levels |= self._listed()
        if not levels:
            return None
        aging = self.aging
        first_level = min(levels)
        best = first_level
        if aging > 0 and len(levels) > 1:
            now = self.clock()
            best = min(levels, key=lambda lv: (lv - (now - self._head_time(lv)) / aging, lv))
        return best, first_level

    def popleft(self) -> str:
        """Take the id to dispatch next (IndexError when no line has one)."""
        while True:
            if len(self.lines) == 1 and not self.listed_levels:
                return self._zero.popleft()[0]  # the usual case: one priority
            chosen = self._best()
            if chosen is None:
                raise IndexError("no ready job")
            best, first_level = chosen
            job_id = self._take(best)
            if job_id is None:
                continue  # only gone ids were left there
            if best != first_level:
                self.aged += 1
            return job_id

    def rank(self) -> tuple[float, float, str] | None:
        """Where the job :meth:`popleft` takes next stands among other keys' heads:
        smaller goes first (its aged priority, then since when it waits, then its id);
        None when these lines are empty. Aging compares heads the same way within lines:
        ``level - waited / aging`` orders as ``level * aging + since``."""
        if len(self.lines) == 1 and not self.listed_levels:  # the usual case: priority 0
            zero = self._zero
            if not zero:
                return None
            head, since = zero[0]
            return (since, 0.0, head) if self.aging > 0 else (0.0, since, head)
        chosen = self._best()
        if chosen is None:
            return None
        level = chosen[0]
        line = self.lines.get(level)
        where = self._bl(level)
        since = self._head_time(level)
        head = self.backlog.head(where) if self.backlog.has_listed(where) and (
            not line or self.backlog.since(where) < line[0][1]) else line[0][0] if line \
            else ""
        if self.aging > 0:
            return level * self.aging + since, float(level), head
        return float(level), since, head

    def loose_len(self) -> int:
        """Ids appended one by one and not taken yet (stale ones included)."""
        lines = self.lines
        return len(self._zero) if len(lines) == 1 else sum(len(line) for line in lines.values())

    def __len__(self) -> int:
        backlog = self.backlog
        if not self.key:
            return self.loose_len() + backlog.listed
        return self.loose_len() + sum(backlog.line_count(self._bl(level))
                                      for level in self.listed_levels)

    def __bool__(self) -> bool:
        return bool(self._zero) or (bool(self.listed_levels) and bool(self._listed())) or (
            len(self.lines) > 1 and any(line for line in self.lines.values()))

    def __iter__(self) -> Iterator[str]:
        """The ids in dispatch order as of now, priorities first (aging left out)."""
        backlog = self.backlog
        for level in sorted(set(self.lines) | self.listed_levels):
            yield from backlog.listed_ids(self._bl(level))
            for job_id, _ in self.lines.get(level, ()):
                yield job_id

    def levels(self) -> dict[int, int]:
        """Jobs waiting per priority."""
        found = {level: len(line) for level, line in self.lines.items() if line}
        for level in self.listed_levels:
            count = self.backlog.line_count(self._bl(level))
            if count:
                found[level] = found.get(level, 0) + count
        return dict(sorted(found.items()))
