"""Keeping the index in line with the folders: watch events and periodic listings.

On a local store the watcher (inotify) reports files that appear in or vanish from
``pending/`` and new queues; a listing every ``rescan_interval`` catches what it missed. On
a bucket the listing runs every ``poll_interval`` and the bucket role reconciles it. A
listing runs in a thread of its own; the loop reconciles its result when it is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from ckptd.core.config import LiveSettings
from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.daemon.cluster.bucket_role import BucketRole, BucketScan
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.index import QueueIndex
from ckptd.daemon.engine.lister import Indexer
from ckptd.daemon.watch.pending_diff import BIG, PendingDiff, Snapshot, compare
from ckptd.daemon.watch.watcher import Watcher
from ckptd.store import recovery
from ckptd.store.base import JOB_SUFFIX, Store
from ckptd.store.file_names import job_names, split_pending_name

log = logging.getLogger(__name__)

NEW_QUEUE_WATCH_TIMEOUT = 5.0
# A periodic listing waits this many times as long as the last one took: listing ten
# million files costs seconds of a core, and the watcher reports changes meanwhile.
QUIET_FACTOR = 10.0


class LocalListing(TypedDict):
    """One queue in a listing of a local root: its done and failed counts, and its pending
    files (or, for a big queue, how they differ from the index)."""

    done: int
    failed: int
    pending: NotRequired[dict[str, tuple[int, str]]]  # id -> (priority, key)
    diff: NotRequired[PendingDiff]


@dataclass
class LocalScan:
    """A listing of a local root (made in the rescan thread, applied in the loop)."""

    queues: dict[str, LocalListing]
    marks: dict[str, tuple[int, int]]  # queue -> (done, failed) of the index when it began
    controls: dict[str, dict[str, bytes]]  # queue -> its control files
    started: float


class Scans:
    """Watch events and listings for one daemon."""

    def __init__(self, store: Store, engine: Engine, role: BucketRole | None,
                 watcher: Watcher | None, live: LiveSettings, *, wake: Callable[[], None],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.live = live
        self.engine = engine
        self.role = role
        self.watcher = watcher
        self.wake = wake
        self.clock = clock
        self.new_queues: dict[str, float] = {}  # queue -> until when to try watching it
        self.rescan_now = False  # the watcher lost events, or a queue appeared
        self.in_flight: Callable[[], bool] = lambda: False  # a group's moves not yet counted
        self._results: deque[BucketScan | LocalScan] = deque()
        self._thread: threading.Thread | None = None
        self.indexer: Indexer | None = None  # the recovery of a local root, in a thread
        self.overflowed = False  # the watcher lost events: list at once, however long
        self._quiet_until = 0.0  # no periodic listing before (a long one costs its share)
        self._quiet_after_recovery = False

    def recover(self, queues: list[str], now: float) -> None:
        """Recover the index of a local root: list in a thread, serve meanwhile (a small
        store is recovered before this returns)."""
        self.indexer = Indexer(self.engine, self.live, wake=self.wake)
        self.indexer.start(queues, now)
        self.indexer.wait()
        while self.indexer.apply(now):
            pass
        self.engine.scheduler.start(now)  # what the schedules missed while no daemon ran

    def recovery_view(self) -> Mapping[str, object]:
        """What ``status`` shows of the recovery (see :meth:`Indexer.view`)."""
        return self.indexer.view() if self.indexer is not None else {"running": False}
        self._failing: str | None = None  # the last listing's error, said once

    def close(self) -> None:
        """Wait for a listing in progress. Idempotent."""
        if self.indexer is not None:
            self.indexer.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def clear(self) -> None:
        """Drop results not yet reconciled (the daemon stopped leading)."""
        self._results.clear()

    # -- listings --------------------------------------------------------------------------

    def start(self) -> None:
        """List the store in a thread, unless a listing (or the recovery) is running."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._results:
            # A listing ended since this turn reconciled: apply it before the next one
            # begins. The next one forgets which ids were added since the last began, and the
            # old listing applied after that would drop every job added since it was taken.
            self.reconcile()
        indexer = self.indexer
        if indexer is not None and indexer.running:
            return
        if indexer is not None and indexer.started is not None and indexer.ended is not None \
                and not self._quiet_after_recovery:
            # The recovery listed everything just now: a periodic listing waits as after one.
            self._quiet_after_recovery = True
            self._quiet_until = max(self._quiet_until, indexer.ended + QUIET_FACTOR * (
                indexer.ended - indexer.started))
        if self.role is None and time.monotonic() < self._quiet_until and not self.overflowed:
            return  # the last listing was long: wait a multiple of it (watch events go on)
        self.overflowed = False
        marks = {name: (index.done, index.failed) for name, index in self.engine.queues.items()}
        big: dict[str, tuple[Snapshot, float]] = {}
        for name, index in self.engine.queues.items():
            index.added_since_scan.clear()
            if self.role is None and len(index.pending) >= BIG:
                big[name] = (Snapshot.of(index), index.ready.clock())
        self._thread = threading.Thread(target=self._scan, args=(marks, big),
                                        name="ckptd-rescan", daemon=True)
        self._thread.start()

    def _scan(self, marks: dict[str, tuple[int, int]],
              big: dict[str, tuple[Snapshot, float]] | None = None) -> None:
        began = time.monotonic()
        try:
            if self.role is not None:  # buckets: paged, incremental, resolves leftovers
                self._results.append(self.role.scan(marks))
                self.wake()
                return
            result: dict[str, LocalListing] = {}
            now = time.time()
            controls = self.store.queue_controls()  # the queues, and their paused/limits
            for queue in controls:
                if not self.engine.index.leads(queue):
                    continue  # another daemon of this root leads it
                result[queue] = {
                    "done": self.store.count(queue, State.DONE),
                    "failed": self.store.count(queue, State.FAILED),
                }
                if big and queue in big:  # compared on compact runs, off the loop
                    result[queue]["diff"] = compare(self.store, queue, *big[queue])
                else:
                    result[queue]["pending"] = {
                        job_id: (priority, key) for job_id, priority, key in job_names(
                            self.store.pending_names(queue), State.PENDING)}
                # What killed writers left in tmp/ goes now, not only at the next start.
                for finding in recovery.clean_leftovers(self.store, queue, now,
                                                        self.live.current.tmp_max_age,
                                                        repair=True):
                    log.info("rescan: %s", finding.line())
            self._results.append(LocalScan(result, marks, controls, now))
            took = time.monotonic() - began
            self._quiet_until = time.monotonic() + QUIET_FACTOR * took
            self._failing = None
        except CkptdError as exc:
            # Said once per outage (the store guard says when it is back), not every listing.
            (log.debug if str(exc) == self._failing else log.warning)(
                "rescan of %s failed: %s", self.store.url, exc)
            self._failing = str(exc)
            if self.role is not None:
                self.role.health.failed(exc, self.clock())
        self.wake()

    def reconcile(self) -> None:
        """Bring the index in line with the listings that finished (and file what the
        recovery found so far)."""
        if self.indexer is not None and self.indexer.running:
            self.indexer.apply(self.clock())
        while self._results:
            scan = self._results.popleft()
            if isinstance(scan, BucketScan):
                if self.role is not None:
                    self.role.reconcile(scan, self.clock())
                continue
            for queue, listed in scan.queues.items():
                index = self.engine.index.queue(queue)
                if "diff" in listed:
                    self._apply_diff(queue, index, listed["diff"])
                else:
                    self.engine.reconcile_pending(queue, listed["pending"])
                index.take_listed_counts(scan.marks.get(queue, (0, 0)), listed["done"],
                                         listed["failed"], self.in_flight())
                if self.watcher is not None:
                    self.watcher.watch_queue(queue)
            # In case an event was missed (a queue changed since the listing began is not).
            self.engine.controls.load_all(scan.controls, scan.started)

    def _apply_diff(self, queue: str, index: QueueIndex, diff: PendingDiff) -> None:
        """A big queue's rescan: index what the watcher missed, drop what vanished."""
        engine = self.engine
        appeared = gone = 0
        for job_id, line in diff.appeared:
            if job_id not in index.pending and job_id not in index.claimed:
                priority, key = (line, "") if isinstance(line, int) else line
                engine.pending_appeared(queue, job_id, priority, key)
                appeared += 1
        for job_id in diff.vanished:  # most were claimed since the listing began
            if job_id not in index.claimed and job_id not in index.added_since_scan \
                    and job_id in index.pending:
                index.pending.discard(job_id)
                index.delayed_at.pop(job_id, None)
                gone += 1
        if appeared or gone:
            log.warning("rescan of %s: %d pending file(s) the index did not hold, %d it held "
                        "that are gone", queue, appeared, gone)
        index.added_since_scan.clear()

    # -- the watcher -----------------------------------------------------------------------

    def read_events(self, now: float) -> None:
        """Apply what the watcher saw; watch the queues that appeared."""
        if self.watcher is None:
            return
        engine = self.engine
        for kind, queue, job_id in self.watcher.drain():
            if queue and not engine.index.leads(queue):
                continue  # another daemon of this root leads it
            if kind in ("added", "removed"):
                job_id, priority, key = split_pending_name(job_id + JOB_SUFFIX) or (
                    job_id, 0, "")
            if kind == "added":
                self.store.pending_changed(queue, job_id)
                engine.pending_appeared(queue, job_id, priority, key)
            elif kind == "removed":
                # Most removals are the daemon's own claims: only a job the index still
                # holds as pending may have been removed by someone else (look, then).
                index = engine.queues.get(queue)
                if index is not None and job_id not in index.claimed \
                        and job_id in index.pending \
                        and index.ready.priority(job_id) == priority \
                        and index.ready.key_of(job_id) == key \
                        and not self.store.exists(queue, State.PENDING, job_id, priority,
                                                  key):
                    engine.pending_vanished(queue, job_id)
            elif kind == "control":
                engine.controls.changed(queue, job_id)  # job_id: the file's name here
            elif kind in ("waiting", "unwaiting", "signal"):  # work that waits
                engine.graph.file_event(kind, queue, job_id, now)
            elif kind == "queue":
                engine.index.queue(queue)
                self.new_queues[queue] = now + NEW_QUEUE_WATCH_TIMEOUT
            elif kind == "overflow":
                log.warning("the watcher lost events (queue overflow); rescanning")
                self.store.forget_prefetched()  # what changed behind our back is unknown
                self.rescan_now = self.overflowed = True
        if self.new_queues:
            self._watch_new_queues(now)

    def _watch_new_queues(self, now: float) -> None:
        """Watch the pending/ of queues that appeared; list it once the watch is on.

        A producer creates ``<queue>/`` and then its folders and files: the watch can only
        begin once ``pending/`` exists, and what was put there before must be listed.
        """
        assert self.watcher is not None
        for queue, deadline in list(self.new_queues.items()):
            if self.watcher.watch_queue(queue):
                del self.new_queues[queue]
                # What was put there before the watch began is listed now, in this turn: a
                # producer that submitted and then asks about its job is answered right. In
                # the order of the ids (of their creation), not the folder's: tmpfs lists
                # the newest first, and a new queue's first jobs ran last in, first out.
                try:
                    for job_id, priority, key in sorted(job_names(
                            self.store.pending_names(queue), State.PENDING)):
                        self.engine.pending_appeared(queue, job_id, priority, key)
                except CkptdError as exc:
                    log.warning("cannot list the new queue %s: %s", queue, exc)
                self.rescan_now = True
                self.engine.graph.list_soon()  # and its waiting/ and signals/
            elif now > deadline:
                del self.new_queues[queue]
                self.rescan_now = True
