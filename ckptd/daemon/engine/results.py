"""Answers: what workers report (done, failed, checkpoints, progress) and leases that run out.

Every answer carries its attempt number, the fencing token: an answer for an attempt that is
no longer claimed is dropped and counted (:meth:`Answers.live_lease`). An accepted answer
closes the lease, edits the job file (:mod:`ckptd.core.edits`) and queues its move; the
index changes only once the move is applied.

Workers keep each answer until the daemon confirms it (``ack``, and ``saved`` for a
checkpoint) and send it again after a reconnect, so an answer that died with a daemon is not
lost. An accepted answer is confirmed once its move is durable; a stale one at once (its
attempt has ended: there is nothing left to do, and the worker may stop sending it); one
whose attempt is being closed (its move in flight) is not confirmed, so the worker sends it
again if that move fails. A checkpoint whose seq was already saved is confirmed without
writing it again.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable

from ckptd.codec import dumps, dumps_decoded, encode_job
from ckptd.core import crashpoints, edits, jobs
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound
from ckptd.core.states import State
from ckptd.core.timefmt import time_or_none, utc_iso
from ckptd.daemon.engine.flows import Flows
from ckptd.daemon.engine.index import REFILL_FLOOR, Index, Lease, WorkerInfo
from ckptd.daemon.telemetry.metrics import failure_note
from ckptd.store.base import DeleteCheckpoint, Move, Outcome, PutBlob, PutCheckpoint
from ckptd.wire.messages import Answer, AttemptMessage, Checkpoint, Done, Failed, Progress

log = logging.getLogger(__name__)


def backoff_delay(attempts: int, settings: Settings, rand: Callable[[], float]) -> float:
    """Delay before retrying a job that has used ``attempts`` attempts.

    Exponential (base, 2x base, 4x base, ...), capped, and spread by up to ``jitter`` of
    itself downwards so that jobs failing together do not come back together.
    """
    delay = min(settings.backoff_cap, settings.backoff_base * 2 ** max(0, attempts - 1))
    return float(delay * (1.0 - settings.backoff_jitter * rand()))


PREFETCH_SHORT = 0.005  # seconds: jobs shorter than this get credits beyond the slots
PREFETCH_MAX = 64


def extra_credits(job_seconds: float, slots: int, refill: float = REFILL_FLOOR) -> int:
    """Credits beyond a worker's slots for jobs that take ``job_seconds`` each.

    A job that takes less than the time a freed slot waits for its next job (``refill``:
    the trip to the daemon and back and the daemon's store flushes in between) would leave
    its slot idle: for those, enough extra jobs wait at the worker to cover that time (at
    most :data:`PREFETCH_MAX`), so the work queued at a slot stays about ``refill`` long.
    Jobs longer than :data:`PREFETCH_SHORT` get none, so no job waits behind a busy worker
    while another is free; the first jobs of a worker get none either (nothing is known yet).
    """
    if job_seconds >= PREFETCH_SHORT:
        return 0
    return min(PREFETCH_MAX, 2 * slots + int(slots * refill / max(job_seconds, 1e-5)))


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


class Answers:
    """The answers part of the engine."""

    def __init__(self, index: Index, flows: Flows,
                 resync: Callable[[str, str, float], None]) -> None:
        self.ix = index
        self.flows = flows
        self.resync = resync  # a job found where it was to be moved: look at the folders

    def live_lease(self, worker: WorkerInfo | None, body: AttemptMessage) -> Lease | None:
        """Return the lease an answer is for, or None (and count it) when it is stale."""
        ix = self.ix
        index = ix.queues.get(body.queue)
        lease = index.claimed.get(body.id) if index else None
        if lease is None or lease.attempt != body.attempt or lease.closing:
            ix.counters["stale_answers"] += 1
            if index is not None:
                index.counters["stale_answers"] += 1
            log.info("dropped a late answer", extra={"fields": {
                "queue": body.queue, "id": body.id, "attempt": body.attempt,
                "current": lease.attempt if lease else None,
                "worker": worker.id if worker else None}})
            return None
        return lease

    def _stale(self, identity: bytes | None, worker: WorkerInfo | None, body: Answer) -> None:
        """Count a stale answer (:meth:`live_lease`) and confirm it unless its attempt is
        still being closed (then the move in flight decides)."""
        index = self.ix.queues.get(body.queue)
        lease = index.claimed.get(body.id) if index else None
        if lease is not None and lease.attempt == body.attempt and lease.closing:
            return
        self._ack(identity, body, stale=True)

    def _ack(self, identity: bytes | None, body: Answer, stale: bool = False) -> None:
        if identity is not None:
            self.ix.outbox.append((identity, b"ack", {
                "queue": body.queue, "id": body.id, "attempt": body.attempt, "stale": stale}))

    def _free_slot(self, worker: WorkerInfo | None, body: Answer, now: float) -> None:
        if worker is not None:
            worker.running.discard((body.queue, body.id))
            worker.credits = min(worker.most, worker.credits + 1)
            self.adapt(worker, now, body.took, self.ix.refill)

    @staticmethod
    def adapt(worker: WorkerInfo, now: float, took: float | None = None,
              refill: float = REFILL_FLOOR) -> None:
        """Grant a worker credits beyond its slots while its jobs are short, take them back
        when they are not (see :func:`extra_credits`).

        A job's length is what its handler took, as the worker reports it; from a worker
        that does not, the time between its answers per slot (which a starved worker
        inflates).
        """
        if worker.slots <= 0:
            return
        if took is None:
            if worker.answered_at is not None:
                took = (now - worker.answered_at) * worker.slots
            worker.answered_at = now
        if took is not None:
            worker.pace = took if worker.pace is None else 0.8 * worker.pace + 0.2 * took
            extra = extra_credits(worker.pace, worker.slots, refill)
            worker.credits += extra - worker.extra
            worker.extra = extra

    def answered(self, worker: WorkerInfo | None, body: Answer, now: float,
                 identity: bytes | None) -> tuple[Lease | None, bytes | None]:
        """The start of every answer that ends an attempt (done, failed, park): free the
        worker's slot and find the live lease, or count and confirm a stale answer (None);
        return it and whom to confirm to (``identity``, default: the worker's)."""
        if identity is None and worker is not None:
            identity = worker.identity
        self._free_slot(worker, body, now)
        lease = self.live_lease(worker, body)
        if lease is None:
            self._stale(identity, worker, body)
        return lease, identity

    def done(self, worker: WorkerInfo | None, body: Done, now: float,
             identity: bytes | None = None) -> None:
        """A worker finished a job: move it to done/ with its result, then confirm it to
        ``identity`` (default: the worker's)."""
        ix = self.ix
        lease, identity = self.answered(worker, body, now, identity)
        if lease is None:
            return
        job = ix.claimed_job(lease)
        if job is None:
            return
        lease.closing = True
        index = ix.queue(lease.queue)
        first_claim = _first_claim(lease, job)  # before this attempt joins the history
        created_at = (lease.created if lease.created is not None
                      else time_or_none(job.get("created")))
        batch = job.get("batch")
        result = body.result
        in_blob = bool(body.result_ref)
        result_ref = f"blobs/{lease.id}.result" if in_blob else None  # the worker stored it
        edits.finished(job, attempt=lease.attempt, claimed_at=lease.claimed_at, now=now,
                       worker=lease.worker or (worker.id if worker else None), result=result,
                       result_ref=result_ref)
        self.flows.handover(lease.queue, job, result, in_blob, now)  # before the move
        data = encode_job(job)
        threshold = ix.settings.blob_threshold
        if not in_blob and len(data) > threshold:
            # Only a big file can hold a result over the limit: measure the result alone.
            encoded = dumps(result)
            if len(encoded) > threshold:
                ix.txn.add(PutBlob(lease.queue, lease.id, "result", encoded))
                job["result"] = None
                job["result_ref"] = f"blobs/{lease.id}.result"
                data = encode_job(job)

        def moved(outcome: Outcome) -> None:
            if outcome is not None:
                self._move_failed(lease, outcome, now, lambda: self._ack(identity, body, True))
                return
            ix.end_lease(index, lease)
            ix.ended.append((lease.queue, lease.id))
            index.checkpointed.discard(lease.id)
            index.count_end(lease.id, State.DONE)
            self.flows.ended(lease.queue, lease.id, job, State.DONE, now)
            index.counters["succeeded"] += 1
            index.metrics.succeeded(now, None if created_at is None else max(0.0, now - created_at),
                                    max(0.0, now - first_claim),
                                    batch if isinstance(batch, str) else None)
            ix.log_move(lease, State.CLAIMED, State.DONE, now)
            self._ack(identity, body)

        # src_known: on a bucket, write done/ without looking in claimed/ first (2 requests
        # where there were 3: the most frequent move there is). The look is what keeps "a move
        # of a job that is not there changes nothing"; here it would guard nothing that
        # matters. The job is in claimed/: this daemon put it there, it is the only one that
        # moves jobs while it holds the queue's lease, and every write is fenced on that
        # lease. Kept and applied again after a store failure, the move without the look
        # completes where one with it would stop at "not found" after a first try whose
        # answer was lost. Only an operator's hand in claimed/ (not one of the operator's
        # actions: those are `cancel` and `retry`, or files in pending/ and failed/) can
        # take the file away meanwhile: the job then ends in done/ with its result (a local
        # store's rename would have refused). Retries and failures keep the look: they are
        # rare, and without it they would bring back a job somebody removed.
        ix.txn.add(Move(lease.queue, lease.id, State.CLAIMED, State.DONE, data,
                        src_known=True), moved)
        index.moving_to_end(lease.id, State.DONE)
        if lease.id in index.checkpointed:
            ix.txn.add(DeleteCheckpoint(lease.queue, lease.id))

    def failed(self, worker: WorkerInfo | None, body: Failed, now: float,
               identity: bytes | None = None) -> None:
        """A worker's attempt failed: retry later, or move the job to failed/; then confirm
        it to ``identity`` (default: the worker's).

        An attempt ``given_back`` by a stopping worker goes back to pending at once, without
        counting against the job's attempts (:func:`ckptd.core.edits.given_back`).
        """
        lease, identity = self.answered(worker, body, now, identity)
        if lease is None:
            return
        who = lease.worker or (worker.id if worker else None)
        error = jobs.error_record(body.error, body.type or "Error", body.traceback,
                                  lease.attempt, now, who)
        if body.log_tail:
            error["log_tail"] = body.log_tail  # the last lines of the attempt's own log

        def confirm() -> None:
            self._ack(identity, body)

        if body.given_back:
            def give_back(job: jobs.Job) -> jobs.Job:
                return edits.given_back(job, attempt=lease.attempt, claimed_at=lease.claimed_at,
                                        now=now, worker=who, reason=body.error)

            self.end_attempt(lease, error, now, may_retry=True, delay=0.0, outcome="given back",
                             edit=give_back, confirm=confirm, spare_attempt=True)
            return
        self.end_attempt(lease, error, now, may_retry=body.retry, delay=body.delay,
                         outcome="error", confirm=confirm)

    def end_attempt(self, lease: Lease, error: jobs.ErrorRecord | None, now: float, *,
                    may_retry: bool, delay: float | None, outcome: str,
                    edit: Callable[[jobs.Job], jobs.Job] | None = None,
                    confirm: Callable[[], None] | None = None,
                    spare_attempt: bool = False) -> None:
        """End a claimed job's attempt without success: back to pending (with a backoff, or
        ``delay``) while attempts are left and ``may_retry``, else to failed/.

        ``edit`` replaces the default edit of the file, which records ``error`` (a cancel
        records who did it: then ``error`` may be None);
        ``confirm`` runs once the move is durable; ``spare_attempt`` sends the job back to
        pending even when this was its last attempt (the edit gives it one more), at the
        head of its line: it was taken before the jobs that came after it.
        """
        ix = self.ix
        job = ix.claimed_job(lease)
        if job is None:
            return
        lease.closing = True
        index = ix.queue(lease.queue)
        retry = spare_attempt or edits.may_retry(job, lease.attempt, may_retry)
        not_before: float | None = None
        if retry:
            wait = backoff_delay(lease.attempt, ix.settings, ix.rand) if delay is None \
                else max(0.0, delay)
            not_before = now + wait
        if edit is not None:
            edit(job)
        else:
            assert error is not None, "an attempt ended by the default edit needs its error"
            edits.attempt_failed(job, attempt=lease.attempt, claimed_at=lease.claimed_at,
                                 now=now, error=error, outcome=outcome, retry_at=not_before)
        target = State.PENDING if not_before is not None else State.FAILED
        data = encode_job(job)

        def moved(outcome_: Outcome) -> None:
            if outcome_ is not None:
                self._move_failed(lease, outcome_, now, confirm)
                return
            ix.end_lease(index, lease)
            batch = job.get("batch")
            if not_before is not None:
                index.counters["retried"] += 1
                index.metrics.retried(batch if isinstance(batch, str) else None)
                index.pending.add(lease.id)
                if spare_attempt:  # given back unfinished: it runs again first, not last
                    index.ready.appendleft(lease.id)
                else:
                    ix.delay(index, lease.id, not_before)
            else:
                ix.ended.append((lease.queue, lease.id))
                self.flows.ended(lease.queue, lease.id, job, State.FAILED, now)
                index.count_end(lease.id, State.FAILED)
                index.counters["failed"] += 1
                index.metrics.failed(now, failure_note(job, now))
            ix.log_move(lease, State.CLAIMED, target, now,
                        error=str(job.get("last_error", {}).get("message", ""))[:200])
            if confirm is not None:
                confirm()

        move = Move(lease.queue, lease.id, State.CLAIMED, target, data,
                    priority=index.ready.prio.get(lease.id, 0), key=lease.key)
        if target is State.FAILED:
            index.moving_to_end(lease.id, State.FAILED)
        first = self.flows.failing(lease.queue, job, now) if target is State.FAILED else None
        if first is None:
            ix.txn.add(move, moved)
        else:  # the on_failure job first: a crash in between leaves this one claimed
            def then(_outcome: Outcome) -> None:
                crashpoints.reached("on_failure_created")  # crash tests: before the move
                ix.txn.add(move, moved)

            ix.txn.add(first, then)

    def _move_failed(self, lease: Lease, error: CkptdError, now: float,
                      answered: Callable[[], None] | None = None) -> None:
        """A move that ends an attempt was refused for good (a store failure would have been
        kept and retried): the job is not where the lease says, or already where it goes.

        A job that left claimed/ while it ran was moved by someone else (``ckptd --root
        cancel``, an ``mv`` by hand): its answer is dropped and counted as stale, and
        ``answered`` tells its worker so (it stops sending it again).
        """
        lease.closing = False
        if isinstance(error, JobNotFound):
            self.ix.end_lease(self.ix.queue(lease.queue), lease)
            self.ix.counters["stale_answers"] += 1
            now_in = self.ix.where(lease.queue, lease.id)
            log.warning("job %s/%s left claimed/ while attempt %d ran (moved by hand, or "
                        "cancelled with --root): it is %s now; the worker's answer is dropped",
                        lease.queue, lease.id, lease.attempt,
                        f"in {now_in}/" if now_in else "gone")
            if answered is not None:
                answered()
            return
        self.ix.counters["store_errors"] += 1
        log.error("cannot move job %s/%s: %s", lease.queue, lease.id, error)
        if isinstance(error, JobExists):
            self.resync(lease.queue, lease.id, now)

    def checkpoint(self, worker: WorkerInfo | None, body: Checkpoint, now: float,
                   identity: bytes | None = None) -> None:
        """Store a worker's checkpoint for its running attempt, then confirm it to
        ``identity`` (default: the worker's). A seq already saved is confirmed at once."""
        ix = self.ix
        if identity is None:
            if worker is None:
                return
            identity = worker.identity
        queue, job_id, seq = body.queue, body.id, body.seq
        lease = self.live_lease(worker, body)
        if lease is None:
            ix.outbox.append((identity, b"saved", {
                "queue": queue, "id": job_id, "seq": seq, "ok": False,
                "error": "the job is no longer yours (lease lost)"}))
            return
        lease.deadline = max(lease.deadline, now + ix.settings.lease_for(queue))
        if seq <= lease.checkpoint_seq:  # sent again after a reconnect: already durable
            self._saved(identity, queue, job_id, seq, None)
            return
        record = {"id": job_id, "attempt": lease.attempt, "seq": seq, "at": utc_iso(now),
                  "state": body.state}
        try:
            data = dumps_decoded(record) + b"\n"
        except ValueError as exc:
            self._saved(identity, queue, job_id, seq, str(exc))
            return

        def saved(outcome: Outcome) -> None:
            if outcome is None:
                lease.checkpoint_at = now
                lease.checkpoint_seq = max(lease.checkpoint_seq, seq)
                ix.queue(queue).checkpointed.add(job_id)
            self._saved(identity, queue, job_id, seq, None if outcome is None else str(outcome))

        ix.txn.add(PutCheckpoint(queue, job_id, data), saved)

    def _saved(self, identity: bytes, queue: str, job_id: str, seq: int,
               error: str | None) -> None:
        self.ix.outbox.append((identity, b"saved", {
            "queue": queue, "id": job_id, "seq": seq, "ok": error is None, "error": error}))

    def progress(self, worker: WorkerInfo, body: Progress, now: float) -> None:
        """Remember a job's last progress report (shown by status, explain)."""
        index = self.ix.queues.get(body.queue)
        lease = index.claimed.get(body.id) if index else None
        if lease is None or lease.attempt != body.attempt:
            return
        lease.progress = {"done": body.done, "total": body.total, "note": body.note,
                          "at": utc_iso(now)}
        lease.deadline = max(lease.deadline, now + self.ix.settings.lease_for(lease.queue))

    def expire_leases(self, now: float) -> None:
        """Send back to pending (or to failed/) every claimed job whose lease ran out."""
        ix = self.ix
        while ix.expiry and ix.expiry[0][0] <= now:
            _, queue, job_id, attempt = heapq.heappop(ix.expiry)
            index = ix.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is None or lease.attempt != attempt or lease.closing:
                continue
            if lease.deadline > now:  # extended by heartbeats: look again later
                heapq.heappush(ix.expiry, (lease.deadline, queue, job_id, attempt))
                continue
            assert index is not None
            index.counters["expired"] += 1
            silent = now - (lease.heartbeat_at or lease.claimed_at)
            error = jobs.error_record(f"lease expired: no heartbeat for {silent:.1f}s",
                                      "LeaseExpired", None, attempt, now, lease.worker)
            worker = ix.workers.get(lease.worker) if lease.worker else None
            if worker is not None:
                worker.running.discard((queue, job_id))
            self.end_attempt(lease, error, now, may_retry=True, delay=None, outcome="expired")
