"""What operators ask of a running daemon: status, a claimed job's lease, retry, cancel,
purge. A part of :class:`ckptd.engine.Engine` (a mixin), kept apart from the rules of
dispatch; each action changes the index and queues its store ops like any other event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ckptd.core import jobs
from ckptd.core.errors import CkptdError, JobNotFound, TransitionError
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.metrics import queue_figures
from ckptd.store.admin import purgeable, retried
from ckptd.store.base import Delete, Move, Op, Outcome
from ckptd.wire.protocol import Body

if TYPE_CHECKING:
    from ckptd.core.config import Settings
    from ckptd.daemon.engine import Callback, Lease, QueueIndex, Txn, WorkerInfo
    from ckptd.daemon.flows import Flows
    from ckptd.store.base import Store

log = logging.getLogger("ckptd.engine")  # these moves are logged with the engine's


class OperatorActions:
    """The operators' requests; mixed into :class:`ckptd.engine.Engine`."""

    if TYPE_CHECKING:  # provided by Engine
        store: Store
        settings: Settings
        queues: dict[str, QueueIndex]
        workers: dict[str, WorkerInfo]
        counters: dict[str, int]
        txn: Txn
        flows: Flows

        def queue(self, name: str) -> QueueIndex: ...
        def where(self, queue: str, job_id: str) -> str | None: ...
        def _attempt_failed(self, lease: Lease, error: dict[str, Any], now: float, *,
                            may_retry: bool, delay: float | None, outcome: str) -> None: ...

    def status(self, queue: str | None, now: float) -> Body:
        """Counts per state and recent figures, per queue, from the index."""
        names = [queue] if queue else sorted(self.queues)
        result: dict[str, Any] = {}
        for name in names:
            index = self.queues.get(name)
            if index is None:
                raise JobNotFound(f"no queue {name!r}")
            counts: dict[str, Any] = index.counts()
            counts.update(index.counters)
            counts.update(queue_figures(index, self.workers.values(), self.store, now))  # no scans
            batch_progress = self.flows.status(name, now)
            if batch_progress:
                counts["batches"] = batch_progress
            result[name] = counts
        return {"queues": result, "root": self.store.url, "source": "daemon",
                "workers": len(self.workers), "counters": dict(self.counters)}

    def lease_info(self, queue: str, job_id: str, now: float) -> dict[str, Any] | None:
        """What the daemon knows about a claimed job beyond its file, or None."""
        index = self.queues.get(queue)
        lease = index.claimed.get(job_id) if index else None
        if lease is None:
            return None
        return {"attempt": lease.attempt, "worker": lease.worker,
                "claimed_at": utc_iso(lease.claimed_at),
                "age_s": round(now - lease.claimed_at, 3),
                "lease_s": self.settings.lease_for(queue),
                "heartbeat_s": self.settings.heartbeat,
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
              reply: Callable[[Body | CkptdError], None]) -> None:
        """Move failed jobs back to pending (all when ``ids`` is None)."""
        index = self.queue(queue)
        names = self.store.ids(queue, State.FAILED) if ids is None else ids
        moves: list[tuple[str, bytes]] = []
        for job_id in names:
            try:
                job = jobs.decode(self.store.read(queue, State.FAILED, job_id), queue, job_id)
            except JobNotFound:
                where = self.where(queue, job_id)
                reply(JobNotFound(f"cannot retry {job_id!r}: only failed jobs can be retried ("
                                  f"{'it is ' + where if where else 'no such job'})"))
                return
            except CkptdError as exc:
                reply(exc)
                return
            moves.append((job_id, jobs.encode(retried(job, attempts, self.settings))))
        if not moves:
            reply({"ids": []})
            return
        done: list[str] = []

        def one(job_id: str, last: bool) -> Callback:
            def moved(outcome: Outcome) -> None:
                if outcome is None:
                    done.append(job_id)
                    self.flows.reopened(queue, job_id)
                    index.failed = max(0, index.failed - 1)
                    index.pending.add(job_id)
                    index.added_since_scan.add(job_id)
                    index.ready.append(job_id)
                    log.info("retry", extra={"fields": {"queue": queue, "id": job_id,
                                                        "from": "failed", "to": "pending"}})
                if last:
                    reply({"ids": done})
            return moved

        for position, (job_id, data) in enumerate(moves):
            self.txn.add(Move(queue, job_id, State.FAILED, State.PENDING, data),
                         one(job_id, position == len(moves) - 1))

    def cancel(self, queue: str, job_id: str, now: float,
               reply: Callable[[Body | CkptdError], None]) -> None:
        """Cancel a job: remove it from pending, or fail it if a worker has it."""
        index = self.queue(queue)
        if job_id in index.pending:
            index.pending.discard(job_id)
            index.delayed_at.pop(job_id, None)

            def removed(outcome: Outcome) -> None:
                reply({"was": "pending"} if outcome is None else outcome)
                if outcome is None:
                    log.info("cancel", extra={"fields": {"queue": queue, "id": job_id,
                                                         "from": "pending", "to": "removed"}})

            self.txn.add(Delete(queue, State.PENDING, job_id), removed)
            return
        lease = index.claimed.get(job_id)
        if lease is not None and not lease.closing:
            error = jobs.error_record("cancelled by an operator", "Cancelled", None,
                                      lease.attempt, now, lease.worker)
            self._attempt_failed(lease, error, now, may_retry=False, delay=None,
                                 outcome="cancelled")
            reply({"was": "claimed"})
            return
        state = self.where(queue, job_id)
        if state is None:
            reply(JobNotFound(f"no job {job_id!r} in queue {queue!r}"))
        else:
            reply(TransitionError(f"job {job_id!r} is already {state}; use "
                                  f"'ckptd purge {queue} {state}' to remove it"))

    def purge(self, queue: str, state: State, older_than: float | None, now: float) -> int:
        """Remove done or failed jobs; return how many (done synchronously, in groups)."""
        index = self.queue(queue)
        count = 0
        batch: list[Op] = []
        for job_id in purgeable(self.store, queue, state, older_than, now):
            index.checkpointed.discard(job_id)
            batch.append(Delete(queue, state, job_id))
            if len(batch) >= 1000:
                count += self._apply_now(batch)
                batch = []
        count += self._apply_now(batch)
        if state is State.DONE:
            index.done = max(0, index.done - count)
        else:
            index.failed = max(0, index.failed - count)
        return count

    def _apply_now(self, ops: list[Op]) -> int:
        outcomes = self.store.apply(ops) if ops else []
        return sum(1 for o in outcomes if o is None)

    def recount(self) -> None:
        """Count done/ and failed/ again (operators may purge or move files by hand)."""
        for name in self.store.queues():
            index = self.queue(name)
            index.done = self.store.count(name, State.DONE)
            index.failed = self.store.count(name, State.FAILED)
