"""Work that flows on when a job ends: pipelines (the next stage) and batches (the reduce).

- Pipeline: a queue whose settings name a ``next`` queue hands each done job's result on as
  the payload of a job in that queue, with the same id and the lineage extended. The new job
  is created before the finished one is moved to done/, in the same group of store ops, so a
  crash in between leaves the old job claimed (it runs again and the hand-over, being
  create-only with the same id, is a no-op): nothing is lost and nothing is handed over twice.
- Batch: when every job of a batch with a ``then`` queue has ended, one reduce job
  ``<batch>.reduce`` is submitted there listing the batch's jobs and their end states. Its
  fixed id makes a repeat (after a crash, at recovery) a no-op; the manifest records when it
  was submitted so that a purged reduce job is not submitted again.

The engine calls in here; nothing here touches sockets or reads the clock, and every store
write goes into the engine's transaction. Batch progress is kept per job id, from the
listing at recovery and the ends the engine reports, so a reduce is built from memory
without asking the store where each job is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ckptd.codec import dumps, encode_job
from ckptd.core import batches, crashpoints, jobs
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.store.base import Outcome, PutBlob, PutManifest, PutNew, Store

if TYPE_CHECKING:
    from ckptd.daemon.engine.index import Txn

log = logging.getLogger(__name__)


class Flows:
    """Batch progress and hand-overs for one daemon."""

    def __init__(self, store: Store, settings: LiveSettings, txn: Callable[[], Txn]) -> None:
        self.store = store
        self.live = settings
        self._txn = txn  # the engine's transaction of the round in progress
        self.batches: dict[str, batches.BatchProgress] = {}
        self._not_batches: set[str] = set()

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.live.current

    def clear(self) -> None:
        """Forget every batch (the daemon stopped leading; recovery loads them again)."""
        self.batches.clear()
        self._not_batches.clear()

    def drop(self, queue: str) -> None:
        """Forget the batches of one queue (another daemon leads it now)."""
        for name in [n for n, p in self.batches.items() if p.manifest.queue == queue]:
            del self.batches[name]

    # -- recovery --------------------------------------------------------------------------

    def recover(self, queue: str, ids: dict[State, list[str]], now: float) -> None:
        """Load the queue's batch manifests and note their ended jobs from a listing;
        submit the reduce of any batch that completed while no daemon was watching."""
        names = self.store.manifests(queue)
        for name in names:
            progress = self._load(queue, name)
            if progress is None:
                continue
            progress.ends.clear()
            progress.started_at = now
        for state in (State.DONE, State.FAILED):
            for job_id in ids[state]:
                progress = self.batches.get(batches.batch_of(job_id) or "")
                if progress is not None and progress.manifest.queue == queue:
                    progress.record(job_id, state.value)
        for name in names:
            progress = self.batches.get(name)
            if progress is not None and progress.complete:
                self._reduce(progress, now)

    def _load(self, queue: str, batch: str) -> batches.BatchProgress | None:
        progress = self.batches.get(batch)
        if progress is not None or batch in self._not_batches:
            return progress
        try:
            manifest = batches.Manifest.decode(self.store.read_manifest(queue, batch))
        except JobNotFound:
            self._not_batches.add(batch)  # a tag without a manifest: nothing to track
            return None
        except (MalformedJob, CkptdError) as exc:
            log.error("cannot read the manifest of batch %s in %s: %s", batch, queue, exc)
            self._not_batches.add(batch)
            return None
        progress = self.batches[batch] = batches.BatchProgress(manifest)
        return progress

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

    # -- batches ---------------------------------------------------------------------------

    def ended(self, queue: str, job_id: str, job: jobs.Job | None, state: State, now: float
              ) -> None:
        """Count a batch job that reached done/ or failed/; reduce when the batch is complete."""
        batch = job.get("batch") if job is not None else None
        if not isinstance(batch, str):
            batch = batches.batch_of(job_id)
        if batch is None:
            return
        progress = self._load(queue, batch)
        if progress is None or progress.manifest.queue != queue:
            return
        if progress.started_at is None:
            progress.started_at = now
        if progress.record(job_id, state.value) and progress.complete:
            self._reduce(progress, now)

    def appeared(self, queue: str, job_id: str) -> None:
        """A pending job the daemon did not make appeared (a submit-file with --root): know
        its batch from now on, so that status shows it before any of its jobs ends."""
        batch = batches.batch_of(job_id)
        if batch is not None and batch not in self.batches:
            self._load(queue, batch)

    def reopened(self, queue: str, job_id: str) -> None:
        """A failed batch job went back to pending (retry): it has not ended any more."""
        progress = self.batches.get(batches.batch_of(job_id) or "")
        if progress is not None and progress.manifest.queue == queue:
            progress.record(job_id, None)

    def _reduce(self, progress: batches.BatchProgress, now: float) -> None:
        manifest = progress.manifest
        if not manifest.then or manifest.reduced:
            return
        rid = batches.reduce_id(manifest.batch)
        listing = progress.listing()  # from memory: no store request per job
        payload: dict[str, Any] = {"batch": manifest.batch, "queue": manifest.queue,
                                   "total": manifest.total, "done": progress.done,
                                   "failed": progress.failed, "jobs": listing}
        job = jobs.new_job(manifest.then, rid, payload, now,
                           max_attempts=self.settings.max_attempts_for(manifest.then),
                           batch=manifest.batch, lineage=[f"{manifest.queue}/{manifest.batch}"])
        manifest.reduced = utc_iso(now)  # in memory now, so it is not submitted twice

        def created(outcome: Outcome) -> None:
            if outcome is not None and not isinstance(outcome, JobExists):
                manifest.reduced = None  # try again at the next completion or recovery
                log.error("cannot submit the reduce of batch %s: %s", manifest.batch, outcome)
                return
            crashpoints.reached("reduce_submitted")  # crash tests: before the manifest says so
            log.info("batch complete: reduce submitted", extra={"fields": {
                "batch": manifest.batch, "queue": manifest.queue, "to_queue": manifest.then,
                "id": rid, "done": progress.done, "failed": progress.failed,
                "again": outcome is not None}})
            # Recorded through the transaction like every write (fenced on a bucket, retried
            # there after an outage); a crash before it only submits the reduce again (no-op).
            self._txn().add(PutManifest(manifest.queue, manifest.batch, manifest.encode()),
                            self._manifest_written(manifest))

        self._txn().add(PutNew(manifest.then, rid, encode_job(job), check_other_states=True),
                        created)

    def _manifest_written(self, manifest: batches.Manifest) -> Callable[[Outcome], None]:
        def then(outcome: Outcome) -> None:
            if outcome is not None:
                log.error("cannot record the reduce of batch %s in its manifest (it is "
                          "submitted again, a no-op, after a restart): %s", manifest.batch,
                          outcome)
        return then

    # -- status ----------------------------------------------------------------------------

    def status(self, queue: str, now: float) -> dict[str, Any]:
        """Progress of the queue's batches."""
        return {name: p.as_dict(now) for name, p in sorted(self.batches.items())
                if p.manifest.queue == queue}
