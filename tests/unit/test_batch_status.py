"""A batch's status (daemon/engine/batch_ends.py) while its callback is being written: the
callback counts as open until it exists, so whoever waits for ``open`` to reach 0 finds it.

Seen in a fresh clone's ``make demo``: status said the batch had no open job, the demo asked
for its reduce job at once, and the daemon answered "no job": with ``fsync = batch`` the
reduce job is on the disk one flush after the batch's last job ended.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ckptd.core import batches
from ckptd.core.config import FsyncMode, LiveSettings, Settings
from ckptd.core.errors import JobNotFound
from ckptd.core.states import State
from ckptd.daemon.engine.batch_ends import BatchTracker
from ckptd.store.base import Outcome, PutManifest
from ckptd.store.local.backend import LocalStore


class HeldTxn:
    """A transaction whose writes wait until :meth:`flush` (a flush that has not come)."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.ops: list[tuple[Any, Callable[[Outcome], None] | None]] = []

    def add(self, op: Any, done: Callable[[Outcome], None] | None = None) -> None:
        self.ops.append((op, done))

    def flush(self) -> None:
        while self.ops:
            op, done = self.ops.pop(0)
            outcome = self.store.apply([op])[0]
            if done is not None:
                done(outcome)


def _tracker(tmp_path: Path) -> tuple[LocalStore, HeldTxn, BatchTracker]:
    store = LocalStore(str(tmp_path / "root"), FsyncMode.NEVER)
    store.ensure_queue("price")
    store.ensure_queue("pricelist")
    txn = HeldTxn(store)
    tracker = BatchTracker(store, LiveSettings(Settings()), lambda: txn, lambda queue: True)
    return store, txn, tracker


def test_the_reduce_counts_open_until_it_is_written(tmp_path: Path) -> None:
    store, txn, tracker = _tracker(tmp_path)
    try:
        name = "b1"
        manifest = batches.Manifest(name, "price", 2, "2026-12-06T00:00:00Z", then="pricelist")
        store.apply([_put_manifest(manifest)])
        tracker.load("price", 0.0)
        for seq in range(2):
            tracker.joined("price", batches.job_id(name, seq))
        assert tracker.status("price", 1.0)[name]["open"] == 2

        tracker.ended("price", batches.job_id(name, 0), "done", 1.0)
        tracker.ended("price", batches.job_id(name, 1), "done", 2.0)
        reduce_id = batches.reduce_id(name)
        with pytest.raises(JobNotFound):
            store.read("pricelist", State.PENDING, reduce_id)  # not before its flush
        assert tracker.status("price", 2.0)[name]["open"] == 1, \
            "status says the batch ended while its reduce job cannot be found"

        txn.flush()
        store.read("pricelist", State.PENDING, reduce_id)  # it exists now
        view = tracker.status("price", 3.0)[name]
        assert view["open"] == 0
        assert view["reduced"] is not None
    finally:
        store.close()


def test_a_callback_not_due_is_not_counted(tmp_path: Path) -> None:
    """``on_failure`` of a batch whose jobs all succeeded is never made: nothing is open."""
    store, txn, tracker = _tracker(tmp_path)
    try:
        name = "b2"
        manifest = batches.Manifest(name, "price", 0, "2026-12-06T00:00:00Z", sealed=True,
                                    callbacks={"on_failure": "pricelist"})
        store.apply([_put_manifest(manifest)])
        tracker.load("price", 0.0)
        job = f"{name}.a"
        tracker.joined("price", job)
        tracker.ended("price", job, "done", 1.0)
        assert tracker.status("price", 1.0)[name]["open"] == 0
        assert txn.ops == []
    finally:
        store.close()


def _put_manifest(manifest: batches.Manifest) -> PutManifest:
    return PutManifest(manifest.queue, manifest.batch, manifest.encode())
