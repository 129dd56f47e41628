"""The periodic listing of a local root (daemon/watch/scans.py) against jobs that arrive
while it runs: a listing never takes out of the index a job added after it began."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ckptd.core.config import FsyncMode, LiveSettings, Settings
from ckptd.core.ids import new_id
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.watch.scans import Scans
from ckptd.store.local.backend import LocalStore


def test_a_listing_that_ended_between_turns_drops_no_job_added_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in a full run: a listing ended after the turn had reconciled, and the same turn
    began the next one (a queue had appeared). Applied a turn later, the first listing
    (taken before the producer's jobs arrived) took them out of the index: they waited
    for the rescan after, a minute later, and ran after jobs submitted after them."""
    store = LocalStore(str(tmp_path / "root"), FsyncMode.NEVER)
    settings = Settings()
    engine = Engine(store, settings, rand=lambda: 0.5)
    scans = Scans(store, engine, None, None, LiveSettings(settings), wake=lambda: None,
                  clock=lambda: 0.0)
    try:
        store.ensure_queue("q")
        engine.index.queue("q")
        scans.start()  # lists an empty pending/
        assert scans._thread is not None
        scans._thread.join(10)
        ids = [new_id() for _ in range(3)]  # a producer writes, the watcher tells
        for job_id in ids:
            store.put_new("q", job_id, b'{"payload": 1}')
            engine.pending_appeared("q", job_id, 0, "")
        listing = threading.Event()
        real = store.pending_names

        def slow(queue: str) -> list[str]:
            listing.wait(10)  # the next listing takes its time
            return real(queue)
        monkeypatch.setattr(store, "pending_names", slow)
        scans._quiet_until = 0.0  # the pause after a listing (a multiple of its length) is over
        scans.start()  # the same turn, after its reconcile: the next listing begins
        scans.reconcile()  # the next turn, while it runs
        pending = engine.queues["q"].pending
        assert [job_id for job_id in ids if job_id not in pending] == [], "still indexed"
        listing.set()
        assert scans._thread is not None
        scans._thread.join(10)
        scans.reconcile()
        pending = engine.queues["q"].pending
        assert [job_id for job_id in ids if job_id not in pending] == [], "still indexed"
    finally:
        store.close()


def test_jobs_a_listing_finds_are_made_ready_in_the_order_of_their_ids(tmp_path: Path) -> None:
    """Files the watcher missed (an overflow), found by the rescan: they join the line in
    the order they were created, whatever order the folder lists them in (tmpfs: the newest
    first)."""
    store = LocalStore(str(tmp_path / "root"), FsyncMode.NEVER)
    engine = Engine(store, Settings(), rand=lambda: 0.5)
    try:
        index = engine.index.queue("q")
        ids = [new_id() for _ in range(20)]
        engine.reconcile_pending("q", {job_id: (0, "") for job_id in reversed(ids)})
        assert [index.ready.popleft() for _ in ids] == ids
    finally:
        store.close()
