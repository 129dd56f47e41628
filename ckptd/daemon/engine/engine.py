"""The daemon's core: the index of jobs, credits, leases, retries, and the moves they cause.

No sockets and no clock of its own: the daemon feeds it decoded messages and the current
time, and the engine answers with store operations (collected in a
:class:`~ckptd.daemon.engine.index.Txn` and applied as one group, so ``fsync = "batch"`` syncs them
together) and with messages to send once those operations are durable. Tests drive it
directly with a fake clock.

The engine is put together from parts, one module each: the index it keeps
(:mod:`~ckptd.daemon.engine.index`), dispatch (:mod:`~ckptd.daemon.engine.dispatch`), workers'
answers and
leases (:mod:`~ckptd.daemon.engine.results`), connected workers
(:mod:`~ckptd.daemon.engine.workers`) and
batches and pipelines (:mod:`~ckptd.daemon.engine.flows`). What producers do (submit, files that
appear or vanish in ``pending/``) and recovery are here. Operators' requests (status, retry,
cancel, purge) are in :mod:`ckptd.daemon.engine.actions`, built on top of the engine.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ckptd.codec import decode_job
from ckptd.core import jobs
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob, StoreError
from ckptd.core.job_keys import job_key, key_of_job
from ckptd.core.queue_controls import aging_of, check_priority
from ckptd.core.states import State
from ckptd.daemon.controls.control_files import QueueControls
from ckptd.daemon.controls.retention import Sweeper
from ckptd.daemon.controls.schedules import Scheduler
from ckptd.daemon.engine.creating import Creating, answer
from ckptd.daemon.engine.debounce import Debounce
from ckptd.daemon.engine.dispatch import Dispatcher
from ckptd.daemon.engine.flows import Flows
from ckptd.daemon.engine.graph_events import GraphEvents
from ckptd.daemon.engine.index import Index, QueueIndex, Txn, WorkerInfo
from ckptd.daemon.engine.indexing import Indexing, ListedPending, list_ended, list_pending
from ckptd.daemon.engine.log_writer import LogWriter, Piece
from ckptd.daemon.engine.lookups import Lookups
from ckptd.daemon.engine.off_loop import OffLoop
from ckptd.daemon.engine.open_jobs import OpenJobs
from ckptd.daemon.engine.results import Answers, backoff_delay
from ckptd.daemon.engine.workers import Workers
from ckptd.daemon.telemetry.traces import traces_of
from ckptd.store import recovery
from ckptd.store.admin import prepare_submit
from ckptd.store.background import Background
from ckptd.store.base import Outcome, Store
from ckptd.wire.messages import (
    Bye,
    Checkpoint,
    Done,
    Failed,
    FromWorker,
    Heartbeat,
    Hello,
    Log,
    Park,
    Progress,
)
from ckptd.wire.protocol import Body

__all__ = ["Engine", "backoff_delay"]

log = logging.getLogger(__name__)

RESYNC_DELAY = 1.0  # a job found in two folders is dispatched again after this, not at once


def adoption_grace(settings: Settings, queue: str) -> float:
    """How long a job found in claimed/ at start-up waits for a worker to name it.

    Workers reconnect by themselves and say hello (listing the attempts they still run) at
    their next heartbeat at the latest: two heartbeats and a second cover it. A job nobody
    names by then was lost with the old daemon's messages and goes back to pending, instead
    of waiting out a whole lease.
    """
    return min(settings.lease_for(queue), 2 * settings.heartbeat + 1.0)


class Engine:
    """The index and the rules of dispatch; see the module docstring."""

    def __init__(self, store: Store, settings: Settings | LiveSettings, *,
                 name: str = "ckptd", rand: Callable[[], float] = random.random,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.index = ix = Index(store, settings, name=name, rand=rand)
        self.flows = Flows(store, ix.live, self._txn, leads=lambda queue: ix.leads(queue))
        self.workers_part = Workers(ix)
        self.answers = Answers(ix, self.flows, self.resync)
        # Work that waits: waiting/, parks, signals, batches (daemon/engine/graph_events.py)
        self.graph = GraphEvents(ix, self.flows, self.answers)
        self.dispatcher = Dispatcher(ix, self.workers_part.forget, self.resync,
                                     hold=self.graph.waits.hold)
        # Operator controls (docs/guide/operator-controls.md): pause and limits (the gate the
        # dispatcher asks), dedup, schedules, retention.
        self.controls = QueueControls(store, ix.gate, time.time, ix.key_gate)
        self.open_jobs = OpenJobs()
        self.debounce = Debounce(ix)
        self.creating = Creating()  # a resent submit waits for the create in flight
        self.lookups = Lookups(ix)  # where jobs are, for waits (a bucket: in the background)
        self.off_loop = OffLoop(store, wake)  # reads for requests (a bucket: beside the loop)
        # Where every look is a round trip (a bucket) a resent submit's look is made by its
        # create (create-only, then the other states, together), not in the loop.
        self.looks_in_create = isinstance(store, Background)
        self.scheduler = Scheduler(ix.live, store, self.submit, lambda q: self.index.leads(q))
        self.sweeper = Sweeper(store, ix.live, wake=wake)
        self.indexing = Indexing(ix, self.flows, self.graph, resync=self.resync,
                                 seen=self.open_jobs.seen,
                                 adopt=lambda index, job_id, now, grace: self.adopt_claimed(
                                     index, job_id, now, strict=True, duration=grace))
        self.log_writer = LogWriter(store, ix.live)  # jobs' own logs, written by a thread
        ix.traces = traces_of(ix.settings.tracing, name)
        ix.deadlines += [self._token_due, self.scheduler.next_due, self.graph.next_due]

    def tick(self, now: float) -> None:
        """The controls' share of a turn: aging of priorities, schedules that are due,
        retention's sweeps and what they removed."""
        ix = self.index
        settings = ix.settings
        for name, index in ix.queues.items():
            index.ready.set_aging(aging_of(settings, name))
        self.scheduler.due(now)
        self.graph.tick(now)
        for swept in self.sweeper.take_results():
            index = ix.queue(swept.queue)
            gone = len(swept.removed) + len(swept.archived)
            if swept.state is State.DONE:
                index.done = max(0, index.done - gone)
            else:
                index.failed = max(0, index.failed - gone)
            index.checkpointed.difference_update(swept.removed, swept.archived)
        self.sweeper.due(now, list(ix.queues))

    def forget_ended(self) -> None:
        """Forget what is kept of open jobs that have ended (their priorities)."""
        ix = self.index
        for queue, job_id in ix.ended:
            index = ix.queues.get(queue)
            if index is not None:
                index.ready.forget(job_id)
        ix.ended.clear()

    def _token_due(self) -> float | None:
        """When a rate-limited queue with work gets its next token (while workers wait)."""
        ix = self.index
        if not ix.gate.buckets or not ix.a_slot_is_free():
            return None
        return ix.gate.next_token([q for q, i in ix.queues.items() if i.ready])

    def worker_message(self, identity: bytes, body: FromWorker, now: float) -> bool:
        """Act on one message of a worker; False when it is one that only a known worker
        may send and its sender is unknown (dropped)."""
        workers, answers = self.workers_part, self.answers
        if isinstance(body, Hello):
            self.workers_part.hello(identity, body, now)
            return True
        worker = workers.worker_for(identity, now)
        # Answers and checkpoints count whoever sends them (a worker back after a restart
        # may send them before its hello): the attempt number fences them, and the
        # confirmation goes back to the sender.
        if isinstance(body, Done):
            answers.done(worker, body, now, identity)
        elif isinstance(body, Failed):
            answers.failed(worker, body, now, identity)
        elif isinstance(body, Checkpoint):
            answers.checkpoint(worker, body, now, identity)
        elif isinstance(body, Park):
            self.graph.parks.park(worker, body, now, identity)
        elif worker is None:
            return False
        elif isinstance(body, Heartbeat):
            workers.heartbeat(worker, body, now)
        elif isinstance(body, Progress):
            answers.progress(worker, body, now)
        elif isinstance(body, Log):
            self.job_log(body)
        elif isinstance(body, Bye):
            workers.forget(worker, "said goodbye")
        return True

    def job_log(self, body: Log) -> None:
        """A piece of a running attempt's own log: written by the log writer's thread (a
        piece of an attempt that is no longer claimed is dropped and counted)."""
        index = self.index.queues.get(body.queue)
        lease = index.claimed.get(body.id) if index else None
        if lease is None or lease.attempt != body.attempt:
            self.log_writer.counts["stale"] = self.log_writer.counts.get("stale", 0) + 1
            return
        self.log_writer.add(Piece(body.queue, body.id, body.attempt, body.offset, body.text))

    def _txn(self) -> Txn:
        return self.index.txn

    # -- what the index holds --------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.index.store

    @property
    def settings(self) -> Settings:
        return self.index.settings

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def queues(self) -> dict[str, QueueIndex]:
        return self.index.queues

    @property
    def workers(self) -> dict[str, WorkerInfo]:
        return self.index.workers

    @property
    def counters(self) -> dict[str, int]:
        return self.index.counters

    @property
    def txn(self) -> Txn:
        return self.index.txn

    @txn.setter
    def txn(self, txn: Txn) -> None:
        self.index.txn = txn

    @property
    def outbox(self) -> list[tuple[bytes, bytes, Body]]:
        return self.index.outbox

    @outbox.setter
    def outbox(self, outbox: list[tuple[bytes, bytes, Body]]) -> None:
        self.index.outbox = outbox

    @property
    def ended(self) -> list[tuple[str, str]]:
        return self.index.ended

    @property
    def dispatching(self) -> bool:
        return self.index.dispatching

    @dispatching.setter
    def dispatching(self, value: bool) -> None:
        self.index.dispatching = value

    # -- recovery --------------------------------------------------------------------------

    def recover(self, now: float) -> list[recovery.Finding]:
        """Rebuild the index from the store, resolving what a crash left behind.

        Jobs found in two folders are resolved by the two-state rule, stale tmp/ leftovers
        removed, and claimed jobs get a fresh lease for the attempt they were running.
        """
        findings: list[recovery.Finding] = []
        for name in self.begin_recovery():
            findings += self.recover_queue(name, now, alone=False)
        self.graph.settle(now)  # batches that completed while no daemon was watching
        self.scheduler.start(now)  # what the schedules missed while no daemon ran
        return findings

    def begin_recovery(self) -> list[str]:
        """Forget the index and read the queues' controls; return the queues to recover
        (several daemons on one root: only those this one leads)."""
        ix = self.index
        ix.queues.clear()
        self.open_jobs.clear()
        self.controls.recover()  # paused files and limits, before anything is dispatched
        return [name for name in ix.store.queues() if ix.leads(name)]

    def recover_queue(self, name: str, now: float, alone: bool = True
                      ) -> list[recovery.Finding]:
        """Rebuild the index of one queue from the store (see :meth:`recover`), listing it
        here and now; a queue this daemon begins to lead is recovered ``alone`` (then its
        schedules are planned too). The daemon lists in a thread instead, serving meanwhile
        (:mod:`~ckptd.daemon.engine.indexing`), through the same steps."""
        ix = self.index
        store = ix.store
        claimed = store.ids(name, State.CLAIMED)
        index = self.indexing.begin(name, claimed, now, adoption_grace(ix.settings, name))
        findings = recovery.clean_leftovers(store, name, now, ix.settings.tmp_max_age,
                                            repair=True)
        listed = list_pending(store, name, index.ready.clock())
        for level, runs in listed.items():
            self.indexing.pending(ListedPending(name, level, runs), now)
        self.indexing.pending(ListedPending(name, 0, [], release=True), now)
        ended = list_ended(store, name, [r for runs in listed.values() for r in runs],
                           list(index.claimed))
        ended.findings = findings + ended.findings
        self.indexing.ended(ended, now)
        if alone and any(schedule.queue == name for schedule in ix.settings.schedules.values()):
            self.scheduler.start(now)  # a queue taken over: plan what its schedules missed
        return ended.findings

    def drop_queue(self, name: str) -> None:
        """Forget one queue (this daemon stopped leading it; its new leader recovers it)."""
        self.index.drop_queue(name)
        self.flows.drop(name)
        self.graph.drop(name)

    def resync(self, queue: str, job_id: str, now: float) -> None:
        """Bring the index in line with the folders for one job whose move found it already
        in the target folder: resolve the copies by the two-state rule, then index the one
        kept (pending again after a moment, or claimed with a fresh lease)."""
        ix = self.index
        index = ix.queue(queue)
        priority, key = index.ready.priority(job_id), index.ready.key_of(job_id)
        states = ix.store.find(queue, job_id, priority, key)
        winner = states[0] if states else None
        if len(states) > 1:
            winner, finding = recovery.resolve_duplicate(ix.store, queue, job_id, states,
                                                         repair=True, priority=priority,
                                                         key=key)
            log.warning("a job was in two folders: %s", finding.line())
        was_pending = job_id in index.pending
        index.pending.discard(job_id)
        index.delayed_at.pop(job_id, None)
        lease = index.claimed.get(job_id)
        if lease is not None:
            ix.end_lease(index, lease)
        if winner is State.PENDING:
            index.pending.add(job_id)
            index.ready.note(job_id, priority)
            index.ready.note_key(job_id, key)
            ix.delay(index, job_id, now + RESYNC_DELAY)
        elif winner is State.CLAIMED:
            self.adopt_claimed(index, job_id, now)
        elif winner in (State.DONE, State.FAILED) and (lease is not None or was_pending):
            # The job had ended before a crash could say so (its move was made, its callback
            # lost): the jobs that wait on it and its batch learn it now, or never.
            self.flows.ended(queue, job_id, None, winner, now)

    def reset(self) -> None:
        """Forget the index (this daemon stopped leading; recovery rebuilds it later)."""
        self.index.clear()
        self.flows.clear()
        self.graph.clear()
        self.index.gate.clear()
        self.open_jobs.clear()
        self.creating.clear()
        self.scheduler.clear()

    def adopt_claimed(self, index: QueueIndex, job_id: str, now: float, *,
                      strict: bool = False, duration: float | None = None) -> None:
        """Give a job found in claimed/ a lease for the attempt it was running.

        With ``strict`` (recovery) a store error is raised, so that no claimed job is left
        without a lease; otherwise it is logged and the job adopted at a later listing.
        ``duration`` shortens the lease (recovery: until the workers had time to say what
        they still run).
        """
        ix = self.index
        try:
            job = decode_job(ix.store.read(index.name, State.CLAIMED, job_id),
                              index.name, job_id)
        except JobNotFound:
            return
        except MalformedJob as exc:
            ix.quarantine(index, State.CLAIMED, job_id, str(exc))
            return
        except StoreError as exc:
            if strict:
                raise
            ix.counters["store_errors"] += 1
            log.warning("cannot read claimed job %s/%s (%s); adopting it later", index.name,
                        job_id, exc)
            return
        key = key_of_job(job)
        ix.lease(index, job_id, jobs.running_attempt(job), None, now, claimed_at=now,
                 duration=duration, key=key)
        index.ready.note(job_id, job.get("priority"))  # if it comes back, in its line
        index.ready.note_key(job_id, key)

    # -- producers -------------------------------------------------------------------------

    def submit(self, body: Body, now: float, reply: Callable[[Body | CkptdError], None]) -> None:
        """Create a job from a control ``submit`` body; ``reply`` gets the answer once the
        job is durable (or the error)."""
        ix = self.index
        queue = body["queue"]
        priority = body.get("priority")
        try:
            if priority is not None:
                check_priority(priority)
            body = self.open_jobs.resolve(ix.settings, ix.queue(queue), body, now)
            key = job_key(body.get("key"), body.get("payload"), ix.settings.queue(queue).key)
        except (CkptdError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        if body.get("debounce_of"):
            self.debounce.replace(body, now, reply, lambda again: self.submit(again, now, reply))
            return
        job_id = body.get("id")
        if_exists = body.get("if_exists") or "error"
        if if_exists not in ("error", "return"):
            reply(CkptdError("if_exists must be 'error' or 'return'"))
            return
        fresh = bool(body.get("fresh"))
        if job_id is not None:
            if self.creating.join(queue, job_id, if_exists, reply):
                # Sent again while its first send is being stored: answered with its outcome
                if body.get("unique"):
                    self.open_jobs.hit(queue)  # it found its payload's job
                return
            index = ix.queues.get(queue)
            state = (State.PENDING.value if index and job_id in index.pending else
                     State.CLAIMED.value if index and job_id in index.claimed else
                     None if fresh else self.creating.found_ended(queue, job_id)
                     if self.looks_in_create else ix.where(queue, job_id))
            if state is not None:
                if body.get("unique"):
                    self.open_jobs.hit(queue)
                reply(answer(queue, job_id, if_exists, state))
                return
        try:
            after = self.graph.parents(queue, body) if body.get("after") else None
            job, ops = prepare_submit(ix.settings, queue, body.get("payload"), now,
                                      job_id=job_id, max_attempts=body.get("max_attempts"),
                                      delay=body.get("delay"), batch=body.get("batch"),
                                      fresh=fresh, time_limit=body.get("time_limit"),
                                      priority=priority, key=key, decoded=True,
                                      meta=body.get("meta"), after=after,
                                      on_parent_failure=body.get("on_parent_failure"))
        except (CkptdError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        index = ix.queue(queue)
        new_id = job["id"]
        not_before = now + body["delay"] if body.get("delay") else None
        batch = body.get("batch")
        # Reserve the id now so that a second submit of it in the same round is refused.
        reserved = index.waiting if after else index.pending
        reserved.add(new_id)
        index.added_since_scan.add(new_id)

        def created(outcome: Outcome) -> None:
            self.creating.end(queue, new_id, outcome)
            made = State.WAITING.value if after else State.PENDING.value
            again = isinstance(outcome, JobExists) and outcome.state == made
            if not after and (outcome is None or (again and ix.queues.get(queue) is index)):
                # Made now, or by an earlier send whose answer was lost: pending either way.
                index.ready.note(new_id, priority)
                index.ready.note_key(new_id, key or "")
                ix.make_ready(index, new_id, not_before)
            if outcome is None:
                index.counters["submitted"] += 1
                if batch is not None:
                    index.metrics.submitted(batch, now)
                self.flows.tracker.joined(queue, new_id)
                if after:
                    self.graph.waits.register(queue, new_id, job, now)
                    reply({"id": new_id, "created": True, "state": "waiting"})
                    return
                reply({"id": new_id, "created": True, "state": "pending"})
                return
            if not again:
                reserved.discard(new_id)
            if isinstance(outcome, JobExists) and if_exists == "return":
                if body.get("unique"):
                    self.open_jobs.hit(queue)
                reply({"id": new_id, "created": False, "state": outcome.state or "pending"})
            else:
                reply(outcome)

        self.creating.begin(queue, new_id)
        for op in ops[:-1]:
            ix.txn.add(op)
        ix.txn.add(ops[-1], created)

    def pending_appeared(self, queue: str, job_id: str, priority: int = 0, key: str = ""
                         ) -> None:
        """A file ``pending/<id>.json`` (or ``<id>,p<N>.json``: ``priority``; or
        ``<id>,k<key>.json``: ``key``) appeared that the daemon did not put there."""
        if (queue, job_id) in self.index.in_flight:
            return  # the daemon's own, not applied yet: its callback says what it is
        index = self.index.queue(queue)
        if job_id in index.pending or job_id in index.claimed:
            return
        index.pending.add(job_id)
        index.added_since_scan.add(job_id)
        index.ready.note(job_id, priority)
        index.ready.note_key(job_id, key)
        index.ready.append(job_id)
        index.counters["submitted"] += 1  # written there by a client on this host, or by hand
        self.open_jobs.seen(queue, job_id)
        self.flows.appeared(queue, job_id)

    def pending_vanished(self, queue: str, job_id: str) -> None:
        """``pending/<id>.json`` was removed by someone else: the job is cancelled."""
        index = self.index.queues.get(queue)
        if index is not None and job_id in index.pending:
            index.pending.discard(job_id)
            index.delayed_at.pop(job_id, None)
            index.ready.forget(job_id)
            index.ready.left += 1  # its line's entry goes at the next rescan
            log.info("job removed from pending/ by hand", extra={"fields": {
                "queue": queue, "id": job_id, "from": "pending", "to": "removed"}})
            self.flows.removed(queue, job_id, time.time())

    def reconcile_pending(self, queue: str, listed: dict[str, tuple[int, str]]) -> None:
        """Bring the pending index in line with a listing of ``pending/`` (the rescan):
        ``listed`` holds each id with the priority and key its name carries.

        Ids added to the index since the listing began are kept even if the listing
        missed them; ids listed but already claimed are ignored; ids whose create is in
        flight are left to it (a create that finds the job ended removes the copy it made,
        which the listing may have seen).
        """
        index = self.index.queue(queue)
        # Jobs a group in flight moves (on their way to pending/, or away) are left to it,
        # and so are ids whose create is in flight.
        in_flight = {i for q, i in self.index.in_flight if q == queue}
        creating = self.creating
        # In the order of their ids (their creation), not the folder's (tmpfs: newest first).
        for job_id in sorted(job_id for job_id in listed if job_id not in index.pending
                             and job_id not in index.claimed
                             and (queue, job_id) not in creating):
            priority, key = listed[job_id]
            self.pending_appeared(queue, job_id, priority, key)
        for job_id in list(index.pending):
            if job_id not in listed and job_id not in in_flight \
                    and job_id not in index.added_since_scan \
                    and (queue, job_id) not in creating:  # its create answers for it
                index.pending.discard(job_id)
                index.delayed_at.pop(job_id, None)
                index.ready.forget(job_id)
                index.ready.left += 1
        index.added_since_scan.clear()
        if index.ready.left:  # ids that left pending/ while in a line: out of the counts
            index.ready.sweep(lambda i: i in index.pending or i in in_flight)
