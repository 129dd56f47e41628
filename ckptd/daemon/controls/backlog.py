"""A queue's pending ids: the listed ones compact, the others one by one.

Recovery and the rescans list ``pending/`` in chunks; each chunk becomes sorted runs of
compact keys (:class:`ckptd.store.packed_ids.IdRun`) filed under the priority its files'
names carry. Ids that arrive one at a time (submits, retries, the watcher's events) are kept
in a plain set, ``loose``. :class:`Backlog` is the queue's set of pending ids over both: it
answers ``in``, ``add``, ``discard`` and ``len`` as the ``set`` it replaces did.

The ready lines (:mod:`ckptd.daemon.controls.priorities`) take listed ids from the head of
their level's runs (:meth:`Backlog.take`), oldest id first across the runs: a taken id
becomes a loose one (it stays pending until its claim). A listed id that leaves pending out
of order (cancelled, removed by hand, found elsewhere) is marked ``gone`` and skipped when
its turn comes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from ckptd.store.packed_ids import IdRun, is_generated, pack


class Backlog:
    """The pending ids of one queue (see the module docstring)."""

    __slots__ = ("loose", "runs", "gone", "gone_at", "listed", "_heads", "_bounds", "_seq")

    def __init__(self) -> None:
        self.loose: set[str] = set()
        self.runs: dict[int, list[IdRun]] = {}  # priority -> its listed runs
        self.gone: set[str] = set()  # listed ids still in a run that are no longer pending
        self.gone_at: dict[int, int] = {}  # how many of ``gone`` per priority
        self.listed = 0  # ids left in the runs, the gone ones included
        self._heads: dict[int, list[tuple[str, int, IdRun]]] = {}  # per priority: a heap
        # (smallest, largest) id ever listed, per kind (packed, raw): most ids asked about
        # (new submits) fall outside, and need no search.
        self._bounds: dict[bool, tuple[str, str]] = {}
        self._seq = 0

    # -- the set ---------------------------------------------------------------------------

    def level_of(self, job_id: str) -> int | None:
        """The priority of the run that holds ``job_id`` (gone or not), or None."""
        if not self.listed:
            return None
        packed = is_generated(job_id)
        bounds = self._bounds.get(packed)
        if bounds is None or not bounds[0] <= job_id <= bounds[1]:
            return None
        key = pack(job_id) if packed else None
        for level, runs in self.runs.items():
            for run in runs:
                if (run.find_key(*key) if key is not None else run.find(job_id)) >= 0:
                    return level
        return None

    def __contains__(self, job_id: object) -> bool:
        if job_id in self.loose:
            return True
        if not self.listed or not isinstance(job_id, str) or job_id in self.gone:
            return False
        return self.level_of(job_id) is not None

    def add(self, job_id: str) -> None:
        """``job_id`` is pending (a listed id that is still in its run stays there)."""
        if job_id in self.loose:
            return
        if self.listed:
            level = self.level_of(job_id)
            if level is not None:
                if job_id in self.gone:  # pending again: its place in the run is kept
                    self.gone.discard(job_id)
                    self.gone_at[level] -= 1
                return
        self.loose.add(job_id)

    def update(self, ids: Iterable[str]) -> None:
        """Add several."""
        for job_id in ids:
            self.add(job_id)

    def discard(self, job_id: str) -> None:
        """``job_id`` is no longer pending (claimed, cancelled, removed)."""
        if job_id in self.loose:
            self.loose.discard(job_id)
            return
        if self.listed and job_id not in self.gone:
            level = self.level_of(job_id)
            if level is not None:
                self.gone.add(job_id)
                self.gone_at[level] = self.gone_at.get(level, 0) + 1

    def __len__(self) -> int:
        return len(self.loose) + self.listed - len(self.gone)

    def __bool__(self) -> bool:
        return bool(self.loose) or self.listed > len(self.gone)

    def __iter__(self) -> Iterator[str]:
        """Every pending id (the loose ones first; listed ones in id order per priority)."""
        yield from list(self.loose)
        for level in sorted(self.runs):
            for job_id in self.listed_ids(level):
                if job_id not in self.gone:
                    yield job_id

    def clear(self) -> None:
        """Forget every id."""
        self.loose.clear()
        self.runs.clear()
        self.gone.clear()
        self.gone_at.clear()
        self._heads.clear()
        self._bounds.clear()
        self.listed = 0

    # -- the listed runs -------------------------------------------------------------------

    def add_runs(self, level: int, runs: Iterable[IdRun]) -> int:
        """File runs of listed ids under priority ``level``; return how many ids they add."""
        added = 0
        heads = self._heads.setdefault(level, [])
        mine = self.runs.setdefault(level, [])
        for run in runs:
            if not len(run):
                continue
            mine.append(run)
            added += len(run)
            first, last = run.head(), run.last()
            low, high = self._bounds.get(run.packed, (first, last))
            self._bounds[run.packed] = (min(low, first), max(high, last))
            self._seq += 1
            heapq.heappush(heads, (first, self._seq, run))
        self.listed += added
        return added

    def levels(self) -> dict[int, int]:
        """Listed ids left per priority (gone ones left out)."""
        found: dict[int, int] = {}
        for level, runs in self.runs.items():
            left = sum(len(run) for run in runs) - self.gone_at.get(level, 0)
            if left > 0:
                found[level] = left
        return found

    def has_listed(self, level: int) -> bool:
        """True when priority ``level`` has listed ids left (perhaps all gone)."""
        return bool(self._heads.get(level))

    def since(self, level: int) -> float:
        """When the head run of ``level`` was listed (aging counts from then)."""
        return self._heads[level][0][2].since

    def take(self, level: int) -> str | None:
        """Take the smallest listed id of ``level`` that is still pending; it becomes a
        loose id. None when the level has none left."""
        heads = self._heads.get(level)
        while heads:
            job_id, seq, run = heads[0]
            run.advance()
            self.listed -= 1
            if len(run):
                heapq.heapreplace(heads, (run.head(), seq, run))
            else:
                heapq.heappop(heads)
                self.runs[level].remove(run)
            if job_id in self.gone:
                self.gone.discard(job_id)
                self.gone_at[level] -= 1
                continue
            if not heads:
                self._drop_level(level)
            self.loose.add(job_id)
            return job_id
        self._drop_level(level)
        return None

    def _drop_level(self, level: int) -> None:
        if not self._heads.get(level):
            self._heads.pop(level, None)
            self.runs.pop(level, None)
            self.gone_at.pop(level, None)
            if not self._heads:
                self._bounds.clear()

    def listed_ids(self, level: int) -> Iterator[str]:
        """The listed ids left of ``level`` in id order (gone ones included)."""
        return heapq.merge(*self.runs.get(level, []))

    def nbytes(self) -> int:
        """Bytes the listed runs take."""
        return sum(run.nbytes for runs in self.runs.values() for run in runs)
