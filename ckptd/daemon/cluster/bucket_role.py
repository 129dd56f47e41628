"""What the daemon does differently on a bucket: the queues it leads, outages, listings.

A :class:`BucketRole` is attached to a daemon whose store is not a local folder. It is given
the store, the settings, the engine and a few functions (wake the loop, the clock, the
daemon's endpoints), never the daemon itself. The daemon calls it at a few points of its
loop:

- :meth:`BucketRole.follow` at each turn: follows the queue leases
  (:mod:`~ckptd.daemon.cluster.queue_leases`): a queue whose lease this daemon took is recovered
  into the index, one whose lease it lost or handed over is dropped from it. Several daemons
  share a bucket this way, each leading some queues; a daemon that leads nothing is a
  standby. With ``leader_lease = 0`` there are no leases and this daemon leads every queue.
- :meth:`BucketRole.writable` before each group of writes: nothing is written once no lease
  is held (and every write request is fenced on its queue's lease too). What failed for a
  bucket error is kept and retried by the daemon's :mod:`~ckptd.daemon.engine.store_guard`, as for
  any store.
- :meth:`BucketRole.may_dispatch` before dispatching: while the bucket is unavailable
  nothing is claimed; when it is available the pending files about to be claimed are read
  concurrently.
- :meth:`BucketRole.scan` in the rescan thread and :meth:`BucketRole.reconcile` in the loop:
  the queues of the bucket are listed every ``poll_interval`` (new ones go to the leases'
  balance) and, for the queues this daemon leads, ``pending/`` (paged, and incremental: only
  ids that sort after a recent time, which covers every generated id of the last two minutes
  and every hand-made name that starts with a letter), ``claimed/`` too; every
  ``rescan_interval`` a full listing of every state also counts done/failed and resolves
  jobs left in two states. A job seen in two states in two successive listings is resolved
  by the rule of :mod:`ckptd.core.states` (the later state wins, the loser is deleted); a claimed
  job that the index does not know (its pending copy lost to its claimed copy) is adopted
  with a fresh lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, StoreError
from ckptd.core.states import STATES, State
from ckptd.daemon.cluster.queue_leases import QueueLeases
from ckptd.daemon.cluster.records import Addresses
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.lister import Indexer
from ckptd.daemon.engine.store_guard import StoreGuard
from ckptd.store import recovery
from ckptd.store.base import Store
from ckptd.store.file_names import job_names

log = logging.getLogger(__name__)

RETRY_MAX = 10.0
INCREMENTAL_WINDOW = 120.0  # an incremental listing starts at ids this much older than now
PREFETCH_MAX = 256


class QueueListing(TypedDict):
    """One queue in a listing of the bucket: pending ids (with their priority and key),
    claimed ids, and in a full listing how many are done and failed."""

    pending: list[str]
    named: dict[str, tuple[int, str]]
    claimed: list[str]
    done: NotRequired[int]
    failed: NotRequired[int]


@dataclass
class BucketScan:
    """A listing of the bucket (made in the rescan thread, applied in the loop)."""

    queues: dict[str, QueueListing]
    marks: dict[str, tuple[int, int]]  # queue -> (done, failed) of the index when it began
    full: bool
    resolved: dict[str, dict[str, str | None]]  # queue -> id -> the state that won
    controls: dict[str, dict[str, bytes]]  # queue -> its control files
    started: float


class LeaderStatus(TypedDict):
    """What ``status`` shows of this daemon's leases."""

    lease_s: float
    leads: list[str]
    error: str | None


class BucketStatus(TypedDict):
    """What ``status`` adds for a bucket."""

    role: str
    recovery: NotRequired[Mapping[str, object]]
    leader: NotRequired[LeaderStatus]


SHARE_EVERY = 1.0  # seconds between two copies of the counts into the membership record


