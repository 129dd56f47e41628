"""The daemon's core: the index of jobs, credits, leases, retries, and the moves they cause.

No sockets and no clock of its own: the daemon feeds it decoded messages and the current
time, and the engine answers with store operations (collected in a :class:`Txn` and applied
as one group, so ``fsync = "batch"`` syncs them together) and with messages to send once
those operations are durable. Tests drive it directly with a fake clock.

Operators' requests (status, retry, cancel, purge) are in :mod:`ckptd.operator_actions`.

The index holds ids and a few numbers per job, never payloads. It is a cache: the folders
are the truth, and :meth:`Engine.recover` rebuilds it from them.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptd.core import jobs
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob, StoreError
from ckptd.core.states import State, transition_name
from ckptd.core.timefmt import parse_iso, time_or_none, utc_iso
from ckptd.daemon.flows import Flows
from ckptd.daemon.metrics import QueueMetrics, failure_note
from ckptd.daemon.operator_actions import OperatorActions
from ckptd.store import recovery
from ckptd.store.admin import prepare_submit
from ckptd.store.base import DeleteCheckpoint, Move, Op, Outcome, PutBlob, PutCheckpoint, Store
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

# A pending file younger than this that does not parse may still be being written in place
# by a producer; it is retried later instead of being quarantined at once.
MALFORMED_GRACE = 2.0
# A pending job that cannot be read (I/O error, permissions) is tried again after this.
STORE_RETRY_DELAY = 5.0
WORKER_TIMEOUT_HEARTBEATS = 3


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
    progress: dict[str, Any] | None = None
    closing: bool = False  # an answer was accepted and its move is being committed
    job: jobs.Job | None = None  # the claimed file as read at claim time (small jobs only)
    created: float | None = None  # the job's creation time, parsed once at claim time


@dataclass
class QueueIndex:
    """What the daemon knows about one queue, without payloads."""

    name: str
    ready: deque[str] = field(default_factory=deque)
    pending: set[str] = field(default_factory=set)
    delayed: list[tuple[float, str]] = field(default_factory=list)
    delayed_at: dict[str, float] = field(default_factory=dict)  # pending ids not yet due
    claimed: dict[str, Lease] = field(default_factory=dict)
    done: int = 0
    failed: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {
        "submitted": 0, "succeeded": 0, "failed": 0, "retried": 0, "expired": 0,
        "stale_answers": 0, "quarantined": 0})
    metrics: QueueMetrics = field(default_factory=QueueMetrics)
    added_since_scan: set[str] = field(default_factory=set)
    checkpointed: set[str] = field(default_factory=set)  # ids that have a state/ file

    def counts(self) -> dict[str, int]:
        """Jobs per state, from the index."""
        return {"pending": len(self.pending), "claimed": len(self.claimed),
                "done": self.done, "failed": self.failed}


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


Callback = Callable[[Outcome], None]


@dataclass
class Txn:
    """Store ops of one round, with what to do once each is applied (or failed)."""

    ops: list[Op] = field(default_factory=list)
    callbacks: list[Callback | None] = field(default_factory=list)

    def add(self, op: Op, then: Callback | None = None) -> None:
        """Queue ``op``; ``then(outcome)`` runs after the group is applied."""
        self.ops.append(op)
        self.callbacks.append(then)

    def __len__(self) -> int:
        return len(self.ops)


Send = tuple[bytes, bytes, Body]
"""(worker identity, message kind, body) to send once the round's ops are applied."""

# Jobs whose file is at most this big keep it in their lease while claimed, so that the
# answer does not read it again; bigger ones are read again when they finish.
CACHE_JOB_BYTES = 16 * 1024


def backoff_delay(attempts: int, settings: Settings, rand: Callable[[], float]) -> float:
    """Delay before retrying a job that has used ``attempts`` attempts.

    Exponential (base, 2x base, 4x base, ...), capped, and spread by up to ``jitter`` of
    itself downwards so that jobs failing together do not come back together.
    """
    delay = min(settings.backoff_cap, settings.backoff_base * 2 ** max(0, attempts - 1))
    return float(delay * (1.0 - settings.backoff_jitter * rand()))


def _first_claim(lease: Lease, job: jobs.Job) -> float:
    """When the job's first attempt was claimed (the start of its cycle time)."""
    if lease.attempt > 1:
        history = job.get("history")
        first = history[0] if isinstance(history, list) and history else None
        if isinstance(first, dict) and first.get("attempt") == 1:
            claimed = time_or_none(first.get("claimed"))
            if claimed is not None:
                return claimed
    return lease.claimed_at


