"""The engine's index: what the daemon knows about its queues, leases and workers.

The types every part of the engine shares (:class:`Lease`, :class:`QueueIndex`,
:class:`WorkerInfo`, :class:`Txn`) and :class:`Index`, which holds them together with the
round's store operations and outgoing messages, and offers the small steps that keep them
consistent (a lease taken or ended, a job made ready or delayed, a move logged). It holds
ids and a few numbers per job, never payloads: the folders are the truth, and recovery
rebuilds it from them. No sockets, no clock of its own.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptd.codec import decode_job
from ckptd.core import jobs
from ckptd.core.config import LiveSettings, Settings, live
from ckptd.core.errors import CkptdError, JobNotFound, MalformedJob, StoreError
from ckptd.core.states import State, transition_name
from ckptd.daemon.controls.backlog import Backlog
from ckptd.daemon.controls.gate import Gate
from ckptd.daemon.controls.key_gate import KeyGate
from ckptd.daemon.controls.key_lines import KeyedReady
from ckptd.daemon.telemetry.key_metrics import KeyClaims
from ckptd.daemon.telemetry.metrics import QueueMetrics
from ckptd.daemon.telemetry.traces import Traces
from ckptd.store.base import Move, Op, Outcome, Store
from ckptd.store.file_names import job_file_name
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

REFILL_FLOOR = 0.002  # seconds: a freed slot's next job, at best (the trip and a loop turn)


@dataclass(slots=True)
class Lease:
    """A claimed job: which attempt runs where, and until when."""

    queue: str
    id: str
    attempt: int
    worker: str | None
    deadline: float
    claimed_at: float
    heartbeat_at: float | None = None
    checkpoint_at: float | None = None
    checkpoint_seq: int = 0  # the highest checkpoint seq of this attempt made durable
    progress: dict[str, Any] | None = None
    closing: bool = False  # an answer was accepted and its move is being committed
    job: jobs.Job | None = None  # the claimed file as read at claim time (small jobs only)
    created: float | None = None  # the job's creation time, parsed once at claim time
    key: str = ""  # the job's key (flow control), counted in its queue's running_keys


@dataclass
class QueueIndex:
    """What the daemon knows about one queue, without payloads."""

    name: str
    pending: Backlog = field(default_factory=Backlog)  # every pending id, compact if listed
    ready: KeyedReady = field(init=False)  # due ids, in dispatch order (per key)
    delayed: list[tuple[float, str]] = field(default_factory=list)
    delayed_at: dict[str, float] = field(default_factory=dict)  # pending ids not yet due
    claimed: dict[str, Lease] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # ids in waiting/ (daemon/engine/waits.py)
    done: int = 0
    failed: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {
        "submitted": 0, "succeeded": 0, "failed": 0, "retried": 0, "expired": 0,
        "stale_answers": 0, "quarantined": 0})
    metrics: QueueMetrics = field(default_factory=QueueMetrics)
    added_since_scan: set[str] = field(default_factory=set)
    checkpointed: set[str] = field(default_factory=set)  # ids that have a state/ file
    recovering: dict[str, int] | None = None  # while its folders are listed: ids so far
    holding: bool = False  # recovering, and not dispatching yet (the first ids in order)
    recovery: int = 0  # which recovery (listing) the ids being filed come from
    running_keys: dict[str, int] = field(default_factory=dict)  # claimed jobs per key
    key_claims: KeyClaims = field(default_factory=KeyClaims)  # claims per key, for metrics
    # While done/ and failed/ are listed (recovery): the ids moved there since it began,
    # with whether the move's callback ran; and ids the listing counted already, whose
    # callback is still to come (see :meth:`count_end`).
    ending: dict[str, tuple[State, bool]] | None = None
    counted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ready = KeyedReady(backlog=self.pending)

    def counts(self) -> dict[str, int]:
        """Jobs per state, from the index."""
        return {"pending": len(self.pending), "claimed": len(self.claimed),
                "done": self.done, "failed": self.failed, "waiting": len(self.waiting)}

    def take_listed_counts(self, marks: tuple[int, int], done: int, failed: int,
                           in_flight: bool) -> None:
        """Take a rescan's counts of done/ and failed/, only when nothing ended since the
        listing began (``marks``: the counts then) and no group is in flight: a move the
        listing saw would be counted twice. Meanwhile the index keeps its own count; a quiet
        moment brings in what an operator moved by hand."""
        if (self.done, self.failed) == marks and not in_flight:
            self.done, self.failed = done, failed

    def moving_to_end(self, job_id: str, state: State) -> None:
        """A move of ``job_id`` to done/ or failed/ is issued (noted while recovering)."""
        if self.ending is not None:
            self.ending.setdefault(job_id, (state, False))

    def count_end(self, job_id: str, state: State) -> None:
        """A move to done/ or failed/ is made: count it, unless the recovery's listing saw
        it there and counted it already (its callback came after the listing ended)."""
        if self.ending is not None:
            self.ending[job_id] = (state, True)
        if self.counted and job_id in self.counted:
            self.counted.discard(job_id)
        elif state is State.DONE:
            self.done += 1
        else:
            self.failed += 1

    def first_ready(self, look: int = 1024) -> str | None:
        """The id dispatch would take next, without taking it: stale ids (cancelled,
        claimed) at the head are skipped, looking at most ``look`` deep (None beyond)."""
        pending = self.pending
        for position, job_id in enumerate(self.ready):  # a generator: only the head is read
            if position >= look:
                break
            if job_id in pending:
                return job_id
        return None


@dataclass
class WorkerInfo:
    """A connected worker: its dispatch identity, queues and free slots (credits)."""

    id: str
    identity: bytes
    queues: list[str]
    slots: int
    credits: int
    last_seen: float
    host: str = ""
    pid: int = 0
    running: set[tuple[str, str]] = field(default_factory=set)
    next_queue: int = 0
    extra: int = 0  # credits granted beyond its slots while its jobs are short (prefetch)
    pace: float | None = None  # seconds between its answers, averaged
    answered_at: float | None = None

    @property
    def most(self) -> int:
        """The jobs it may hold at once: its slots and the credits granted beyond them."""
        return self.slots + self.extra


Callback = Callable[[Outcome], None]


@dataclass
class Txn:
    """Store ops of one round, with what to do once each is applied (or failed)."""

    ops: list[Op] = field(default_factory=list)
    callbacks: list[Callback | None] = field(default_factory=list)

    def add(self, op: Op, then: Callback | None = None) -> None:
        """Queue ``op``; ``then(outcome)`` runs after the group is applied.

        Every move the daemon makes passes here, so the state machine is asked here:
        a move it does not allow raises TransitionError (a bug, never a job lost).
        """
        if isinstance(op, Move) and op.src is not op.dst:
            transition_name(op.src, op.dst)
        self.ops.append(op)
        self.callbacks.append(then)

    def __len__(self) -> int:
        return len(self.ops)


Send = tuple[bytes, bytes, Body]
"""(worker identity, message kind, body) to send once the round's ops are applied."""


