"""Work that flows on when a job ends: pipelines (the next stage), batches (their
callbacks, :mod:`~ckptd.daemon.engine.batch_ends`), the jobs that wait on it
(:mod:`~ckptd.daemon.engine.waits`, told through :attr:`Flows.listeners`) and a queue's
``on_failure`` job.

- Pipeline: a queue whose settings name a ``next`` queue hands each done job's result on as
  the payload of a job in that queue, with the same id and the lineage extended. The new job
  is created before the finished one is moved to done/, in the same group of store ops, so a
  crash in between leaves the old job claimed (it runs again and the hand-over, being
  create-only with the same id, is a no-op): nothing is lost and nothing is handed over twice.
- On failure: a queue whose settings name an ``on_failure`` queue gets, for each job that
  lands in failed/, one job there (``<id>.failure-<attempts>``, create-only, created before
  the move) whose payload carries the error and the last checkpoint.

The engine calls in here; nothing here touches sockets or reads the clock, and every store
write goes into the engine's transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ckptd.codec import dumps, encode_job
from ckptd.core import jobs, waits
from ckptd.core.answer_types import BatchStatus
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, JobExists
from ckptd.core.states import State
from ckptd.daemon.engine.batch_ends import BatchTracker
from ckptd.store.base import Op, Outcome, PutBlob, PutNew, Store

if TYPE_CHECKING:
    from ckptd.daemon.engine.index import Txn

log = logging.getLogger(__name__)


class Flows:
    """Hand-overs, batches and the ends that other work waits on, for one daemon."""

    def __init__(self, store: Store, settings: LiveSettings, txn: Callable[[], Txn],
                 leads: Callable[[str], bool] = lambda queue: True) -> None:
        self.store = store
        self.live = settings
        self._txn = txn  # the engine's transaction of the round in progress
        self.tracker = BatchTracker(store, settings, txn, leads)
        #: Told of every end (queue, id, "done" | "failed" | "removed", now): the waits.
        self.listeners: list[Callable[[str, str, str, float], None]] = []

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.live.current

    def clear(self) -> None:
        """Forget every batch (the daemon stopped leading; recovery loads them again)."""
        self.tracker.clear()

    def drop(self, queue: str) -> None:
        """Forget the batches of one queue (another daemon leads it now)."""
        self.tracker.drop(queue)

    def recover(self, queue: str, ids: dict[State, list[str]], now: float) -> None:
        """Count the jobs of known batches in a listing of ``queue`` (the engine's recovery
        loads every manifest first, so a batch's jobs count whichever queue they are in)."""
        self.tracker.count_listing(queue, ids)

    # -- pipelines -------------------------------------------------------------------------

    def handover(self, queue: str, job: jobs.Job, result: Any, in_blob: bool, now: float
                 ) -> None:
        """Queue the next stage's job for a job about to be moved to done/ (if any).

        ``result`` is the worker's result, or with ``in_blob`` the worker stored it as a blob
        itself (the next job then reads that blob's bytes now).
        """
        target = self.settings.queue(queue).next
        if not target:
            return
        job_id = job["id"]
        if not in_blob:
            encoded = dumps(result)
        else:
            try:
                encoded = self.store.read_blob(queue, job_id, "result")
            except CkptdError as exc:
                log.error("cannot hand %s/%s over to %s: %s", queue, job_id, target, exc)
                return
        lineage = [*job.get("lineage", []), f"{queue}/{job_id}"]
        nxt = jobs.new_job(target, job_id, None, now,
                           max_attempts=self.settings.max_attempts_for(target),
                           batch=job.get("batch"), lineage=lineage)
        if len(encoded) > self.settings.blob_threshold:
            self._txn().add(PutBlob(target, job_id, "payload", encoded))
            nxt["payload_ref"] = f"blobs/{job_id}.payload"
            nxt["payload_size"] = len(encoded)
        else:
            nxt["payload"] = json.loads(encoded)
        job["next"] = {"queue": target, "id": job_id}

        def created(outcome: Outcome) -> None:
            if outcome is None:
                log.info("handed over", extra={"fields": {"queue": queue, "id": job_id,
                                                           "to_queue": target}})
            elif not isinstance(outcome, JobExists):  # exists: handed over before a crash
                log.error("cannot hand %s/%s over to %s: %s", queue, job_id, target, outcome)

        self._txn().add(PutNew(target, job_id, encode_job(nxt), check_other_states=True),
                        created)

    # -- ends ------------------------------------------------------------------------------

    def ended(self, queue: str, job_id: str, job: jobs.Job | None, state: State, now: float
              ) -> None:
        """A job reached done/ or failed/: its batch counts it, its dependents learn it."""
        self.tracker.ended(queue, job_id, state.value, now)
        for listener in self.listeners:
            listener(queue, job_id, state.value, now)

    def removed(self, queue: str, job_id: str, now: float) -> None:
        """An open job was cancelled or removed by hand: it ends without a state."""
        self.tracker.ended(queue, job_id, waits.REMOVED, now)
        for listener in self.listeners:
            listener(queue, job_id, waits.REMOVED, now)

    def appeared(self, queue: str, job_id: str) -> None:
        """A pending job the daemon did not make appeared (a submit-file with --root)."""
        self.tracker.appeared(queue, job_id)

    def reopened(self, queue: str, job_id: str) -> None:
        """A failed job went back to pending (retry): it has not ended any more."""
        self.tracker.reopened(queue, job_id)

    def failing(self, queue: str, job: jobs.Job, now: float) -> Op | None:
        """The op that creates the ``on_failure`` job of a job about to move to failed/
        (None when its queue names none). Applied before the move: a crash in between
        leaves the job where it was, and the repeat finds the job made (create-only)."""
        target = self.settings.queue(queue).on_failure
        if not target:
            return None
        job_id = str(job["id"])
        key = f"failure-{int(job.get('attempts') or 0)}"
        try:
            cid = waits.child_id(job_id, key)
        except CkptdError as exc:
            log.error("no on_failure job for %s/%s: %s", queue, job_id, exc)
            return None
        try:
            raw = self.store.read_checkpoint(queue, job_id)
            checkpoint = json.loads(raw).get("state") if raw else None
        except (CkptdError, ValueError, AttributeError):
            checkpoint = None
        payload: dict[str, Any] = {"queue": queue, "id": job_id, "error": job.get("last_error"),
                                   "checkpoint": checkpoint, "attempts": job.get("attempts"),
                                   "batch": job.get("batch")}
        if job.get("payload_ref"):
            payload["payload_ref"] = f"{queue}/{job['payload_ref']}"
        else:
            payload["payload"] = job.get("payload")
        made = jobs.new_job(target, cid, payload, now,
                            max_attempts=self.settings.max_attempts_for(target),
                            lineage=[*job.get("lineage", []), f"{queue}/{job_id}"])
        log.info("on_failure", extra={"fields": {"queue": queue, "id": job_id,
                                                 "to_queue": target, "job": cid}})
        return PutNew(target, cid, encode_job(made), check_other_states=True)

    # -- status ----------------------------------------------------------------------------

    def status(self, queue: str, now: float) -> dict[str, BatchStatus]:
        """Progress of the queue's batches."""
        return self.tracker.status(queue, now)
