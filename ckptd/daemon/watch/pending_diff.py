"""The rescan of a big ``pending/``: what the listing and the index disagree on, found on
compact runs off the loop.

A rescan of a queue with a few ids compares the listing with the index id by id, in the
loop. A queue of millions cannot: its listing is cut into sorted runs as at recovery
(:func:`~ckptd.daemon.engine.indexing.list_pending`), the ids the index held when the
rescan began are taken as a :class:`Snapshot` (the runs' keys are never changed in place,
so the thread may read them), and both sides are compared with sorted searches in numpy,
outside the interpreter's lock. Only the few ids they disagree on go back to the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ckptd.daemon.engine.index import QueueIndex
from ckptd.daemon.engine.indexing import list_pending
from ckptd.store.base import Store
from ckptd.store.packed_ids import IdRun

BIG = 100_000  # pending ids from which a queue's rescan is compared this way


@dataclass
class Snapshot:
    """The pending ids of one queue when its rescan began (the loop takes it)."""

    runs: list[tuple[IdRun, int]]  # listed runs, and where each was taken up to
    loose: list[str]
    claimed: list[str]

    @classmethod
    def of(cls, index: QueueIndex) -> Snapshot:
        backlog = index.pending
        runs = [(run, run.pos) for level in backlog.runs.values() for run in level]
        return cls(runs, list(backlog.loose), list(index.claimed))


@dataclass
class PendingDiff:
    """What a listing found that the index did not hold (with the priority its name
    carries), and what the index held that the listing did not find."""

    appeared: list[tuple[str, int]]
    vanished: list[str]
    listed: int


def compare(store: Store, queue: str, snapshot: Snapshot, since: float) -> PendingDiff:
    """List ``pending/`` of ``queue`` and compare it with ``snapshot`` (in a thread)."""
    listed = list_pending(store, queue, since)
    appeared: list[tuple[str, int]] = []
    vanished: list[str] = []
    on_disk_runs = [run for runs in listed.values() for run in runs]
    count = sum(len(run) for run in on_disk_runs)
    held = [run for run, _ in snapshot.runs] + IdRun.runs_of(
        snapshot.loose + snapshot.claimed, 0.0)
    for packed in (True, False):
        snapshot_left = []
        for run, pos in snapshot.runs:
            if run.packed == packed:
                left = IdRun(run.keys[pos:], run.low[pos:] if run.low is not None else None,
                             0.0, sort=False)
                snapshot_left.append(left)
        known = IdRun.joined(snapshot_left + [r for r in held[len(snapshot.runs):]],
                             packed)
        on_disk = IdRun.joined(on_disk_runs, packed)
        for level, runs in listed.items():
            for run in runs:
                if run.packed == packed:
                    for position in np.flatnonzero(~run.found_in(known)):
                        appeared.append((run.id_at(int(position)), level))
        for left in snapshot_left:
            for position in np.flatnonzero(~left.found_in(on_disk)):
                vanished.append(left.id_at(int(position)))
        for run in IdRun.runs_of(snapshot.loose, 0.0):
            if run.packed == packed:
                for position in np.flatnonzero(~run.found_in(on_disk)):
                    vanished.append(run.id_at(int(position)))
    return PendingDiff(appeared, vanished, count)