class Engine(OperatorActions):
    """The index and the rules of dispatch; see the module docstring."""

    def __init__(self, store: Store, settings: Settings, *, name: str = "ckptd",
                 rand: Callable[[], float] = random.random) -> None:
        self.store = store
        self.settings = settings
        self.name = name
        self.rand = rand
        self.queues: dict[str, QueueIndex] = {}
        self.workers: dict[str, WorkerInfo] = {}
        self.by_identity: dict[bytes, WorkerInfo] = {}
        self.expiry: list[tuple[float, str, str, int]] = []
        self.txn = Txn()
        self.outbox: list[Send] = []
        self.dispatching = True
        self.flows = Flows(store, settings)
        self.ended: list[tuple[str, str]] = []  # (queue, id) that reached done/failed
        self.counters: dict[str, int] = {"stale_answers": 0, "unknown_worker": 0,
                                         "store_errors": 0}
        self._worker_order: deque[str] = deque()

    # -- the index -------------------------------------------------------------------------

    def queue(self, name: str) -> QueueIndex:
        """Return the index of queue ``name``, creating an empty one."""
        index = self.queues.get(name)
        if index is None:
            index = self.queues[name] = QueueIndex(name)
        return index

    def recover(self, now: float) -> list[recovery.Finding]:
        """Rebuild the index from the store, resolving what a crash left behind.

        Jobs found in two folders are resolved by the two-state rule, stale tmp/ leftovers
        removed, and claimed jobs get a fresh lease for the attempt they were running.
        """
        findings: list[recovery.Finding] = []
        self.queues.clear()
        for name in self.store.queues():
            index = self.queue(name)
            ids = recovery.listing(self.store, name)
            findings += recovery.resolve_duplicates(self.store, name, ids, repair=True)
            findings += recovery.clean_leftovers(self.store, name, now,
                                                 self.settings.tmp_max_age, repair=True)
            index.ready.extend(ids[State.PENDING])
            index.pending.update(ids[State.PENDING])
            index.done = len(ids[State.DONE])
            index.failed = len(ids[State.FAILED])
            index.metrics.base_succeeded, index.metrics.base_failed = index.done, index.failed
            index.metrics.seed_failures(self.store, name, ids[State.FAILED])
            index.checkpointed = set(self.store.checkpoint_ids(name))
            self.flows.recover(name, ids, now, self.txn)
            for job_id in ids[State.CLAIMED]:
                self.adopt_claimed(index, job_id, now, strict=True)
        for finding in findings:
            log.warning("recovery: %s", finding.line())
        return findings

    def adopt_claimed(self, index: QueueIndex, job_id: str, now: float, *,
                      strict: bool = False) -> None:
        """Give a job found in claimed/ a lease for the attempt it was running.

        With ``strict`` (recovery) a store error is raised, so that no claimed job is left
        without a lease; otherwise it is logged and the job adopted at a later listing.
        """
        try:
            job = jobs.decode(self.store.read(index.name, State.CLAIMED, job_id),
                              index.name, job_id)
        except JobNotFound:
            return
        except MalformedJob as exc:
            self._quarantine(index, State.CLAIMED, job_id, str(exc))
            return
        except StoreError as exc:
            if strict:
                raise
            self.counters["store_errors"] += 1
            log.warning("cannot read claimed job %s/%s (%s); adopting it later", index.name,
                        job_id, exc)
            return
        self._lease(index, job_id, jobs.running_attempt(job), None, now, claimed_at=now)

    def _lease(self, index: QueueIndex, job_id: str, attempt: int, worker: str | None,
               now: float, claimed_at: float) -> Lease:
        deadline = now + self.settings.lease_for(index.name)
        lease = Lease(index.name, job_id, attempt, worker, deadline, claimed_at)
        index.claimed[job_id] = lease
        heapq.heappush(self.expiry, (deadline, index.name, job_id, attempt))
        return lease

    def _quarantine(self, index: QueueIndex, state: State, job_id: str, reason: str) -> None:
        try:
            where = self.store.quarantine(index.name, state.value, f"{job_id}.json",
                                          f"{state.value}/{job_id}.json: {reason}")
        except CkptdError as exc:
            log.error("cannot quarantine %s/%s/%s: %s", index.name, state.value, job_id, exc)
            return
        index.counters["quarantined"] += 1
        log.warning("quarantined a malformed job file", extra={"fields": {
            "queue": index.name, "id": job_id, "reason": reason, "moved_to": where}})

    # -- producers -------------------------------------------------------------------------

    def submit(self, body: Body, now: float, reply: Callable[[Body | CkptdError], None]) -> None:
        """Create a job from a control ``submit`` body; ``reply`` gets the answer once the
        job is durable (or the error)."""
        queue = body["queue"]
        job_id = body.get("id")
        if_exists = body.get("if_exists") or "error"
        if if_exists not in ("error", "return"):
            reply(CkptdError("if_exists must be 'error' or 'return'"))
            return
        fresh = bool(body.get("fresh"))
        if job_id is not None:
            index = self.queues.get(queue)
            state = (State.PENDING.value if index and job_id in index.pending else
                     State.CLAIMED.value if index and job_id in index.claimed else
                     None if fresh else self.where(queue, job_id))
            if state is not None:
                reply({"id": job_id, "created": False, "state": state} if if_exists == "return"
                      else JobExists(queue, job_id, state))
                return
        try:
            job, ops = prepare_submit(self.settings, queue, body.get("payload"), now,
                                      job_id=job_id, max_attempts=body.get("max_attempts"),
                                      delay=body.get("delay"), batch=body.get("batch"),
                                      fresh=fresh)
        except (CkptdError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        index = self.queue(queue)
        new_id = job["id"]
        not_before = now + body["delay"] if body.get("delay") else None
        batch = body.get("batch")
        # Reserve the id now so that a second submit of it in the same round is refused.
        index.pending.add(new_id)
        index.added_since_scan.add(new_id)

        def created(outcome: Outcome) -> None:
            if outcome is None:
                index.counters["submitted"] += 1
                if batch is not None:
                    index.metrics.submitted(batch, now)
                self._make_ready(index, new_id, not_before)
                reply({"id": new_id, "created": True, "state": "pending"})
                return
            index.pending.discard(new_id)
            if isinstance(outcome, JobExists) and if_exists == "return":
                reply({"id": new_id, "created": False, "state": outcome.state or "pending"})
            else:
                reply(outcome)

        for op in ops[:-1]:
            self.txn.add(op)
        self.txn.add(ops[-1], created)

    def where(self, queue: str, job_id: str) -> str | None:
        """The state of a job: from the index when it is open, else from the store."""
        index = self.queues.get(queue)
        if index is not None:
            if job_id in index.pending:
                return State.PENDING.value
            if job_id in index.claimed:
                return State.CLAIMED.value
        for state in (State.DONE, State.FAILED, State.PENDING, State.CLAIMED):
            if self.store.exists(queue, state, job_id):
                return state.value
        return None

    def _make_ready(self, index: QueueIndex, job_id: str, not_before: float | None) -> None:
        if not_before is not None:
            self._delay(index, job_id, not_before)
        else:
            index.ready.append(job_id)

    def _delay(self, index: QueueIndex, job_id: str, due: float) -> None:
        """Keep a pending job back until ``due`` (counted in O(1) by ``delayed_at``)."""
        heapq.heappush(index.delayed, (due, job_id))
        index.delayed_at[job_id] = due

    def pending_appeared(self, queue: str, job_id: str) -> None:
        """A file ``pending/<id>.json`` appeared that the daemon did not put there."""
        index = self.queue(queue)
        if job_id in index.pending or job_id in index.claimed:
            return
        index.pending.add(job_id)
        index.added_since_scan.add(job_id)
        index.ready.append(job_id)

    def pending_vanished(self, queue: str, job_id: str) -> None:
        """``pending/<id>.json`` was removed by someone else: the job is cancelled."""
        index = self.queues.get(queue)
        if index is not None and job_id in index.pending:
            index.pending.discard(job_id)
            index.delayed_at.pop(job_id, None)
            log.info("job removed from pending/ by hand", extra={"fields": {
                "queue": queue, "id": job_id, "from": "pending", "to": "removed"}})

    def reconcile_pending(self, queue: str, listed: list[str]) -> None:
        """Bring the pending index in line with a listing of ``pending/`` (the rescan).

        Ids added to the index since the listing began are kept even if the listing
        missed them; ids listed but already claimed are ignored.
        """
        index = self.queue(queue)
        on_disk = set(listed)
        for job_id in listed:
            if job_id not in index.pending and job_id not in index.claimed:
                index.pending.add(job_id)
                index.ready.append(job_id)
        for job_id in list(index.pending):
            if job_id not in on_disk and job_id not in index.added_since_scan:
                index.pending.discard(job_id)
                index.delayed_at.pop(job_id, None)
        index.added_since_scan.clear()

    # -- workers ---------------------------------------------------------------------------

    def hello(self, identity: bytes, body: Body, now: float) -> None:
        """A worker (re)introduces itself with its queues and free slots."""
        worker_id = body["worker"]
        old = self.workers.get(worker_id)
        if old is not None and old.identity != identity:
            self.by_identity.pop(old.identity, None)
        slots = body["slots"]
        free = body.get("free")
        info = WorkerInfo(worker_id, identity, list(body["queues"]), slots,
                          slots if free is None else min(free, slots), now,
                          body.get("host", ""), body.get("pid", 0))
        for queue, job_id, attempt in body.get("running") or []:
            index = self.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is not None and lease.attempt == attempt and not lease.closing:
                # A worker back after a daemon restart still runs this attempt: adopt it.
                lease.worker = worker_id
                lease.deadline = max(lease.deadline, now + self.settings.lease_for(queue))
                info.running.add((queue, job_id))
        self.workers[worker_id] = info
        self.by_identity[identity] = info
        if worker_id not in self._worker_order:
            self._worker_order.append(worker_id)
        for queue in info.queues:
            self.queue(queue)
        self.outbox.append((identity, b"welcome", {
            "lease": self.settings.lease, "heartbeat": self.settings.heartbeat,
            "root": self.store.url, "daemon": self.name,
            "inline_limit": self.settings.inline_limit}))
        log.info("worker connected", extra={"fields": {
            "worker": worker_id, "queues": ",".join(info.queues), "slots": slots,
            "host": info.host}})

    def worker_for(self, identity: bytes, now: float) -> WorkerInfo | None:
        """Return the worker behind ``identity``; ask an unknown one to say hello again."""
        info = self.by_identity.get(identity)
        if info is None:
            self.counters["unknown_worker"] += 1
            self.outbox.append((identity, b"rehello", {}))
            return None
        info.last_seen = now
        return info

    def heartbeat(self, worker: WorkerInfo, body: Body, now: float) -> None:
        """Extend the leases of the jobs a worker says it is running."""
        for queue, job_id, attempt in body["jobs"]:
            index = self.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is None or lease.attempt != attempt:
                continue
            lease.deadline = now + self.settings.lease_for(queue)
            lease.heartbeat_at = now
            if lease.worker is None:
                lease.worker = worker.id
                worker.running.add((queue, job_id))

    def forget_worker(self, worker: WorkerInfo, why: str) -> None:
        """Drop a worker; its jobs keep their leases and come back if they run out."""
        self.workers.pop(worker.id, None)
        if self.by_identity.get(worker.identity) is worker:
            del self.by_identity[worker.identity]
        try:
            self._worker_order.remove(worker.id)
        except ValueError:
            pass
        log.info("worker gone", extra={"fields": {"worker": worker.id, "why": why,
                                                   "running": len(worker.running)}})

    def forget_silent_workers(self, now: float) -> None:
        """Drop workers not heard from for a few heartbeat intervals."""
        limit = self.settings.heartbeat * WORKER_TIMEOUT_HEARTBEATS
        for worker in list(self.workers.values()):
            if now - worker.last_seen > limit:
                self.forget_worker(worker, f"silent for {now - worker.last_seen:.1f}s")

    def _live_lease(self, worker: WorkerInfo | None, body: Body) -> Lease | None:
        """Return the lease an answer is for, or None (and count it) when it is stale."""
        index = self.queues.get(body["queue"])
        lease = index.claimed.get(body["id"]) if index else None
        if lease is None or lease.attempt != body["attempt"] or lease.closing:
            self.counters["stale_answers"] += 1
            if index is not None:
                index.counters["stale_answers"] += 1
            log.info("dropped a late answer", extra={"fields": {
                "queue": body["queue"], "id": body["id"], "attempt": body["attempt"],
                "current": lease.attempt if lease else None,
                "worker": worker.id if worker else None}})
            return None
        return lease

    def _free_slot(self, worker: WorkerInfo | None, queue: str, job_id: str) -> None:
        if worker is not None:
            if (queue, job_id) in worker.running:
                worker.running.discard((queue, job_id))
            worker.credits = min(worker.slots, worker.credits + 1)

    def done(self, worker: WorkerInfo | None, body: Body, now: float) -> None:
        """A worker finished a job: move it to done/ with its result."""
        self._free_slot(worker, body["queue"], body["id"])
        lease = self._live_lease(worker, body)
        if lease is None:
            return
        job = self._claimed_job(lease)
        if job is None:
            return
        lease.closing = True
        index = self.queue(lease.queue)
        job["attempts"] = lease.attempt
        job["claimed_at"] = utc_iso(lease.claimed_at)
        job["finished_at"] = utc_iso(now)
        job["worker"] = lease.worker or (worker.id if worker else None)
        job.pop("not_before", None)
        first_claim = _first_claim(lease, job)  # before this attempt joins the history
        created_at = (lease.created if lease.created is not None
                      else time_or_none(job.get("created")))
        batch = job.get("batch")
        result = body.get("result")
        in_blob = bool(body.get("result_ref"))
        if in_blob:  # the worker stored it; the name is always this one
            job["result_ref"] = f"blobs/{lease.id}.result"
            job["result"] = None
        else:
            job["result"] = result
        jobs.add_history(job, {"attempt": lease.attempt, "worker": job["worker"],
                               "claimed": job["claimed_at"], "ended": job["finished_at"],
                               "outcome": "done"})
        self.flows.handover(lease.queue, job, result, in_blob, now, self.txn)  # before the move
        data = jobs.encode(jobs.bump(job))
        if not in_blob and len(data) > self.settings.inline_limit:
            # Only a big file can hold a result over the limit: measure the result alone.
            encoded = jobs.encode_value(result)
            if len(encoded) > self.settings.inline_limit:
                self.txn.add(PutBlob(lease.queue, lease.id, "result", encoded))
                job["result"] = None
                job["result_ref"] = f"blobs/{lease.id}.result"
                data = jobs.encode(job)

        def moved(outcome: Outcome) -> None:
            if outcome is not None:
                self._move_failed(lease, outcome)
                return
            self._end_lease(index, lease)
            self.ended.append((lease.queue, lease.id))
            index.checkpointed.discard(lease.id)
            index.done += 1
            self.flows.ended(lease.queue, lease.id, job, State.DONE, now, self.txn)
            index.counters["succeeded"] += 1
            index.metrics.succeeded(now, None if created_at is None else max(0.0, now - created_at),
                                    max(0.0, now - first_claim),
                                    batch if isinstance(batch, str) else None)
            self._log_move(lease, State.CLAIMED, State.DONE, now)

        self.txn.add(Move(lease.queue, lease.id, State.CLAIMED, State.DONE, data), moved)
        if lease.id in index.checkpointed:
            self.txn.add(DeleteCheckpoint(lease.queue, lease.id))

    def failed(self, worker: WorkerInfo | None, body: Body, now: float) -> None:
        """A worker's attempt failed: retry later, or move the job to failed/."""
        self._free_slot(worker, body["queue"], body["id"])
        lease = self._live_lease(worker, body)
        if lease is None:
            return
        error = jobs.error_record(body["error"], body.get("type") or "Error",
                                  body.get("traceback"), lease.attempt, now,
                                  lease.worker or (worker.id if worker else None))
        self._attempt_failed(lease, error, now, may_retry=body.get("retry", True),
                             delay=body.get("delay"), outcome="error")

    def _attempt_failed(self, lease: Lease, error: dict[str, Any], now: float, *,
                        may_retry: bool, delay: float | None, outcome: str) -> None:
        job = self._claimed_job(lease)
        if job is None:
            return
        lease.closing = True
        index = self.queue(lease.queue)
        job["attempts"] = lease.attempt
        job["last_error"] = error
        jobs.add_history(job, {"attempt": lease.attempt, "worker": error.get("worker"),
                               "claimed": utc_iso(lease.claimed_at), "ended": utc_iso(now),
                               "outcome": outcome, "error": error["message"][:500]})
        retry = may_retry and lease.attempt < int(job["max_attempts"])
        if retry:
            wait = backoff_delay(lease.attempt, self.settings, self.rand) if delay is None \
                else max(0.0, delay)
            not_before = now + wait
            job["not_before"] = utc_iso(not_before)
            target = State.PENDING
        else:
            job["finished_at"] = utc_iso(now)
            job.pop("not_before", None)
            target = State.FAILED
        data = jobs.encode(jobs.bump(job))

        def moved(outcome_: Outcome) -> None:
            if outcome_ is not None:
                self._move_failed(lease, outcome_)
                return
            self._end_lease(index, lease)
            batch = job.get("batch")
            if target is State.PENDING:
                index.counters["retried"] += 1
                index.metrics.retried(batch if isinstance(batch, str) else None)
                index.pending.add(lease.id)
                self._delay(index, lease.id, not_before)
            else:
                self.ended.append((lease.queue, lease.id))
                self.flows.ended(lease.queue, lease.id, job, State.FAILED, now, self.txn)
                index.failed += 1
                index.counters["failed"] += 1
                index.metrics.failed(now, failure_note(job, now))
            self._log_move(lease, State.CLAIMED, target, now, error=error["message"][:200])

        self.txn.add(Move(lease.queue, lease.id, State.CLAIMED, target, data), moved)

    def _claimed_job(self, lease: Lease) -> jobs.Job | None:
        """The claimed job's file, as a copy that the caller may change."""
        if lease.job is not None:
            job = dict(lease.job)
            if "history" in job:
                job["history"] = list(job["history"])
            return job
        return self._read_claimed(lease)

    def _read_claimed(self, lease: Lease) -> jobs.Job | None:
        index = self.queue(lease.queue)
        try:
            return jobs.decode(self.store.read(lease.queue, State.CLAIMED, lease.id),
                               lease.queue, lease.id)
        except JobNotFound:
            # Gone from claimed/ behind our back (an operator moved or removed it).
            index.claimed.pop(lease.id, None)
            log.warning("claimed job vanished from the store", extra={"fields": {
                "queue": lease.queue, "id": lease.id}})
        except MalformedJob as exc:
            index.claimed.pop(lease.id, None)
            self._quarantine(index, State.CLAIMED, lease.id, str(exc))
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("cannot read claimed job %s/%s: %s", lease.queue, lease.id, exc)
        return None

    def _move_failed(self, lease: Lease, error: CkptdError) -> None:
        lease.closing = False
        self.counters["store_errors"] += 1
        if isinstance(error, JobNotFound):
            self.queue(lease.queue).claimed.pop(lease.id, None)
        log.error("cannot move job %s/%s: %s", lease.queue, lease.id, error)

    def _end_lease(self, index: QueueIndex, lease: Lease) -> None:
        if index.claimed.get(lease.id) is lease:
            del index.claimed[lease.id]
        if lease.worker is not None:
            worker = self.workers.get(lease.worker)
            if worker is not None:
                worker.running.discard((lease.queue, lease.id))

    def _log_move(self, lease: Lease, src: State, dst: State, now: float, **more: Any) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {"queue": lease.queue, "id": lease.id,
                                  "attempt": lease.attempt, "from": src.value, "to": dst.value,
                                  "cycle_s": round(now - lease.claimed_at, 6)}
        if lease.worker:
            fields["worker"] = lease.worker
        fields.update(more)
        log.info(transition_name(src, dst), extra={"fields": fields})

    def checkpoint(self, worker: WorkerInfo, body: Body, now: float) -> None:
        """Store a worker's checkpoint for its running attempt, then confirm it."""
        queue, job_id, seq = body["queue"], body["id"], body["seq"]
        lease = self._live_lease(worker, body)
        if lease is None:
            self.outbox.append((worker.identity, b"saved", {
                "queue": queue, "id": job_id, "seq": seq, "ok": False,
                "error": "the job is no longer yours (lease lost)"}))
            return
        lease.deadline = max(lease.deadline, now + self.settings.lease_for(queue))
        record = {"id": job_id, "attempt": lease.attempt, "seq": seq, "at": utc_iso(now),
                  "state": body["state"]}
        try:
            data = jobs.encode(record)
        except ValueError as exc:
            self._saved(worker, queue, job_id, seq, str(exc))
            return

        def saved(outcome: Outcome) -> None:
            if outcome is None:
                lease.checkpoint_at = now
                self.queue(queue).checkpointed.add(job_id)
            self._saved(worker, queue, job_id, seq, None if outcome is None else str(outcome))

        self.txn.add(PutCheckpoint(queue, job_id, data), saved)

    def _saved(self, worker: WorkerInfo, queue: str, job_id: str, seq: int,
               error: str | None) -> None:
        self.outbox.append((worker.identity, b"saved", {
            "queue": queue, "id": job_id, "seq": seq, "ok": error is None, "error": error}))

    def progress(self, worker: WorkerInfo, body: Body, now: float) -> None:
        """Remember a job's last progress report (shown by status, explain)."""
        index = self.queues.get(body["queue"])
        lease = index.claimed.get(body["id"]) if index else None
        if lease is None or lease.attempt != body["attempt"]:
            return
        lease.progress = {"done": body["done"], "total": body.get("total"),
                          "note": body.get("note"), "at": utc_iso(now)}
        lease.deadline = max(lease.deadline, now + self.settings.lease_for(lease.queue))

    # -- time ------------------------------------------------------------------------------

    def expire_leases(self, now: float) -> None:
        """Send back to pending (or to failed/) every claimed job whose lease ran out."""
        while self.expiry and self.expiry[0][0] <= now:
            _, queue, job_id, attempt = heapq.heappop(self.expiry)
            index = self.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is None or lease.attempt != attempt or lease.closing:
                continue
            if lease.deadline > now:  # extended by heartbeats: look again later
                heapq.heappush(self.expiry, (lease.deadline, queue, job_id, attempt))
                continue
            assert index is not None
            index.counters["expired"] += 1
            silent = now - (lease.heartbeat_at or lease.claimed_at)
            error = jobs.error_record(f"lease expired: no heartbeat for {silent:.1f}s",
                                      "LeaseExpired", None, attempt, now, lease.worker)
            worker = self.workers.get(lease.worker) if lease.worker else None
            if worker is not None:
                worker.running.discard((queue, job_id))
            self._attempt_failed(lease, error, now, may_retry=True, delay=None,
                                 outcome="expired")

    def promote_delayed(self, now: float) -> None:
        """Make jobs whose ``not_before`` has come ready for dispatch."""
        for index in self.queues.values():
            delayed = index.delayed
            while delayed and delayed[0][0] <= now:
                due, job_id = heapq.heappop(delayed)
                if index.delayed_at.get(job_id) == due:
                    del index.delayed_at[job_id]
                if job_id in index.pending:
                    index.ready.append(job_id)

    def next_deadline(self) -> float | None:
        """The earliest time something is due (a lease or a delayed job), if any."""
        times = [self.expiry[0][0]] if self.expiry else []
        times += [index.delayed[0][0] for index in self.queues.values() if index.delayed]
        return min(times) if times else None

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, now: float, inline_limit: int) -> int:
        """Claim jobs for workers that have free slots; return how many were claimed.

        Each claim is a rename pending -> claimed queued in this round's transaction; the
        job message is sent once it is applied. A worker is only sent what its credits
        allow, so a slow worker never holds jobs it cannot start.
        """
        if not self.dispatching or not self.workers:
            return 0
        if not any(index.ready for index in self.queues.values()):
            return 0
        claimed = 0
        order = self._worker_order
        progress = True
        while progress:
            progress = False
            for _ in range(len(order)):
                worker = self.workers[order[0]]
                order.rotate(-1)
                if worker.credits <= 0:
                    continue
                if self._claim_for(worker, now, inline_limit):
                    claimed += 1
                    progress = True
        return claimed

    def _claim_for(self, worker: WorkerInfo, now: float, inline_limit: int) -> bool:
        queues = worker.queues
        for step in range(len(queues)):
            position = (worker.next_queue + step) % len(queues)
            index = self.queues.get(queues[position])
            if index is None:
                continue
            while index.ready:
                job_id = index.ready.popleft()
                if job_id not in index.pending:
                    continue  # cancelled or already claimed
                if self._claim(index, job_id, worker, now, inline_limit):
                    worker.next_queue = position + 1
                    return True
        return False

    def _claim(self, index: QueueIndex, job_id: str, worker: WorkerInfo, now: float,
               inline_limit: int) -> bool:
        queue = index.name
        try:
            raw = self.store.read(queue, State.PENDING, job_id)
        except JobNotFound:
            index.pending.discard(job_id)
            return False
        except MalformedJob as exc:  # e.g. a symlink planted in pending/: not a job file
            self._malformed_pending(index, job_id, str(exc), now)
            return False
        except StoreError as exc:
            self.counters["store_errors"] += 1
            log.error("cannot read pending job %s/%s (trying again in %gs): %s", queue, job_id,
                      STORE_RETRY_DELAY, exc)
            # Later, not back into ready: the dispatch loop would take it again at once, forever.
            self._delay(index, job_id, now + STORE_RETRY_DELAY)
            return False
        try:
            job = jobs.decode(raw, queue, job_id)
            not_before = job.get("not_before")
            wait_until = parse_iso(not_before) if isinstance(not_before, str) else None
        except (MalformedJob, ValueError) as exc:
            self._malformed_pending(index, job_id, str(exc), now)
            return False
        if wait_until is not None and wait_until > now:
            self._delay(index, job_id, wait_until)
            return False
        attempt = jobs.running_attempt(job)
        index.pending.discard(job_id)
        if index.delayed_at:
            index.delayed_at.pop(job_id, None)
        lease = self._lease(index, job_id, attempt, worker.id, now, claimed_at=now)
        lease.created = time_or_none(job["created"])
        ready_at = wait_until if wait_until is not None else lease.created
        if len(raw) <= CACHE_JOB_BYTES:
            lease.job = job
        worker.credits -= 1
        worker.running.add((queue, job_id))
        body: Body = {"queue": queue, "id": job_id, "attempt": attempt,
                      "max_attempts": job["max_attempts"], "created": job["created"]}
        if job.get("batch"):
            body["batch"] = job["batch"]
        if job.get("payload_ref"):
            body["payload_ref"] = job["payload_ref"]
        elif len(raw) > inline_limit:
            body["payload_ref"] = "job"  # inline in the job file, too big for a message
        else:
            body["payload"] = job.get("payload")
        if job_id in index.checkpointed:
            checkpoint = self._checkpoint_state(queue, job_id, inline_limit)
            if checkpoint is not None:
                body.update(checkpoint)

        def moved(outcome: Outcome) -> None:
            if outcome is None:
                self.outbox.append((worker.identity, b"job", body))
                if ready_at is not None:
                    index.metrics.dispatch.observe(max(0.0, now - ready_at))
                self._log_move(lease, State.PENDING, State.CLAIMED, now, worker=worker.id)
                return
            self._end_lease(index, lease)
            worker.credits = min(worker.slots, worker.credits + 1)
            if not isinstance(outcome, JobNotFound):
                index.pending.add(job_id)
                index.ready.appendleft(job_id)
                self.counters["store_errors"] += 1
                log.error("cannot claim %s/%s: %s", queue, job_id, outcome)

        self.txn.add(Move(queue, job_id, State.PENDING, State.CLAIMED), moved)
        return True

    def _checkpoint_state(self, queue: str, job_id: str, inline_limit: int
                          ) -> dict[str, Any] | None:
        try:
            raw = self.store.read_checkpoint(queue, job_id)
        except StoreError as exc:
            log.error("cannot read the checkpoint of %s/%s: %s", queue, job_id, exc)
            return None
        if raw is None:
            return None
        if len(raw) > inline_limit:
            return {"state_ref": True}
        try:
            record = json.loads(raw)
        except ValueError:
            log.error("checkpoint of %s/%s is not JSON; the job starts afresh", queue, job_id)
            return None
        return {"state": record.get("state") if isinstance(record, dict) else None}

    def _malformed_pending(self, index: QueueIndex, job_id: str, reason: str, now: float
                           ) -> None:
        try:
            age = now - self.store.mtime(index.name, State.PENDING, job_id)
        except CkptdError:
            age = MALFORMED_GRACE
        if age < MALFORMED_GRACE:
            # Perhaps still being written in place: look again after the grace period.
            self._delay(index, job_id, now + MALFORMED_GRACE)
            return
        index.pending.discard(job_id)
        self._quarantine(index, State.PENDING, job_id, reason)

    def undeliverable(self, identity: bytes, body: Body, now: float) -> None:
        """A job message could not reach its worker: put the job back at once."""
        index = self.queues.get(body.get("queue", ""))
        lease = index.claimed.get(body.get("id", "")) if index else None
        if index is None or lease is None or lease.attempt != body.get("attempt"):
            return
        lease.closing = True

        def moved(outcome: Outcome) -> None:
            if outcome is not None:
                lease.closing = False
                return
            self._end_lease(index, lease)
            index.pending.add(lease.id)
            index.ready.appendleft(lease.id)

        lease.job = None
        # A plain rename back: the attempt never started, so it does not count.
        self.txn.add(Move(index.name, lease.id, State.CLAIMED, State.PENDING), moved)
        worker = self.by_identity.get(identity)
        if worker is not None:
            self.forget_worker(worker, "unreachable")
