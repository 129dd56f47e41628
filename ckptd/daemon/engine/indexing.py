"""Rebuilding a queue's index from listings that arrive in chunks, while the loop serves.

Recovery no longer reads a whole store before the loop starts: the queue's ``claimed/`` is
listed at once (its jobs get leases), then ``pending/`` arrives in sorted runs of compact ids
(:class:`~ckptd.store.packed_ids.IdRun`) filed under the priority (and key) their names carry, and
dispatch takes from them as soon as the first run is in. ``done/`` and ``failed/`` come last:
their counts, the batches' ended jobs, the newest failures, and the jobs a crash left both
pending and ended. Until those are in, a claim first looks whether its job is also in
``done/`` or ``failed/`` (a leftover that must not run again).

The listing itself runs in a thread (:mod:`ckptd.daemon.engine.lister` for a local root, the
bucket role for a bucket); everything here runs in the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ckptd.core.queue_controls import unique_of
from ckptd.core.states import State
from ckptd.daemon.engine.flows import Flows
from ckptd.daemon.engine.graph_events import GraphEvents
from ckptd.daemon.engine.index import Index, QueueIndex
from ckptd.daemon.telemetry.metrics import RECENT_FAILURES
from ckptd.store import recovery
from ckptd.store.base import Store
from ckptd.store.file_names import Line, ids_by_priority
from ckptd.store.packed_ids import IdRun, Ints, pack_names, raw_keys, split_ids

log = logging.getLogger(__name__)

ENDED = (State.DONE, State.FAILED)


@dataclass
class ListedPending:
    """Runs of pending ids a listing found, with the priority (and key) their names carry;
    ``release``: the queue may dispatch from now on (see :data:`ORDER_IDS`)."""

    queue: str
    level: Line
    runs: list[IdRun]
    release: bool = False


@dataclass
class ListedEnded:
    """What the listing of ``done/`` and ``failed/`` found (the queue's last folders)."""

    queue: str
    counts: dict[State, int]
    batch_ids: dict[State, list[str]]  # ended jobs whose ids say their batch
    newest_failed: list[str]
    twice: dict[str, list[State]] = field(default_factory=dict)  # also pending: resolve
    findings: list[recovery.Finding] = field(default_factory=list)
    runs: dict[State, list[IdRun]] = field(default_factory=dict)  # every id listed


# A recovering queue dispatches once its pending/ is listed, or once this many ids or
# seconds of it are: below that its first job is the most urgent and oldest of all; past
# it, dispatch begins with what is listed so far (a directory lists in its own order), and
# the order is exact again once the listing ends.
ORDER_IDS = 1_000_000
ORDER_WAIT = 10.0
RUN_FIRST = 16_384  # ids in the first run of a listing: dispatch begins after so many
RUN_MOST = 1 << 20  # ids in a run at most: the runs grow to this, fewer runs to merge
CHUNK = 65_536  # names read from the store at a time


class RunCutter:
    """Cuts a listing's ids into sorted runs, per priority (and key): a small first run (so
    that dispatch begins early), then runs that double up to :data:`RUN_MOST` (so that few
    runs are merged at each take). Keys are held packed while a run fills up. The ids of a
    key are cut apart from the others' (a key with few jobs gets one run at the end)."""

    def __init__(self, since: float) -> None:
        self.since = since
        self._packed: dict[Line, list[tuple[Ints, Ints]]] = {}
        self._raw: dict[Line, list[str]] = {}
        self._size: dict[Line, int] = {}
        self._target: dict[Line, int] = {}
        self._first = True  # until the first cut: then every line is cut (dispatch begins)

    def add(self, names: list[str]) -> dict[Line, list[IdRun]]:
        """Take a chunk of file names; return the runs that filled up, per line."""
        full: dict[Line, list[IdRun]] = {}
        plain, rest = pack_names(names)  # the usual names, in one pass of numpy
        found = ids_by_priority(rest) if rest else {}
        if len(plain[0]):
            found.setdefault(0, [])
        for level, ids in found.items():
            packed, others = split_ids(ids)
            mine = self._packed.setdefault(level, [])
            if level == 0 and len(plain[0]):
                mine.append(plain)
            mine.append(packed)
            self._raw.setdefault(level, []).extend(others)
            self._size[level] = self._size.get(level, 0) + len(others) + len(packed[0]) + (
                len(plain[0]) if level == 0 else 0)
            target = self._target.setdefault(level, RUN_FIRST)
            if self._size[level] >= target:
                full[level] = self._cut(level)
                self._target[level] = min(RUN_MOST, 2 * target)
                self._first = False
        if self._first and sum(self._size.values()) >= RUN_FIRST:
            # Many keys, none with a full run yet: cut them all once, so that dispatch begins.
            self._first = False
            for level in list(self._size):
                if self._size[level]:
                    full[level] = self._cut(level)
        return full

    def rest(self) -> dict[Line, list[IdRun]]:
        """The runs of what is left, per line."""
        return {level: runs for level in list(self._size) if (runs := self._cut(level))}

    def _cut(self, level: Line) -> list[IdRun]:
        runs = []
        packed = self._packed.pop(level, [])
        if packed and sum(len(high) for high, _ in packed):
            runs.append(IdRun(np.concatenate([high for high, _ in packed]),
                              np.concatenate([low for _, low in packed]), self.since))
        raw = self._raw.pop(level, [])
        if raw:
            runs.append(IdRun(raw_keys(raw), None, self.since))
        self._size[level] = 0
        return runs


def list_pending(store: Store, queue: str, since: float) -> dict[Line, list[IdRun]]:
    """Every pending id of ``queue`` in runs per priority and key (all at once: the
    engine's own recovery; the daemon hands them over as they fill up)."""
    cutter = RunCutter(since)
    found: dict[Line, list[IdRun]] = {}
    for names in store.listing_chunks(queue, State.PENDING, CHUNK):
        for level, runs in cutter.add(names).items():
            found.setdefault(level, []).extend(runs)
    for level, runs in cutter.rest().items():
        found.setdefault(level, []).extend(runs)
    return found


def list_ended(store: Store, queue: str, pending_runs: list[IdRun],
               claimed: list[str] | None = None) -> ListedEnded:
    """List ``done/`` and ``failed/`` of ``queue``: counts, batches' jobs, the newest
    failures, and the ids also in ``pending_runs`` or ``claimed``."""
    counts: dict[State, int] = {}
    batch_ids: dict[State, list[str]] = {}
    runs: dict[State, list[IdRun]] = {}
    for state in ENDED:
        counts[state] = 0
        mine = batch_ids[state] = []
        cutter = RunCutter(0.0)
        kept = runs[state] = []
        for names in store.listing_chunks(queue, state, CHUNK):
            for level_runs in cutter.add(names).values():
                kept.extend(level_runs)
        for level_runs in cutter.rest().values():
            kept.extend(level_runs)
        for run in kept:
            counts[state] += len(run)
            if not run.packed:  # a batch's job, or one a job of a batch spawned
                mine.extend(i for i in run if "." in i)
    newest = sorted(i for run in runs[State.FAILED]
                    for i in _tail(run, RECENT_FAILURES))[-RECENT_FAILURES:]
    # The pending ids left now (not those dispatched meanwhile, now done), and the claimed.
    left = [IdRun(r.keys[r.pos:], r.low[r.pos:] if r.low is not None else None, 0.0,
                  sort=False) for r in pending_runs]
    open_runs = left + IdRun.runs_of(claimed or [], 0.0)
    return ListedEnded(queue, counts, batch_ids, newest, ended_twice(open_runs, runs),
                       runs=runs)


def _tail(run: IdRun, count: int) -> list[str]:
    return [run.id_at(p) for p in range(max(run.pos, len(run.keys) - count), len(run.keys))]


class Indexing:
    """The engine's side of a recovery in chunks (see the module docstring)."""

    def __init__(self, index: Index, flows: Flows, graph: GraphEvents, *,
                 adopt: Callable[[QueueIndex, str, float, float], None],
                 resync: Callable[[str, str, float], None],
                 seen: Callable[[str, str], None]) -> None:
        self.ix = index
        self.flows = flows
        self.graph = graph  # waiting jobs and batches (daemon/engine/graph_events.py)
        self.adopt = adopt  # (index, id, now, lease) give a claimed job a lease
        self.resync = resync
        self.seen = seen  # a pending or claimed id is known (dedup of unique queues)

    def begin(self, name: str, claimed: list[str], now: float, grace: float,
              recovery: int = 0) -> QueueIndex:
        """Start the queue's index afresh: its claimed jobs get a lease of ``grace``; its
        pending ids follow (from the listing numbered ``recovery``)."""
        ix = self.ix
        ix.queues.pop(name, None)
        index = ix.queue(name)
        index.recovery = recovery
        index.recovering = {"pending": 0, "done": 0, "failed": 0}
        index.ending = {}
        index.holding = True  # until the listing of pending/ releases it
        index.checkpointed = set(ix.store.checkpoint_ids(name))
        for job_id in claimed:
            self.seen(name, job_id)
            self.adopt(index, job_id, now, grace)
        self.graph.begin(name, now)
        return index

    def pending(self, listed: ListedPending, now: float) -> int:
        """File runs of pending ids in the index; return how many ids they add.

        Ids the index knows already (claimed, or pending since an event or a submit) are
        left out of the runs: a claimed one is a copy a crash left in two folders, resolved
        by the two-state rule.
        """
        index = self.ix.queues.get(listed.queue)
        if index is None or index.recovering is None:
            return 0  # dropped meanwhile (another daemon leads it now)
        if listed.release:
            index.holding = False
        known = [*index.claimed, *index.pending.loose]
        runs = [run.without(known) for run in listed.runs]
        self.graph.listed_pending(listed.queue, runs)
        added = index.ready.add_runs(listed.level, [r for r in runs if len(r)])
        index.recovering["pending"] += added
        for job_id in list(index.claimed):  # a resync may end the lease: a copy
            if any(job_id in run for run in listed.runs):
                self.resync(listed.queue, job_id, now)  # in claimed/ and in pending/
        if unique_of(self.ix.settings, listed.queue) is not None:
            for run in runs:
                for job_id in run:
                    self.seen(listed.queue, job_id)
        return added

    def ended(self, listed: ListedEnded, now: float) -> None:
        """The queue's done/ and failed/ are listed: its recovery is over."""
        ix = self.ix
        index = ix.queues.get(listed.queue)
        if index is None or index.recovering is None:
            return
        index.done, index.failed = ended_counts(index, listed)
        index.metrics.base_succeeded, index.metrics.base_failed = index.done, index.failed
        index.metrics.seed_failures(ix.store, listed.queue, listed.newest_failed)
        self.flows.recover(listed.queue, {State.PENDING: [], State.CLAIMED: [],
                                          **listed.batch_ids}, now)
        for job_id in listed.twice:
            if job_id in index.claimed or job_id in index.pending:  # still open here
                self.resync(listed.queue, job_id, now)
        self.graph.listed_ended(listed.queue, now)
        index.holding = False
        for finding in listed.findings:
            log.warning("recovery: %s", finding.line())
        index.recovering = None

    def progress(self) -> dict[str, dict[str, int]]:
        """The queues still being listed, with what each has so far."""
        return {name: dict(index.recovering) for name, index in self.ix.queues.items()
                if index.recovering is not None}


def ended_counts(index: QueueIndex, listed: ListedEnded) -> tuple[int, int]:
    """The queue's done and failed jobs once its ended folders are listed: the listing's
    counts, and the moves the loop made since the recovery began (all counted in the index)
    that the listing did not see. A move the listing saw whose callback is still to come is
    noted in ``index.counted``: its callback does not count it again."""
    seen = {State.DONE: 0, State.FAILED: 0}
    for job_id, (state, made) in (index.ending or {}).items():
        if any(job_id in run for run in listed.runs.get(state, ())):
            if made:
                seen[state] += 1
            else:
                index.counted.add(job_id)
    index.ending = None
    listed.runs = {}  # every ended id of the queue: not kept past this
    return (listed.counts[State.DONE] + max(0, index.done - seen[State.DONE]),
            listed.counts[State.FAILED] + max(0, index.failed - seen[State.FAILED]))


def ended_twice(pending_runs: list[IdRun], ended: dict[State, list[IdRun]]
                ) -> dict[str, list[State]]:
    """The ids of ``pending_runs`` (as listed, taken or not) also found in the ``ended``
    runs: copies a crash left in two folders."""
    twice: dict[str, list[State]] = {}
    for run in pending_runs:
        for state, runs in ended.items():
            for other in runs:
                for position in np.flatnonzero(run.found_in(other)):
                    twice.setdefault(run.id_at(int(position)), [State.PENDING]).append(state)
    return twice
