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
from ckptd.store.packed_ids import IdRun, Keys, is_generated, pack, raw_keys

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


def _sorted_keys(parts: list[Keys], packed: bool) -> Keys:
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.empty(0, dtype="S18" if packed else "S1")
    return np.sort(np.concatenate(parts))


def _found(keys: Keys, among: Keys) -> np.ndarray:
    """For each of ``keys``: is it in the sorted ``among``?"""
    if not len(among) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    at = among.searchsorted(keys)
    inside = at < len(among)
    found = np.zeros(len(keys), dtype=bool)
    found[inside] = among[at[inside]] == keys[inside]
    return found


def _keys_of(ids: list[str], packed: bool) -> Keys:
    mine = [i for i in ids if is_generated(i) == packed]
    if packed:
        return np.array([pack(i) for i in mine], dtype="S18") if mine else \
            np.empty(0, dtype="S18")
    return raw_keys(mine) if mine else np.empty(0, dtype="S1")


def compare(store: Store, queue: str, snapshot: Snapshot, since: float) -> PendingDiff:
    """List ``pending/`` of ``queue`` and compare it with ``snapshot`` (in a thread)."""
    listed = list_pending(store, queue, since)
    appeared: list[tuple[str, int]] = []
    vanished: list[str] = []
    count = sum(len(run) for runs in listed.values() for run in runs)
    for packed in (True, False):
        known = _sorted_keys([run.keys[pos:] for run, pos in snapshot.runs
                              if run.packed == packed]
                             + [_keys_of(snapshot.loose + snapshot.claimed, packed)], packed)
        on_disk = _sorted_keys([run.keys for runs in listed.values() for run in runs
                                if run.packed == packed], packed)
        for level, runs in listed.items():
            for run in runs:
                if run.packed != packed:
                    continue
                for position in np.flatnonzero(~_found(run.keys, known)):
                    appeared.append((run.id_at(int(position)), level))
        for run, pos in snapshot.runs:
            if run.packed != packed:
                continue
            left = run.keys[pos:]
            for position in np.flatnonzero(~_found(left, on_disk)):
                vanished.append(run.id_at(pos + int(position)))
        loose = [i for i in snapshot.loose if is_generated(i) == packed]
        if loose:
            missing = ~_found(_keys_of(loose, packed), on_disk)
            vanished += [loose[int(p)] for p in np.flatnonzero(missing)]
    return PendingDiff(appeared, vanished, count)
