"""What operators ask of a running daemon: status, a claimed job's lease, retry, cancel,
purge.

Built on the engine (composed, not mixed in): each action is planned by the same function
as the store command of the CLI (:mod:`ckptd.store.plans`), then carried out here: the plan's
ops change the index and are queued in the engine's transaction like any other event. Reads
never change the index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ckptd.codec import decode_job
from ckptd.core import jobs
from ckptd.core.answer_types import LeaseInfo
from ckptd.core.errors import (
    CkptdError,
    JobNotFound,
    QueueNotFound,
)
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.engine.bulk import SLICE, Slices, Tally
from ckptd.daemon.engine.controls_view import controls_view
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.figures import queue_figures
from ckptd.store.admin import purge_found
from ckptd.store.base import Move, Outcome, Store
from ckptd.store.plans import (
    Attempt,
    cannot_cancel,
    check_purge,
    plan_cancel,
    plan_purge,
    plan_retry,
    purge_slices,
)
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

Reply = Callable[[Body | CkptdError], None]


class Operators:
    """The operators' requests to one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.slices = Slices()  # retries and purges of many jobs, a slice per turn

    @property
    def busy(self) -> bool:
        """True while a sliced action has work left (the loop should not sleep)."""
        return self.slices.busy

    def tick(self, now: float) -> None:
        """One slice of the sliced actions (the loop calls it every turn)."""
        self.slices.run()

    def known_queue(self, queue: str) -> None:
        """Raise QueueNotFound unless the daemon (or its store) has ``queue``."""
        engine = self.engine
        if queue not in engine.queues and queue not in engine.store.queues():
            raise QueueNotFound.among(queue, engine.store.url, sorted(engine.queues))

    def status(self, queue: str | None, now: float) -> Body:
        """Counts per state and recent figures, per queue, from the index (changes nothing)."""
        engine = self.engine
        names = [queue] if queue else sorted(engine.queues)
        result: dict[str, object] = {}
        for name in names:
            index = engine.queues.get(name)
            if index is None:
                raise QueueNotFound.among(name, engine.store.url, sorted(engine.queues))
            # Events since the daemon started, then the figures of the folders over them:
            # "failed" is what failed/ holds; failures since the start are "failures".
            counts: dict[str, object] = dict(index.counters)
            counts["failures"] = counts.pop("failed", 0)
            counts.update(index.counts())
            counts.update(queue_figures(index, engine.workers.values(), engine.store, now))
            counts["batches"] = engine.flows.status(name, now)
            counts.update(self.controls_view(name, now))
            result[name] = counts
        return {"queues": result, "root": engine.store.url, "source": "daemon",
                "workers": len(engine.workers), "counters": dict(engine.counters),
                "schedules": engine.scheduler.view(now)}

    # -- operator controls -----------------------------------------------------------------

    def controls_view(self, queue: str, now: float, job_id: str | None = None
                      ) -> dict[str, object]:
        """What status (and, for one job, explain) shows of a queue's controls."""
        return controls_view(self.engine, queue, job_id)

    def control_request(self, kind: str, body: Body, now: float) -> Body:
        """pause, resume, limit (the queue's control files) and schedules."""
        engine = self.engine
        if kind == "schedules":
            return {"schedules": engine.scheduler.view(now), "source": "daemon"}
        queue = body["queue"]
        if kind == "pause":
            paused = engine.controls.pause(queue, body.get("reason") or "")
            engine.index.queue(queue)
            return dict(paused)
        if kind == "resume":
            return dict(engine.controls.resume(queue))
        changes: dict[str, object] = {k: body[k] for k in ("max_running", "rate", "weight")
                                      if k in body}
        return dict(engine.controls.limit(queue, changes, bool(body.get("reset")),
                                          body.get("key")))

    def dispatch_order(self, queue: str, rows: list[tuple[State, str]]
                       ) -> list[tuple[State, str]]:
        """``ls`` rows with the pending ones in the order the daemon will dispatch them:
        due jobs by priority (FIFO within one), then delayed jobs by due time."""
        index = self.engine.queues.get(queue)
        if index is None or not any(state is State.PENDING for state, _ in rows):
            return rows
        delayed = sorted((due, i) for i, due in index.delayed_at.items())
        rank: dict[str, int] = {}
        for job_id in (*index.ready, *(i for _, i in delayed)):
            rank.setdefault(job_id, len(rank))
        pending = sorted((row for row in rows if row[0] is State.PENDING),
                         key=lambda row: rank.get(row[1], len(rank)))
        others = [row for row in rows if row[0] is not State.PENDING]
        return pending + others

    def lease_info(self, queue: str, job_id: str, now: float) -> LeaseInfo | None:
        """What the daemon knows about a claimed job beyond its file, or None."""
        index = self.engine.queues.get(queue)
        lease = index.claimed.get(job_id) if index else None
        if lease is None:
            return None
        settings = self.engine.settings
        return {"attempt": lease.attempt, "worker": lease.worker,
                "claimed_at": utc_iso(lease.claimed_at),
                "age_s": round(now - lease.claimed_at, 3),
                "lease_s": settings.lease_for(queue),
                "time_limit_s": settings.time_limit_for(queue),
                "heartbeat_s": settings.heartbeat,
                "heartbeat_age_s": (round(now - lease.heartbeat_at, 3)
                                    if lease.heartbeat_at else None),
                "checkpoint_age_s": (round(now - lease.checkpoint_at, 3)
                                     if lease.checkpoint_at else None),
                "closing": lease.closing,
                "expires_in_s": round(lease.deadline - now, 3),
                "last_heartbeat": utc_iso(lease.heartbeat_at) if lease.heartbeat_at else None,
                "last_checkpoint": (utc_iso(lease.checkpoint_at)
                                    if lease.checkpoint_at else None),
                "progress": lease.progress}

    def retry(self, queue: str, ids: list[str] | None, attempts: int | None,
              reply: Reply) -> None:
        """Move failed jobs back to pending (all when ``ids`` is None).

        A few named jobs are moved in this turn, all or none (one that is not failed is an
        error). Every failed job, or many named ones, are moved a slice per turn
        (:mod:`ckptd.daemon.engine.bulk`): dispatch goes on meanwhile, and a job that is no
        longer failed when its turn comes is skipped and counted.
        """
        engine = self.engine
        try:
            self.known_queue(queue)
        except CkptdError as exc:
            reply(exc)
            return
        index = engine.index.queue(queue)
        if ids is not None and len(ids) <= SLICE:
            self._retry_now(queue, ids, attempts, reply)
            return
        names = engine.store.ids(queue, State.FAILED) if ids is None else ids
        done: list[str] = []
        skipped = [0]
        tally = Tally(reply, lambda: {"ids": done, "skipped": skipped[0]})

        def steps() -> Iterator[None]:
            for job_id in names:
                job = _failed_file(engine.store, queue, job_id)
                if job is None:  # no longer failed: skipped, and counted
                    skipped[0] += 1
                    yield
                    continue
                move = plan_retry(engine.settings, queue, job_id, job, attempts=attempts)
                index.ready.note(job_id, move.priority)
                index.ready.note_key(job_id, move.key)
                engine.txn.add(move, tally.track(self._retried(queue, job_id, done)))
                yield

        self.slices.add(steps(), tally)

    def _retried(self, queue: str, job_id: str, done: list[str]) -> Callable[[Outcome], None]:
        """What a retry's move does to the index once it is applied."""
        engine = self.engine
        index = engine.index.queue(queue)

        def moved(outcome: Outcome) -> None:
            if outcome is None:
                done.append(job_id)
                engine.flows.reopened(queue, job_id)
                index.failed = max(0, index.failed - 1)
                index.pending.add(job_id)
                index.added_since_scan.add(job_id)
                index.ready.append(job_id)
                log.info("retry", extra={"fields": {"queue": queue, "id": job_id,
                                                    "from": "failed", "to": "pending"}})
        return moved

    def _retry_now(self, queue: str, ids: list[str], attempts: int | None,
                   reply: Reply) -> None:
        engine = self.engine
        store = engine.store
        moves: list[Move] = []
        for job_id in ids:
            try:
                job = _failed_file(store, queue, job_id)
                found = None if job is not None else engine.index.where(queue, job_id)
                moves.append(plan_retry(engine.settings, queue, job_id, job,
                                        attempts=attempts, found=found))
            except CkptdError as exc:
                reply(exc)
                return
        if not moves:
            reply({"ids": []})
            return
        done: list[str] = []
        tally = Tally(reply, lambda: {"ids": done})
        index = engine.index.queue(queue)
        for move in moves:  # all or none: noted only once every one is planned
            index.ready.note(move.job_id, move.priority)
            index.ready.note_key(move.job_id, move.key)
            engine.txn.add(move, tally.track(self._retried(queue, move.job_id, done)))
        tally.finish()

    def cancel(self, queue: str, job_id: str, now: float, reply: Reply,
               by: str = "an operator") -> None:
        """Cancel a job: remove it from pending, or fail it if a worker has it.

        The worker running a claimed job is told at once (a ``cancel`` message, sent with the
        turn's messages, not after the move to failed/ is durable: a checkpoint its handler
        sends meanwhile would be refused as "lease lost", and the handler would not know
        why): its handler sees ``ckptd.Cancelled`` at its next checkpoint or progress, and is
        stopped by force after the worker's grace period. Should the move not become durable
        (a crash), the handler's answer, failed for good, moves the job to failed/ anyway.
        """
        engine = self.engine
        index = engine.index.queue(queue)
        if job_id in index.pending:
            plan = plan_cancel(queue, job_id, State.PENDING, now=now, by=by,
                               priority=index.ready.priority(job_id),
                               key=index.ready.key_of(job_id))
            index.pending.discard(job_id)
            index.delayed_at.pop(job_id, None)
            index.ready.left += 1  # its line's entry goes at the next rescan

            def removed(outcome: Outcome) -> None:
                reply({"was": plan.was.value} if outcome is None else outcome)
                if outcome is None:
                    index.ready.forget(job_id)
                    log.info("cancel", extra={"fields": {"queue": queue, "id": job_id,
                                                         "from": "pending", "to": "removed",
                                                         "by": by}})
                    engine.flows.removed(queue, job_id, now)  # an end for its dependents

            assert plan.remove is not None
            engine.txn.add(plan.remove, removed)
            return
        if job_id in index.waiting:
            plan = plan_cancel(queue, job_id, State.WAITING, now=now, by=by)
            if plan.remove is not None and engine.graph.cancel(plan.remove, now, reply):
                return
        lease = index.claimed.get(job_id)
        if lease is not None and not lease.closing:
            plan = plan_cancel(queue, job_id, State.CLAIMED, now=now, by=by,
                               attempt=Attempt(lease.attempt, lease.claimed_at, lease.worker))
            worker = engine.workers.get(lease.worker) if lease.worker else None
            if worker is not None:
                engine.outbox.append((worker.identity, b"cancel", {
                    "queue": queue, "id": job_id, "attempt": lease.attempt, "by": by}))
            engine.answers.end_attempt(lease, None, now, may_retry=False, delay=None,
                                       outcome="cancelled", edit=plan.edit)
            reply({"was": plan.was.value})
            return
        # Not open here (or already ending): refused, saying where it is.
        where = engine.index.where(queue, job_id)
        reply(cannot_cancel(queue, job_id, State(where) if where is not None else None))

    def purge(self, queue: str, state: State, older_than: float | None, now: float,
              reply: Reply, ids: list[str] | None = None) -> None:
        """Remove done or failed jobs (those of ``ids`` only, when given), a slice per turn;
        reply with how many."""
        engine = self.engine
        try:
            check_purge(state)  # first, as on a store: a pending "purge" is a cancel
            self.known_queue(queue)
        except CkptdError as exc:
            reply(exc)
            return
        index = engine.index.queue(queue)
        store = engine.store
        names = store.ids(queue, state) if ids is None else ids
        count = [0]
        tally = Tally(reply, lambda: {"count": count[0]})

        def removed(outcome: Outcome) -> None:
            if outcome is None:
                count[0] += 1
                if state is State.DONE:
                    index.done = max(0, index.done - 1)
                else:
                    index.failed = max(0, index.failed - 1)

        def steps() -> Iterator[None]:
            for chunk in purge_slices(names):  # a slice per turn: dispatch goes on
                if ids is not None:  # named jobs: only those that are there
                    chunk = [i for i in chunk if store.exists(queue, state, i)]
                doomed = plan_purge(queue, state,
                                    purge_found(store, queue, state, chunk, older_than),
                                    older_than=older_than, now=now)
                for op in doomed:
                    index.checkpointed.discard(op.job_id)
                    engine.creating.forget(queue, op.job_id)
                    engine.txn.add(op, tally.track(removed))
                if doomed:  # their own logs go too
                    engine.log_writer.remove(queue, [op.job_id for op in doomed])
                yield

        self.slices.add(steps(), tally)


def _failed_file(store: Store, queue: str, job_id: str) -> jobs.Job | None:
    """A job's file in ``failed/``, or None when it is not there."""
    try:
        return decode_job(store.read(queue, State.FAILED, job_id), queue, job_id)
    except JobNotFound:
        return None
