"""A queue's ready lines when its jobs have keys: lines per key, and which key goes next.

A job's key (a supplier, a customer; :mod:`ckptd.core.job_keys`) is known without reading
its file: the daemon noted it at the submit, or the file's name carries it
(``<id>,ksupplier-a.json``), so a listing files the ids of each key apart
(:mod:`ckptd.daemon.controls.backlog`, under ``(priority, key)``). :class:`KeyedReady` is
the queue's :class:`~ckptd.daemon.controls.priorities.ReadyLines` (its own lines hold the
jobs without a key) plus one ``ReadyLines`` per key that has ready jobs. Priorities and
aging order the jobs of one key as they order a queue.

Which key goes next:

- by default, the key whose next job comes first in the queue's own order (its aged
  priority, then how long it has waited, then its id): a heap of the keys' heads, so that
  the queue runs in the order it would without keys, skipping the keys held by their limits;
- with ``fair = true``, round-robin between the keys that have ready jobs, ``weight`` turns
  each per round: a customer with 50,000 jobs takes one turn in each round like a customer
  with 10.

A key held by its limits (:mod:`ckptd.daemon.controls.key_gate`: at its ``max_running``, or
out of rate tokens) is set aside ("parked") until one of its jobs ends, or until its next
token, instead of being looked at again at every claim: a take costs O(log keys) (O(1)
fair), however many keys wait. Memory: a key with ready jobs holds one ``ReadyLines``
(about 1.3 KB); a key with none holds nothing here.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from ckptd.daemon.controls.backlog import Backlog
from ckptd.daemon.controls.priorities import ReadyLines
from ckptd.store.file_names import Line
from ckptd.store.packed_ids import IdRun

UNTIL_ONE_ENDS = float("inf")
"""A key parked until one of its jobs ends (it is at its ``max_running``)."""

Rank = tuple[float, float, str]


class KeyRules(Protocol):
    """What a take asks of the keys' limits (the dispatcher hands it over)."""

    @property
    def fair(self) -> bool:
        """Round-robin between keys (else the queue's order)."""

    @property
    def generation(self) -> int:
        """Changes when any limit changes: parked keys are looked at again."""

    def blocked(self, key: str) -> float | None:
        """None when a job of ``key`` may be claimed now, else until when it may not."""

    def weight(self, key: str) -> int:
        """Turns of ``key`` per round (fair share)."""