class BucketRole:
    """The bucket side of one daemon (see the module docstring)."""

    def __init__(self, store: Store, live: LiveSettings, engine: Engine, guard: StoreGuard, *,
                 name: str, wake: Callable[[], None], clock: Callable[[], float],
                 endpoints: Callable[[], dict[str, str]]) -> None:
        self.store = store
        self.guard = guard
        self.live = live
        self.engine = engine
        self.name = name
        self.wake = wake
        self.clock = clock
        self.endpoints = endpoints
        self.health = guard.health
        self.leases: QueueLeases | None = None
        self.led: frozenset[str] = frozenset()  # the queues in the index (read by the scans)
        self.everything = False  # no leases: this daemon leads every queue
        self.became_active: float | None = None
        self._promoted_at: dict[str, float] = {}
        self._retry: dict[str, float] = {}  # queue -> when to try recovering it again
        self._shared_at = 0.0
        self._last_full = 0.0
        self._dups_seen: set[tuple[str, str]] = set()
        self.listers: list[Indexer] = []  # recoveries listing in threads
        self._leases_failure: StoreError | None = None

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload changes them here too)."""
        return self.live.current

    @property
    def active(self) -> bool:
        """True while this daemon leads at least one queue."""
        return self.everything or bool(self.led)

    @property
    def standby(self) -> bool:
        """True while it leads nothing and other daemons of the bucket run (a lone daemon
        is the active one even before its first queue)."""
        return not self.active and self.leases is not None and len(self.leases.alive()) > 1

    # -- life cycle ------------------------------------------------------------------------

    def start(self, now: float, info: Addresses) -> None:
        """Take the leases of this daemon's queues (``info``: its addresses, for the records
        and the leases) and recover them; with ``leader_lease = 0`` lead every queue."""
        self.engine.index.leads = self.leads
        objects = self.store.control_objects() if self.settings.leader_lease > 0 else None
        if objects is None:
            self.everything = True
            self._recover_all(now)
            return
        if not objects.shared:
            log.warning("leases on %s: conditional writes are emulated in this process only; "
                        "run one daemon only", self.store.url)
        self.leases = QueueLeases(objects, self.live, name=self.name, info=info,
                                  wake=self.wake)
        self.store.set_fence(self.leases.fence)
        try:
            self.leases.add_queues(self.store.queues())
        except CkptdError as exc:
            log.warning("cannot list the queues of %s yet: %s", self.store.url, exc)
        self.leases.start()
        self.follow(now)
        if not self.led:
            log.info("this daemon leads no queue yet: it takes queues as they are asked for, "
                     "as the balance gives them, or when their leader dies",
                     extra={"fields": {"lease_s": self.leases.duration,
                                       "standby": self.standby}})

    def close(self) -> None:
        """Give every lease back (the other daemons take over at once)."""
        for lister in self.listers:
            lister.close()
        if self.leases is not None:
            self.leases.stop(release=True)

    def _list(self, queues: list[str], now: float) -> None:
        """Recover ``queues`` in a thread of their own (their claimed jobs at once)."""
        lister = Indexer(self.engine, self.live, wake=self.wake)
        lister.start(queues, now)
        self.listers.append(lister)

    def _recover_all(self, now: float) -> None:
        try:
            queues = self.engine.begin_recovery()
            self._list(queues, now)
            self.engine.scheduler.start(now)  # what the schedules missed
        except CkptdError as exc:
            self.health.failed(exc, now)
            log.error("cannot recover the index from %s: %s; trying again", self.store.url,
                      exc)
            self.everything = False
            self._retry[""] = now + min(RETRY_MAX, 1.0 + self.health.failures)
            return
        self.everything = True
        self._retry.pop("", None)
        self.health.ok(now)
        self.became_active = now
        self._last_full = now
        log.info("recovering the index from %s (listed in the background)", self.store.url,
                 extra={"fields": {"queues": len(self.engine.queues)}})

    def _promote(self, queue: str, now: float) -> bool:
        try:
            self._list([queue], now)
        except CkptdError as exc:
            self.engine.queues.pop(queue, None)
            self.health.failed(exc, now)
            self._retry[queue] = now + min(RETRY_MAX, 1.0 + self.health.failures)
            log.error("cannot recover queue %s from %s: %s; trying again", queue,
                      self.store.url, exc)
            return False
        self._retry.pop(queue, None)
        self.health.ok(now)
        self._promoted_at[queue] = time.time()
        if any(schedule.queue == queue for schedule in self.settings.schedules.values()):
            self.engine.scheduler.start(now)  # a queue taken over: what its schedules missed
        log.info("leading queue %s: recovering it from %s (its claimed jobs now, the rest "
                 "listed in the background)", queue, self.store.url,
                 extra={"fields": {"queue": queue,
                                   "claimed": len(self.engine.queues[queue].claimed)}})
        if self.became_active is None:
            self.became_active = now
        return True

    def _demote(self, queue: str, why: str) -> None:
        log.warning("%s: this daemon no longer leads queue %s and writes nothing more there; "
                    "its index is dropped", why, queue)
        self.engine.drop_queue(queue)
        self.guard.forget(queue)
        self.store.forget_prefetched()
        self._promoted_at.pop(queue, None)

    # -- each turn -------------------------------------------------------------------------

    def follow(self, now: float) -> tuple[list[str], list[str]]:
        """Follow the leases: recover the queues whose lease this daemon took, drop those
        it lost or handed over; return (recovered, dropped) this turn."""
        for lister in list(self.listers):  # file what the recovery threads found
            lister.apply(now)
            if not lister.running:
                self.listers.remove(lister)
        if self.leases is None:
            if not self.everything and now >= self._retry.get("", 0.0):
                self._recover_all(now)
            return [], []
        valid = self.leases.valid()
        dropped = sorted(self.led - valid)
        for queue in dropped:
            self._demote(queue, "its lease lapsed or was handed over")
        led = set(self.led) - set(dropped)
        recovered = []
        for queue in sorted(valid - led):
            if now >= self._retry.get(queue, 0.0) and self._promote(queue, now):
                led.add(queue)
                recovered.append(queue)
        failure = self.leases.failure
        if failure is not None and failure is not self._leases_failure:
            self.health.failed(failure, now)  # the bucket cannot be reached: status says so
        self._leases_failure = failure
        self.led = frozenset(led)
        for queue in dropped:
            self.leases.dropped(queue)
        if now - self._shared_at >= SHARE_EVERY:
            self._shared_at = now
            self.leases.counts = {q: index.counts() for q, index in self.engine.queues.items()
                                  if q in self.led}
        return recovered, dropped

    def leads(self, queue: str) -> bool:
        """True when this daemon leads ``queue`` (its index holds it)."""
        return self.everything or queue in self.led

    def status(self, now: float) -> BucketStatus:
        """What ``status`` adds for a bucket: the role and the leases."""
        view: BucketStatus = {"role": "standby" if self.standby else "active"}
        if self.listers:  # queues being listed (recovered) while this daemon serves
            view["recovery"] = self.listers[0].view()
        if self.leases is not None:
            view["leader"] = {"lease_s": self.leases.duration, "leads": sorted(self.led),
                              "error": self.leases.error}
        return view

    # -- writing ---------------------------------------------------------------------------

    def writable(self) -> bool:
        """True while this daemon may write: it leads a queue (every write request is fenced
        on its own queue's lease as well)."""
        return self.active

    def may_dispatch(self, now: float) -> bool:
        """Prefetch the next claims while the bucket answers; return True when jobs may be
        claimed now (the store guard decides about outages)."""
        if self.health.available:
            self._prefetch(now)
        return self.health.available

    def _prefetch(self, now: float) -> None:
        """Start reading the files of the next claims (as many as workers have credits);
        dispatch claims a job once its file is read (a store that reads in the background
        wakes the loop then, and says in which queues a claim found a file not read yet:
        only those are looked at, not every queue at every turn)."""
        engine = self.engine
        if not engine.workers or not engine.dispatching:
            return
        background = self.guard.background
        missed = background.missed() if background is not None else None
        if missed is not None and not missed:
            return  # every claim found its file: the daemon's own submits are kept
        credits = sum(max(0, w.credits) for w in engine.workers.values())
        if credits <= 0:
            return
        for name, index in engine.queues.items():
            if not index.ready or not self.leads(name) or (missed is not None
                                                          and name not in missed):
                continue
            wanted = []
            for job_id in index.ready:
                if job_id in index.pending:
                    wanted.append(job_id)
                    if len(wanted) >= min(credits, PREFETCH_MAX):
                        break
            if not wanted:
                continue
            priorities = {i: (index.ready.priority(i), index.ready.key_of(i))  # in their
                          for i in wanted}                                     # names
            if background is not None:
                background.prefetch_later(name, wanted, priorities)
                continue
            try:
                self.store.prefetch(name, wanted, priorities)
            except CkptdError as exc:
                self.health.failed(exc, now)
                return

    # -- listing ---------------------------------------------------------------------------

    def scan(self, marks: dict[str, tuple[int, int]]) -> BucketScan:
        """List the bucket (runs in the rescan thread): see the module docstring."""
        now = time.time()
        full = now - self._last_full >= self.settings.rescan_interval
        store = self.store
        marker = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now - INCREMENTAL_WINDOW))
        result: dict[str, QueueListing] = {}
        dups: dict[str, dict[str, list[State]]] = {}
        tags: dict[str, dict[str, tuple[int, str]]] = {}
        controls = store.queue_controls()  # the queues, and their paused/limits objects
        queues = list(controls)
        if self.leases is not None:
            # New queues go to the balance, and so do the queues of schedules before their
            # first job (a queue led by nobody would never get its first tick).
            scheduled = [s.queue for s in self.live.current.schedules.values()]
            self.leases.add_queues([*queues, *scheduled])
        for queue in queues:
            if not self.leads(queue):
                continue
            listed: dict[State, list[str]] = {}
            named: dict[str, tuple[int, str]] = {}
            if full:
                for state in STATES:
                    if state is State.PENDING:
                        named = {i: (p, k) for i, p, k in job_names(store.pending_names(queue),
                                                                    state)}
                        listed[state] = sorted(named)
                    else:
                        listed[state] = store.ids(queue, state)
            else:
                named = {i: (p, k) for i, p, k in store.pending_after(queue, marker)}
                listed[State.PENDING] = sorted(named)
                listed[State.CLAIMED] = store.ids(queue, State.CLAIMED)
            entry: QueueListing = {"pending": listed[State.PENDING], "named": named,
                                     "claimed": listed[State.CLAIMED]}
            if full:
                entry["done"] = len(listed[State.DONE])
                entry["failed"] = len(listed[State.FAILED])
            result[queue] = entry
            twice = recovery.duplicates(listed)
            if twice:
                dups[queue] = twice
                tags[queue] = named
        # Resolve only what two listings in a row saw in two states: a move in flight
        # (copied, not yet deleted) is not a leftover.
        seen = {(q, i) for q, found in dups.items() for i in found}
        # (its pending copy is under the name its priority and key make)
        resolved: dict[str, dict[str, str | None]] = {}
        background = self.guard.background
        for queue, found in dups.items():
            for job_id, states in found.items():
                if (queue, job_id) not in self._dups_seen:
                    continue
                if background is not None and background.busy(queue, job_id):
                    continue  # a move of it is in flight (requests may wait their turn)
                winner, finding = recovery.resolve_duplicate(
                    store, queue, job_id, states, True,
                    *tags.get(queue, {}).get(job_id, (0, "")))
                # (a copy that was gone by the time it was read moved on: nothing to repair)
                (log.warning if finding.repaired else log.debug)("rescan: %s", finding.line())
                resolved.setdefault(queue, {})[job_id] = winner.value if winner else None
        self._dups_seen = seen
        if full:
            self._last_full = now
        return BucketScan(result, marks, full, resolved, controls, now)

    def reconcile(self, scan: BucketScan, now: float) -> None:
        """Bring the index in line with a listing from :meth:`scan` (in the loop)."""
        engine = self.engine
        full = scan.full
        engine.controls.load_all(scan.controls, scan.started)
        background = self.guard.background
        for queue, listed in scan.queues.items():
            if not self.leads(queue) or self._promoted_at.get(queue, 0.0) > scan.started:
                continue  # led elsewhere now, or recovered from a newer listing
            index = engine.index.queue(queue)
            if index.recovering is not None:
                continue  # its recovery is still listing it
            if background is not None:  # what this daemon moved since the listing began
                moved = background.moved_out
                started = scan.started
                listed = {**listed,
                          "named": {i: p for i, p in listed["named"].items()
                                    if not moved(queue, i, State.PENDING, started)},
                          "claimed": [i for i in listed["claimed"]
                                      if not moved(queue, i, State.CLAIMED, started)]}
            if full:
                engine.reconcile_pending(queue, listed["named"])
                index.take_listed_counts(scan.marks.get(queue, (0, 0)), listed["done"],
                                         listed["failed"], bool(self.guard.in_flight))
            else:
                for job_id, (priority, key) in listed["named"].items():
                    engine.pending_appeared(queue, job_id, priority, key)
            for job_id in listed["claimed"]:
                if job_id in index.claimed or job_id in index.pending:
                    continue
                if not self.health.available:
                    break  # each read would wait for its deadline: adopt at a later listing
                # Claimed in the bucket, unknown to the index (its pending copy lost to
                # its claimed copy): give it a lease, so that it comes back if nobody runs it.
                try:
                    engine.adopt_claimed(index, job_id, now, strict=True)
                except StoreError as exc:
                    self.health.failed(exc, now)
                    break
                if job_id in index.claimed:
                    log.warning("adopted a claimed job the index did not know",
                                extra={"fields": {"queue": queue, "id": job_id}})
        for queue, winners in scan.resolved.items():
            if not self.leads(queue):
                continue
            index = engine.index.queue(queue)
            for job_id, winner in winners.items():
                if winner != State.PENDING.value and job_id in index.pending \
                        and job_id not in index.added_since_scan:
                    index.pending.discard(job_id)
                    index.delayed_at.pop(job_id, None)
                    if winner in (State.DONE.value, State.FAILED.value):  # ended unsaid
                        engine.flows.ended(queue, job_id, None, State(winner), now)
