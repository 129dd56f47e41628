"""What the daemon does differently on a bucket: leadership, outages, listing, recovery.

A :class:`BucketRole` is attached to a daemon whose store is not a local folder. It is given
the store, the settings, the engine and a few functions (wake the loop, the clock, the
daemon's endpoints), never the daemon itself. The daemon calls it at a few points of its
loop:

- :meth:`BucketRole.follow` at each turn: follows the leader lease (recovering the index
  when this daemon becomes the active one, dropping it when the lease is lost). A standby
  answers the control socket with :meth:`BucketRole.standby_answer` (``ping`` and
  ``status`` say "standby", anything else gets a :class:`~ckptd.core.errors.Standby` error
  naming the active daemon).
- :meth:`BucketRole.writable` before each group of writes: nothing is written once the
  lease has lapsed (and every write request is fenced on it too). What failed for a bucket
  error is kept and retried by the daemon's :mod:`~ckptd.daemon.store_guard`, as for any
  store.
- :meth:`BucketRole.may_dispatch` before dispatching: while the bucket is unavailable
  nothing is claimed; when it is available the pending files about to be claimed are read
  concurrently.
- :meth:`BucketRole.scan` in the rescan thread and :meth:`BucketRole.reconcile` in the loop:
  ``pending/`` is listed every ``poll_interval`` (paged, and incremental: only ids that
  sort after a recent time, which covers every generated id of the last two minutes and
  every hand-made name that starts with a letter), ``claimed/`` too; every
  ``rescan_interval`` a full listing of every state also counts done/failed and resolves
  jobs left in two states. A job seen in two states in two successive listings is resolved
  by the rule of :mod:`ckptd.states` (the later state wins, the loser is deleted); a claimed
  job that the index does not know (its pending copy lost to its claimed copy) is adopted
  with a fresh lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, Standby, StoreError, TakingOver
from ckptd.core.states import STATES, State
from ckptd.daemon.engine import Engine
from ckptd.daemon.leader import LEASE_NAME, LeaderLease, Leadership
from ckptd.daemon.store_guard import StoreGuard
from ckptd.store import recovery
from ckptd.store.base import Store

log = logging.getLogger(__name__)

RETRY_MAX = 10.0
INCREMENTAL_WINDOW = 120.0  # an incremental listing starts at ids this much older than now
PREFETCH_MAX = 256


class Change(Enum):
    """What :meth:`BucketRole.follow` saw happen this turn."""

    PROMOTED = "promoted"
    DEMOTED = "demoted"


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
        self.leadership: Leadership | None = None
        self.active = False
        self.became_active: float | None = None
        self._retry_recover = 0.0
        self._last_full = 0.0
        self._dups_seen: set[tuple[str, str]] = set()

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload changes them here too)."""
        return self.live.current

    # -- life cycle ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Take the leader lease (or stand by) and, when active, recover the index."""
        objects = self.store.control_objects() if self.settings.leader_lease > 0 else None
        if objects is not None:
            if not objects.shared:
                log.warning("leader lease on %s: conditional writes are emulated in this "
                            "process only; run one daemon only", self.store.url)
            endpoints = self.endpoints()
            lease = LeaderLease(objects, LEASE_NAME, self.name, self.settings.leader_lease,
                                {"control": endpoints.get("control"),
                                 "dispatch": endpoints.get("dispatch"),
                                 "root": self.store.url})
            self.leadership = Leadership(lease, self.wake)
            self.store.set_fence(self.leadership.fence)
            if not self.leadership.start():
                holder = (lease.holder or {}).get("holder")
                log.info("standing by: another daemon holds the leader lease",
                         extra={"fields": {"active": holder, "lease_s": lease.duration}})
                return
        self._promote(now)

    def close(self) -> None:
        """Stop following the lease and give it back (a standby takes over at once)."""
        if self.leadership is not None:
            self.leadership.stop(release=True)

    def _promote(self, now: float) -> bool:
        started = time.monotonic()
        try:
            findings = self.engine.recover(now)
        except CkptdError as exc:
            self.health.failed(exc, now)
            self._retry_recover = now + min(RETRY_MAX, 1.0 + self.health.failures)
            log.error("cannot recover the index from %s: %s; trying again", self.store.url, exc)
            return False
        self.health.ok(now)
        counts = {q: i.counts() for q, i in self.engine.queues.items()}
        log.info("recovered the index from %s in %.3fs", self.store.url,
                 time.monotonic() - started,
                 extra={"fields": {"queues": len(counts), "repairs": len(findings),
                                   "pending": sum(c["pending"] for c in counts.values()),
                                   "claimed": sum(c["claimed"] for c in counts.values())}})
        self.active = True
        self.became_active = now
        self._last_full = now
        self._dups_seen.clear()
        return True

    def _demote(self, why: str) -> None:
        log.error("%s: standing by, writing nothing more; the index is dropped and will be "
                  "rebuilt from the bucket when this daemon is active again", why)
        self.active = False
        self.guard.clear()
        self.store.forget_prefetched()
        self.engine.reset()

    # -- each turn -------------------------------------------------------------------------

    def follow(self, now: float) -> Change | None:
        """Follow the lease: take the lead (recovering the index) or give it up (dropping
        the index); say which happened this turn, if either. See :attr:`active`."""
        leadership = self.leadership
        if self.active and leadership is not None and not leadership.held():
            if leadership.active or leadership.error:  # the bucket did not answer: say so
                self.health.failed(leadership.error or "the leader lease could not be renewed",
                                   now)
            self._demote("lost the leader lease" if not leadership.active else
                         "the leader lease lapsed (the bucket did not answer in time)")
            return Change.DEMOTED
        if not self.active and (leadership is None or leadership.held()) \
                and now >= self._retry_recover:
            if self._promote(now):
                return Change.PROMOTED
        return None

    def standby_answer(self, kind: bytes, now: float, info: dict[str, Any]
                       ) -> dict[str, Any] | CkptdError:
        """The answer of a daemon that does not lead to a request ``kind``; ``info`` is
        what the daemon says of itself in ``status`` (name, uptime, drops, ...)."""
        holder = self._holder()
        if kind == b"ping":
            return {"pong": True, "daemon": self.name, "standby": True, "active": holder}
        if kind == b"status":
            return {"queues": {}, "root": self.store.url, "source": "daemon", "workers": 0,
                    "standby": True, "counters": {}, **info}
        if self.leadership is None or self.leadership.lease.holder is None:
            return TakingOver("this daemon is not active yet: no daemon holds the leader lease "
                              "and this one is taking it; nothing was done, ask again")
        where = f"the active daemon is {holder}" if holder else "another daemon holds the lease"
        return Standby(f"this daemon is a standby ({where}); ask the active one")

    def _holder(self) -> str | None:
        if self.leadership is None:
            return None
        record = self.leadership.lease.holder or {}
        name = record.get("holder")
        control = record.get("control")
        return f"{name} at {control}" if name and control else name

    def status(self, now: float) -> dict[str, Any]:
        """What ``status`` adds for a bucket: the role and the lease."""
        view: dict[str, Any] = {"role": "active" if self.active else "standby"}
        if self.leadership is not None:
            lease = self.leadership.lease
            view["leader"] = {"lease_s": lease.duration, "held": self.leadership.held(),
                              "active": self._holder() if not self.active else self.name,
                              "error": self.leadership.error}
        return view

    # -- writing ---------------------------------------------------------------------------

    def writable(self) -> bool:
        """True while this daemon may write: it is active and its lease has not lapsed."""
        return self.active and (self.leadership is None or self.leadership.held())

    def may_dispatch(self, now: float) -> bool:
        """Prefetch the next claims while the bucket answers; return True when jobs may be
        claimed now (the store guard decides about outages)."""
        if self.health.available:
            self._prefetch(now)
        return self.health.available

    def _prefetch(self, now: float) -> None:
        engine = self.engine
        if not engine.workers or not engine.dispatching:
            return
        credits = sum(max(0, w.credits) for w in engine.workers.values())
        if credits <= 0:
            return
        for name, index in engine.queues.items():
            if not index.ready:
                continue
            wanted = []
            for job_id in index.ready:
                if job_id in index.pending:
                    wanted.append(job_id)
                    if len(wanted) >= min(credits, PREFETCH_MAX):
                        break
            if not wanted:
                continue
            try:
                self.store.prefetch(name, wanted)
            except CkptdError as exc:
                self.health.failed(exc, now)
                return

    # -- listing ---------------------------------------------------------------------------

    def scan(self, marks: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """List the bucket (runs in the rescan thread): see the module docstring."""
        now = time.time()
        full = now - self._last_full >= self.settings.rescan_interval
        store = self.store
        marker = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now - INCREMENTAL_WINDOW))
        result: dict[str, Any] = {}
        dups: dict[str, dict[str, list[State]]] = {}
        controls = store.queue_controls()  # the queues, and their paused/limits objects
        for queue in controls:
            listed: dict[State, list[str]] = {}
            if full:
                for state in STATES:
                    listed[state] = store.ids(queue, state)
            else:
                listed[State.PENDING] = store.ids_after(queue, State.PENDING, marker)
                listed[State.CLAIMED] = store.ids(queue, State.CLAIMED)
            entry: dict[str, Any] = {"pending": listed[State.PENDING],
                                     "claimed": listed[State.CLAIMED]}
            if full:
                entry["done"] = len(listed[State.DONE])
                entry["failed"] = len(listed[State.FAILED])
            result[queue] = entry
            twice = recovery.duplicates(listed)
            if twice:
                dups[queue] = twice
        # Resolve only what two listings in a row saw in two states: a move in flight
        # (copied, not yet deleted) is not a leftover.
        seen = {(q, i) for q, found in dups.items() for i in found}
        resolved: dict[str, dict[str, str | None]] = {}
        for queue, found in dups.items():
            for job_id, states in found.items():
                if (queue, job_id) not in self._dups_seen:
                    continue
                winner, finding = recovery.resolve_duplicate(store, queue, job_id, states,
                                                             repair=True)
                log.warning("rescan: %s", finding.line())
                resolved.setdefault(queue, {})[job_id] = winner.value if winner else None
        self._dups_seen = seen
        if full:
            self._last_full = now
        return {"queues": result, "marks": marks, "full": full,
                "resolved": resolved, "controls": controls, "started": now}

    def reconcile(self, scan: dict[str, Any], now: float) -> None:
        """Bring the index in line with a listing from :meth:`scan` (in the loop)."""
        if not self.active:
            return
        engine = self.engine
        full = scan["full"]
        engine.controls.load_all(scan.get("controls", {}), scan.get("started"))
        for queue, listed in scan["queues"].items():
            index = engine.queue(queue)
            if full:
                engine.reconcile_pending(queue, listed["pending"])
                # A listing of a bucket takes a while: counts are taken from it only when
                # nothing ended meanwhile (else a job could be counted twice).
                if (index.done, index.failed) == scan["marks"].get(queue, (0, 0)):
                    index.done, index.failed = listed["done"], listed["failed"]
            else:
                for job_id in listed["pending"]:
                    engine.pending_appeared(queue, job_id)
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
        for queue, winners in scan.get("resolved", {}).items():
            index = engine.queue(queue)
            for job_id, winner in winners.items():
                if winner != State.PENDING.value and job_id in index.pending \
                        and job_id not in index.added_since_scan:
                    index.pending.discard(job_id)
                    index.delayed_at.pop(job_id, None)