class KeyedReady(ReadyLines):
    """A queue's due jobs, by key (see the module docstring)."""

    __slots__ = ("by_key", "keys", "_fair", "_heap", "_in_heap", "_ring", "_in_ring",
                 "_served", "_parked", "_park_heap", "_seq", "_keyed_loose", "_generation",
                 "_keyed_runs")

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 backlog: Backlog | None = None) -> None:
        super().__init__(clock, backlog)
        self.by_key: dict[str, ReadyLines] = {}  # the lines of each key with ready jobs
        self.keys: dict[str, str] = {}  # open job -> its key (jobs with a key)
        self._fair = False
        self._heap: list[tuple[Rank, int, str]] = []  # (rank of its head, seq, key)
        self._in_heap: dict[str, tuple[Rank, int]] = {}  # key -> its valid heap entry
        self._ring: deque[tuple[str, int]] = deque()  # (key, seq): fair share's round
        self._in_ring: dict[str, int] = {}  # key -> seq of its valid ring entry
        self._served = 0  # turns the key at the ring's head had in this round
        self._parked: dict[str, float] = {}  # key -> until when
        self._park_heap: list[tuple[float, str]] = []
        self._seq = 0
        self._keyed_loose = 0  # ids appended one by one to the keys' lines
        self._generation = -1
        self._keyed_runs = False  # listed ids of keys were filed in the backlog

    # -- keys of jobs ----------------------------------------------------------------------

    def note_key(self, job_id: str, key: str) -> None:
        """Record the key of an open job ("" for none; kept until the job ends)."""
        if key:
            self.keys[job_id] = key
        elif self.keys:
            self.keys.pop(job_id, None)

    def key_of(self, job_id: str) -> str:
        """The key of an open job: noted, or that of the listed run holding it."""
        if self.keys:
            key = self.keys.get(job_id)
            if key is not None:
                return key
        if self._keyed_runs and self.backlog.listed:
            line = self.backlog.level_of(job_id)
            if isinstance(line, tuple):
                return line[1]
        return ""

    def forget(self, job_id: str) -> None:
        """The job ended: forget its priority and key."""
        super().forget(job_id)
        if self.keys:
            self.keys.pop(job_id, None)

    def sweep(self, keep: Callable[[str], bool]) -> int:
        """As :meth:`ReadyLines.sweep`, over the lines of every key too."""
        taken = super().sweep(keep)
        keyed = 0
        for key, lines in list(self.by_key.items()):
            keyed += lines.sweep(keep)
            self._drop(key)
        if keyed:
            self._keyed_loose = max(0, self._keyed_loose - keyed)
            self._rebuild()
        return taken + keyed

    def set_aging(self, seconds: float) -> None:
        """Aging in force for every key's lines (the heads' ranks follow)."""
        if seconds != self.aging:
            self.aging = seconds
            for lines in self.by_key.values():
                lines.aging = seconds
            if self.by_key:
                self._rebuild()

    # -- adding ----------------------------------------------------------------------------

    def _lines_of(self, key: str) -> ReadyLines:
        lines = self.by_key.get(key)
        if lines is None:
            lines = self.by_key[key] = ReadyLines(self.clock, self.backlog, self.prio, key)
            lines.aging = self.aging
            if len(self.by_key) == 1:  # keyed from now on: the jobs without a key too
                self._rebuild()
        return lines

    def append(self, job_id: str) -> None:
        key = self.keys.get(job_id) if self.keys else None
        if not key:
            super().append(job_id)
            if self.by_key:
                self._activate("")
            return
        lines = self._lines_of(key)
        lines.append(job_id)
        self._keyed_loose += 1
        if (key in self._in_heap or key in self._in_ring) and len(lines.lines) == 1 \
                and not lines.listed_levels:
            return  # behind the head of its only line: the key's turn stays as it is
        self._activate(key)

    def appendleft(self, job_id: str) -> None:
        key = self.keys.get(job_id) if self.keys else None
        if not key:
            super().appendleft(job_id)
            if self.by_key:
                self._activate("")
            return
        self._lines_of(key).appendleft(job_id)
        self._keyed_loose += 1
        self._activate(key)

    def extend(self, ids: Iterable[str]) -> None:
        for job_id in ids:
            self.append(job_id)

    def add_runs(self, level: Line, runs: Iterable[IdRun]) -> int:
        if isinstance(level, int):
            added = super().add_runs(level, runs)
            if self.by_key:
                self._activate("")
            return added
        priority, key = level
        self._keyed_runs = True
        added = self._lines_of(key).add_runs(priority, runs)
        self._activate(key)
        return added

    # -- taking ----------------------------------------------------------------------------

    def popleft(self) -> str:
        """Take the next id in the queue's order, whatever its key (IndexError: none)."""
        job_id = self.take(self.clock(), None)
        if job_id is None:
            raise IndexError("no ready job")
        return job_id

    def take(self, now: float, rules: KeyRules | None) -> str | None:
        """The id to claim next, of a key that ``rules`` allow now; None when there is none
        (every ready job's key waits for its limits, or nothing is ready)."""
        if not self.by_key:
            try:
                return super().popleft()  # no job with a key is ready: the usual lines
            except IndexError:
                return None
        fair = rules.fair if rules is not None else False
        if rules is not None and rules.generation != self._generation:
            self._generation = rules.generation
            self._unpark_all()
        if fair != self._fair:
            self._fair = fair
            self._rebuild()
        if self._park_heap:
            self._unpark_due(now)
        blocked = rules.blocked if rules is not None else None
        if fair:
            assert rules is not None
            return self._take_fair(blocked, rules.weight)
        return self._take_ordered(blocked)

    def _take_ordered(self, blocked: Callable[[str], float | None] | None) -> str | None:
        heap = self._heap
        while heap:
            rank, seq, key = heap[0]
            entry = self._in_heap.get(key)
            if entry is None or entry[1] != seq:
                heapq.heappop(heap)  # stale
                continue
            heapq.heappop(heap)
            del self._in_heap[key]
            until = blocked(key) if key and blocked is not None else None
            if until is not None:
                self._park(key, until)
                continue
            job_id = self._pop(key)
            self._activate(key)  # its next head, if it has one
            if key not in self._in_heap:
                self._drop(key)
            if job_id is not None:
                return job_id
        return None

    def _take_fair(self, blocked: Callable[[str], float | None] | None,
                   weight: Callable[[str], int]) -> str | None:
        ring = self._ring
        while ring:
            key, seq = ring[0]
            if self._in_ring.get(key) != seq:
                ring.popleft()  # stale
                continue
            until = blocked(key) if key and blocked is not None else None
            job_id = self._pop(key) if until is None else None
            if job_id is None:  # held by its limits, or empty: out of the round
                if ring and ring[0] == (key, seq):  # (the pop of the last key's last
                    ring.popleft()                  # lines clears every turn)
                self._in_ring.pop(key, None)
                self._served = 0
                if until is not None:
                    self._park(key, until)
                else:
                    self._drop(key)
                continue
            self._served += 1
            if self._served >= (weight(key) if key else 1) or not self._has(key):
                ring.rotate(-1)
                self._served = 0
            return job_id
        return None

    def _pop(self, key: str) -> str | None:
        """Take the next id of ``key``'s lines (None when they hold only gone ids)."""
        if not key:
            try:
                return super().popleft()
            except IndexError:
                return None
        lines = self.by_key.get(key)
        if lines is None:
            return None
        loose, aged = lines.loose_len(), lines.aged
        try:
            job_id: str | None = lines.popleft()
        except IndexError:
            job_id = None
        self._keyed_loose -= loose - lines.loose_len()
        self.aged += lines.aged - aged
        if job_id is not None:
            self.keys[job_id] = key  # a listed id: its key is noted as it leaves its run
        elif not lines:
            self._drop(key)
        return job_id

    def _has(self, key: str) -> bool:
        if not key:
            return ReadyLines.__bool__(self)
        lines = self.by_key.get(key)
        return lines is not None and bool(lines)

    def _drop(self, key: str) -> None:
        """Forget the lines of a key that has no ready job left (keyed no more once none
        has: the usual lines again)."""
        if key and key in self.by_key and not self.by_key[key]:
            lines = self.by_key.pop(key)
            self._keyed_loose -= lines.loose_len()  # stale ids left in them
            if not self.by_key:
                self._clear_turns()

    # -- whose turn ------------------------------------------------------------------------

    def _activate(self, key: str) -> None:
        """``key`` has ready jobs (perhaps a new head): give it its place in the turns."""
        if key in self._parked or not self.by_key:
            return
        if self._fair:
            if key not in self._in_ring and self._has(key):
                self._seq += 1
                self._in_ring[key] = self._seq
                self._ring.append((key, self._seq))
            return
        lines = self if not key else self.by_key.get(key)
        rank = ReadyLines.rank(lines) if lines is not None else None
        if rank is None:  # nothing ready (the take that emptied it drops its lines)
            self._in_heap.pop(key, None)
            return
        entry = self._in_heap.get(key)
        if entry is not None and entry[0] <= rank:
            return  # its place holds (a job appended behind its head)
        self._seq += 1
        self._in_heap[key] = (rank, self._seq)
        heapq.heappush(self._heap, (rank, self._seq, key))

    def _park(self, key: str, until: float) -> None:
        self._parked[key] = until
        if until != UNTIL_ONE_ENDS:
            heapq.heappush(self._park_heap, (until, key))

    def unpark(self, key: str) -> None:
        """One of ``key``'s jobs ended: if it waited for that, its turns come back."""
        if self._parked and self._parked.get(key) == UNTIL_ONE_ENDS:
            del self._parked[key]
            self._activate(key)

    def _unpark_due(self, now: float) -> None:
        heap = self._park_heap
        while heap and heap[0][0] <= now:
            until, key = heapq.heappop(heap)
            if self._parked.get(key) == until:
                del self._parked[key]
                self._activate(key)

    def _unpark_all(self) -> None:
        self._parked.clear()
        self._park_heap.clear()
        self._rebuild()

    def next_unpark(self) -> float | None:
        """When the next key parked on its rate may be looked at again (None: none is)."""
        heap = self._park_heap
        while heap and self._parked.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _clear_turns(self) -> None:
        self._heap.clear()
        self._in_heap.clear()
        self._ring.clear()
        self._in_ring.clear()
        self._served = 0

    def _rebuild(self) -> None:
        """Every key's place in the turns afresh (the mode or the aging changed)."""
        self._clear_turns()
        for key in ["", *self.by_key]:
            self._activate(key)

    # -- looking ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.loose_len() + self._keyed_loose + self.backlog.listed

    def __bool__(self) -> bool:
        return bool(self._zero) or self._keyed_loose > 0 or self.backlog.listed > 0 or (
            len(self.lines) > 1 and any(line for line in self.lines.values()))

    def __iter__(self) -> Iterator[str]:
        """The ids of the jobs without a key, then each key's in turn (by key)."""
        yield from ReadyLines.__iter__(self)
        for key in sorted(self.by_key):
            yield from self.by_key[key]

    def levels(self) -> dict[int, int]:
        found = ReadyLines.levels(self)
        for lines in self.by_key.values():
            for level, count in lines.levels().items():
                found[level] = found.get(level, 0) + count
        return dict(sorted(found.items()))

    def ready_by_key(self) -> dict[str, int]:
        """Ready jobs of each key that has some (stale ids included)."""
        return {key: len(lines) for key, lines in self.by_key.items()}

    def parked(self) -> dict[str, float]:
        """The keys held by their limits, until when (inf: until one of their jobs ends)."""
        return dict(self._parked)