class Index:
    """The queues, leases and workers of one daemon, and this round's ops and messages."""

    def __init__(self, store: Store, settings: Settings | LiveSettings, *, name: str = "ckptd",
                 rand: Callable[[], float] = random.random) -> None:
        self.store = store
        self.live = live(settings)
        self.name = name
        self.rand = rand
        self.queues: dict[str, QueueIndex] = {}
        self.workers: dict[str, WorkerInfo] = {}
        self.by_identity: dict[bytes, WorkerInfo] = {}
        self.worker_order: deque[str] = deque()
        self.expiry: list[tuple[float, str, str, int]] = []
        self.txn = Txn()
        self.outbox: list[Send] = []
        self.ended: list[tuple[str, str]] = []  # (queue, id) that reached done/failed
        self.counters: dict[str, int] = {"stale_answers": 0, "unknown_worker": 0,
                                         "store_errors": 0}
        self.dispatching = True
        #: How long a worker's freed slot waits for its next job: the trip and two store
        #: flushes (its answer's and the next claim's), which a journaled disk makes long.
        self.refill = REFILL_FLOOR
        self.gate = Gate(self.live)  # pause, max_running, rate (daemon/controls/gate.py)
        self.key_gate = KeyGate(self.live)  # the same per key (daemon/controls/key_gate.py)
        # More times something is due (a rate's next token, a schedule's next tick, ...).
        self.deadlines: list[Callable[[], float | None]] = []
        #: Whether this daemon leads a queue (several daemons on one store each lead some).
        self.leads: Callable[[str], bool] = lambda queue: True
        #: (queue, id) of jobs that a group in flight puts into pending/ (fsync batch,
        #: overlapped: daemon/engine/group_commit.py): the watcher and the listings leave
        #: them to the group's callbacks, as they would once it is applied.
        self.in_flight: set[tuple[str, str]] = set()
        self.traces: Traces | None = None  # OpenTelemetry spans of dispatch and moves

    def note_apply(self, seconds: float) -> None:
        """A round's store ops took ``seconds`` to apply (and flush): update ``refill``."""
        self.refill = 0.9 * self.refill + 0.1 * (REFILL_FLOOR + 2 * seconds)

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload changes them for every part at once)."""
        return self.live.current

    def take_txn(self) -> Txn:
        """Return the round's ops and start a new round."""
        txn, self.txn = self.txn, Txn()
        return txn

    def clear(self) -> None:
        """Forget everything (this daemon stopped leading; the folders stay the truth)."""
        self.queues.clear()
        self.workers.clear()
        self.by_identity.clear()
        self.worker_order.clear()
        self.expiry.clear()
        self.txn = Txn()
        self.outbox = []
        self.ended.clear()
        self.counters = {"stale_answers": 0, "unknown_worker": 0, "store_errors": 0}

    def drop_queue(self, name: str) -> None:
        """Forget queue ``name`` and free its workers' slots (another daemon leads it now:
        its workers' answers go there)."""
        if self.queues.pop(name, None) is None:
            return
        for worker in self.workers.values():
            mine = {ref for ref in worker.running if ref[0] == name}
            if mine:
                worker.running -= mine
                worker.credits = min(worker.most, worker.credits + len(mine))

    # -- queues ----------------------------------------------------------------------------

    def a_slot_is_free(self) -> bool:
        """Whether a connected worker has a free slot (credits), so a ready job can go."""
        return any(w.credits > 0 for w in self.workers.values())

    def queue(self, name: str) -> QueueIndex:
        """Return the index of queue ``name``, creating an empty one."""
        index = self.queues.get(name)
        if index is None:
            index = self.queues[name] = QueueIndex(name)
        return index

    def where(self, queue: str, job_id: str) -> str | None:
        """The state of a job: from the index when it is open, else from the store."""
        index = self.queues.get(queue)
        if index is not None:
            if job_id in index.pending:
                return State.PENDING.value
            if job_id in index.claimed:
                return State.CLAIMED.value
            if job_id in index.waiting:
                return State.WAITING.value
        found = self.store.find(queue, job_id)  # a pending file under any name
        for state in (State.DONE, State.FAILED, State.PENDING, State.CLAIMED, State.WAITING):
            if state in found:
                return state.value
        return None

    def make_ready(self, index: QueueIndex, job_id: str, not_before: float | None) -> None:
        """Queue a pending job for dispatch, now or (``not_before``) later."""
        if not_before is not None:
            self.delay(index, job_id, not_before)
        else:
            index.ready.append(job_id)

    def delay(self, index: QueueIndex, job_id: str, due: float) -> None:
        """Keep a pending job back until ``due`` (counted in O(1) by ``delayed_at``)."""
        heapq.heappush(index.delayed, (due, job_id))
        index.delayed_at[job_id] = due

    def promote_delayed(self, now: float) -> None:
        """Make jobs whose ``not_before`` has come ready for dispatch."""
        for index in self.queues.values():
            delayed = index.delayed
            while delayed and delayed[0][0] <= now:
                due, job_id = heapq.heappop(delayed)
                later = index.delayed_at.get(job_id, due)
                if later != due:
                    continue  # pushed back since (debounce): its later entry makes it ready
                index.delayed_at.pop(job_id, None)
                if job_id in index.pending:
                    index.ready.append(job_id)

    def next_deadline(self) -> float | None:
        """The earliest time something is due (a lease or a delayed job), if any."""
        times = [self.expiry[0][0]] if self.expiry else []
        times += [index.delayed[0][0] for index in self.queues.values() if index.delayed]
        for hook in self.deadlines:
            due = hook()
            if due is not None:
                times.append(due)
        return min(times) if times else None

    def quarantine(self, index: QueueIndex, state: State, job_id: str, reason: str,
                   priority: int = 0, key: str = "") -> None:
        """Move a malformed job file aside (with the reason beside it) and count it."""
        name = job_file_name(state, job_id, priority, key)
        try:
            where = self.store.quarantine(index.name, state.value, name,
                                          f"{state.value}/{name}: {reason}")
        except CkptdError as exc:
            log.error("cannot quarantine %s/%s/%s: %s", index.name, state.value, job_id, exc)
            return
        index.counters["quarantined"] += 1
        log.warning("quarantined a malformed job file", extra={"fields": {
            "queue": index.name, "id": job_id, "reason": reason, "moved_to": where}})

    # -- leases ----------------------------------------------------------------------------

    def lease(self, index: QueueIndex, job_id: str, attempt: int, worker: str | None,
              now: float, claimed_at: float, duration: float | None = None, key: str = ""
              ) -> Lease:
        """Give a claimed job a lease for ``attempt`` (of ``duration``, by default the
        queue's lease); its expiry is in the heap. ``key``: the job's, counted as running."""
        deadline = now + (self.settings.lease_for(index.name) if duration is None
                          else duration)
        lease = Lease(index.name, job_id, attempt, worker, deadline, claimed_at, key=key)
        old = index.claimed.get(job_id)
        if old is not None:
            self._unclaimed(index, old)
        index.claimed[job_id] = lease
        if key:
            index.running_keys[key] = index.running_keys.get(key, 0) + 1
        heapq.heappush(self.expiry, (deadline, index.name, job_id, attempt))
        return lease

    def _unclaimed(self, index: QueueIndex, lease: Lease) -> None:
        """A lease left ``index.claimed``: one job fewer runs for its key."""
        key = lease.key
        if key:
            left = index.running_keys.get(key, 0) - 1
            if left > 0:
                index.running_keys[key] = left
            else:
                index.running_keys.pop(key, None)
            index.ready.unpark(key)

    def end_lease(self, index: QueueIndex, lease: Lease) -> None:
        """The job left claimed/: forget its lease and free it from its worker."""
        if index.claimed.get(lease.id) is lease:
            del index.claimed[lease.id]
            self._unclaimed(index, lease)
        if lease.worker is not None:
            worker = self.workers.get(lease.worker)
            if worker is not None:
                worker.running.discard((lease.queue, lease.id))

    def claimed_job(self, lease: Lease) -> jobs.Job | None:
        """The claimed job's file, as a copy that the caller may change."""
        if lease.job is not None:
            job = lease.job.copy()
            if "history" in job:
                job["history"] = list(job["history"])
            return job
        index = self.queue(lease.queue)
        try:
            return decode_job(self.store.read(lease.queue, State.CLAIMED, lease.id),
                               lease.queue, lease.id)
        except JobNotFound:
            # Gone from claimed/ behind our back (an operator moved or removed it).
            if index.claimed.pop(lease.id, None) is lease:
                self._unclaimed(index, lease)
            log.warning("claimed job vanished from the store", extra={"fields": {
                "queue": lease.queue, "id": lease.id}})
        except MalformedJob as exc:
            if index.claimed.pop(lease.id, None) is lease:
                self._unclaimed(index, lease)
            self.quarantine(index, State.CLAIMED, lease.id, str(exc))
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("cannot read claimed job %s/%s: %s", lease.queue, lease.id, exc)
        return None

    def log_move(self, lease: Lease, src: State, dst: State, now: float, **more: Any) -> None:
        """The one log line of a state change (and its span, when tracing is on)."""
        if self.traces is not None:
            self.traces.moved(lease.queue, lease.id, lease.attempt, src.value, dst.value, more)
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {"queue": lease.queue, "id": lease.id,
                                  "attempt": lease.attempt, "from": src.value, "to": dst.value,
                                  "cycle_s": round(now - lease.claimed_at, 6)}
        if lease.worker:
            fields["worker"] = lease.worker
        fields.update(more)
        log.info(transition_name(src, dst), extra={"fields": fields})
