"""Batches: which of their jobs are open, and the callbacks made once they have all ended.

A batch (:mod:`ckptd.core.batches`) lives in its home queue: the daemon that leads that
queue tracks it. Its jobs are known by their ids (``<batch>.<key>``, and the children they
spawn, ``<batch>.<key>.<child>``), so nothing needs to be registered anywhere: a job of the
batch is counted open when it is created or found in a listing, and ended when it reaches
``done/`` or ``failed/`` (or is cancelled). A child is created, durably, before the answer
of the job that spawned it is accepted, so a batch can never look complete while a child is
still on its way: the trap where a callback fires before the children's children are
counted cannot happen.

Once the batch is sealed (or, for submit-file's, once its fixed number of jobs have ended)
and nothing of it is open, each callback due (:meth:`ckptd.core.batches.Manifest.due`) is
created in its queue with a fixed id, create-only, and the manifest records it: a repeat
after a crash finds it there and makes nothing. The callback's payload lists every job's
outcome, and goes into a blob beside it when that list is big (100,000 jobs).

Where other daemons lead some queues, jobs of a batch may be there: before its callbacks
are made the batch is confirmed by a listing of those queues (the store is the truth), and
while it waits, those queues are listed every :data:`FOREIGN_INTERVAL`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckptd.codec import dumps, encode_job
from ckptd.core import batches, crashpoints, jobs
from ckptd.core.answer_types import BatchStatus
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob
from ckptd.core.states import STATES, State
from ckptd.core.timefmt import utc_iso
from ckptd.store.base import Outcome, PutBlob, PutManifest, PutNew, Store
from ckptd.wire.control_requests import BatchOpen
from ckptd.wire.protocol import Body

if TYPE_CHECKING:
    from ckptd.daemon.engine.index import Txn

log = logging.getLogger(__name__)

FOREIGN_INTERVAL = 5.0
ENDED = {State.DONE.value, State.FAILED.value, "removed"}
Reply = Callable[[Body | CkptdError], None]


@dataclass
class Progress:
    """One batch: its manifest, its open jobs and the ends of the others (refs only)."""

    manifest: batches.Manifest
    open: set[str] = field(default_factory=set)
    ends: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    firing: bool = False
    foreign_at: float = 0.0

    @property
    def done(self) -> int:
        return sum(1 for state in self.ends.values() if state == State.DONE.value)

    @property
    def failed(self) -> int:
        return len(self.ends) - self.done

    def complete(self) -> bool:
        """Sealed (or its fixed number reached) and nothing of it open."""
        manifest = self.manifest
        if self.open:
            return False
        if manifest.open_ended():
            return bool(manifest.sealed)
        return len(self.ends) >= manifest.total

    def as_dict(self, now: float) -> BatchStatus:
        """Progress for status. ``open`` counts the jobs not ended and the callbacks due but
        not created yet."""
        manifest = self.manifest
        known = len(self.open) + len(self.ends)  # the jobs seen (with the ones they spawned)
        total = known if manifest.open_ended() else max(manifest.total, known)
        ended = len(self.ends)
        elapsed = now - self.started_at if self.started_at else 0.0
        rate = ended / elapsed if elapsed > 0 else 0.0
        # A callback due and not yet created counts as open: whoever waits for ``open`` to
        # reach 0 can then find it (it is written, through the fsync, a moment after the
        # last job ends).
        unmade = len(manifest.due(self.done, self.failed)) if self.complete() else 0
        left = max(len(self.open), total - ended) + unmade
        view: BatchStatus = {
            "queue": manifest.queue, "total": total, "done": self.done, "failed": self.failed,
            "open": left, "then": manifest.then, "reduced": manifest.reduced,
            "eta_s": round(left / rate, 1) if rate > 0 and left else None}
        if manifest.open_ended():
            view["sealed"] = bool(manifest.sealed)  # not None: open-ended
            view["callbacks"] = manifest.callbacks
            view["fired"] = manifest.fired
        return view


class BatchTracker:
    """The batches whose home queue this daemon leads."""

    def __init__(self, store: Store, settings: LiveSettings, txn: Callable[[], Txn],
                 leads: Callable[[str], bool]) -> None:
        self.store = store
        self.live = settings
        self._txn = txn
        self.leads = leads
        self.batches: dict[str, Progress] = {}
        self._not_batches: set[str] = set()
        self.holding: Callable[[], bool] = lambda: False  # no callback while True (recovery)

    @property
    def settings(self) -> Settings:
        return self.live.current

    def clear(self) -> None:
        """Forget every batch (the daemon stopped leading; recovery loads them again)."""
        self.batches.clear()
        self._not_batches.clear()

    def drop(self, queue: str) -> None:
        """Forget the batches of one queue (another daemon leads it now)."""
        for name in [n for n, p in self.batches.items() if p.manifest.queue == queue]:
            del self.batches[name]

    # -- loading ---------------------------------------------------------------------------

    def load(self, queue: str, now: float, *, count: bool = False, keep: bool = False
             ) -> list[str]:
        """Load the manifests of ``queue`` (recovery, or a queue taken over); return their
        names. Their jobs are counted by :meth:`count_listing`, or here from listings of
        every queue when ``count`` (a queue taken over while others run). ``keep``: a batch
        loaded already keeps what was counted."""
        names = self.store.manifests(queue)
        for name in names:
            if keep and name in self.batches:
                continue
            self._not_batches.discard(name)
            self.batches.pop(name, None)
            progress = self._load(queue, name)
            if progress is not None:
                progress.started_at = now
                if count:
                    self.confirm(progress, everywhere=True)
        return names

    def _load(self, queue: str, batch: str) -> Progress | None:
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
        if manifest.queue != queue:
            return None
        progress = self.batches[batch] = Progress(manifest)
        return progress

    def count_listing(self, queue: str, ids: dict[State, list[str]]) -> None:
        """Count the jobs of known batches in a listing of ``queue`` (recovery)."""
        if not self.batches:
            return
        known = self.batches
        for state, listed in ids.items():
            for job_id in listed:
                name = batches.member_of(job_id, known)
                if name is not None:
                    self._note(known[name], f"{queue}/{job_id}", state.value)

    @staticmethod
    def _note(progress: Progress, ref: str, state: str) -> None:
        if state in ENDED:
            progress.open.discard(ref)
            progress.ends[ref] = state
        else:
            progress.ends.pop(ref, None)
            progress.open.add(ref)

    def settle(self, now: float) -> None:
        """After recovery: make what completed while no daemon watched."""
        for name in list(self.batches):
            self.check(name, now)

    # -- events ----------------------------------------------------------------------------

    def joined(self, queue: str, job_id: str) -> None:
        """A job was created (or found) in an open state."""
        self._event(queue, job_id, State.PENDING.value)

    def ended(self, queue: str, job_id: str, end: str, now: float) -> None:
        """A job reached done/ or failed/, or was cancelled (``removed``)."""
        name = self._event(queue, job_id, end)
        if name is not None:
            progress = self.batches[name]
            if progress.started_at is None:
                progress.started_at = now
            self.check(name, now)

    def reopened(self, queue: str, job_id: str) -> None:
        """A failed job went back to pending (retry): it has not ended any more."""
        self._event(queue, job_id, State.PENDING.value)

    def _event(self, queue: str, job_id: str, state: str) -> str | None:
        if not self.batches:
            return None
        name = batches.member_of(job_id, self.batches)
        if name is None:
            return None
        self._note(self.batches[name], f"{queue}/{job_id}", state)
        return name

    def appeared(self, queue: str, job_id: str) -> None:
        """A pending job the daemon did not make appeared (a submit-file with --root): know
        its batch from now on, so that status shows it before any of its jobs ends."""
        name = batches.batch_of(job_id)
        if name is not None and name not in self.batches:
            self._load(queue, name)
        self.joined(queue, job_id)

    # -- open, seal ------------------------------------------------------------------------

    def open_batch(self, body: BatchOpen, now: float, reply: Reply) -> None:
        """Create (or find again) a batch in its home queue: ``batch_open``."""
        queue = body.queue
        try:
            name = batches.check_batch(body.batch or batches.new_batch_id(now))
            callbacks: dict[str, str] = {k: v for k, v in body.callbacks.items() if v}
            if not callbacks:
                raise CkptdError("a batch needs a callback: then=, on_complete= or "
                                 "on_failure= (a queue each)")
            manifest = batches.Manifest(name, queue, 0, utc_iso(now), sealed=False,
                                        callbacks=callbacks, context=body.context)
            batches.Manifest.decode(manifest.encode())  # the same checks as on reading
        except (CkptdError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        self._not_batches.discard(name)
        found = self._load(queue, name)
        if found is not None:
            if found.manifest.callbacks != callbacks:
                reply(JobExists(queue, name, "batches"))
                return
            reply({"batch": name, "queue": queue, "created": False,
                   "sealed": found.manifest.sealed})
            return

        def written(outcome: Outcome) -> None:
            if outcome is not None:
                reply(outcome)
                return
            self.batches[name] = Progress(manifest, started_at=now)
            log.info("batch open", extra={"fields": {"batch": name, "queue": queue,
                                                     "callbacks": callbacks}})
            reply({"batch": name, "queue": queue, "created": True, "sealed": False})

        self._txn().add(PutManifest(queue, name, manifest.encode()), written)

    def seal(self, queue: str, name: str, now: float, reply: Reply) -> None:
        """Seal a batch: no job of the producer's joins it any more (the running ones may
        still add theirs); its callbacks come once every job has ended."""
        progress = self.batches.get(name)
        if progress is None or progress.manifest.queue != queue:
            progress = self._load(queue, name) if name not in self._not_batches else None
        if progress is None or not progress.manifest.open_ended():
            reply(JobNotFound(f"no batch {name!r} in queue {queue!r} (made with "
                              "client.batch)"))
            return
        manifest = progress.manifest
        if manifest.sealed:
            reply({"batch": name, "sealed": True, **progress.as_dict(now)})
            return
        manifest.sealed = True

        def written(outcome: Outcome) -> None:
            if outcome is not None:
                manifest.sealed = False
                reply(outcome)
                return
            log.info("batch sealed", extra={"fields": {"batch": name, "queue": queue,
                                                       "open": len(progress.open)}})
            reply({"batch": name, "sealed": True, **progress.as_dict(now)})
            self.check(name, now)

        self._txn().add(PutManifest(queue, name, manifest.encode()), written)

    # -- completion ------------------------------------------------------------------------

    def check(self, name: str, now: float) -> None:
        """Make the callbacks of a batch that is complete (once)."""
        progress = self.batches.get(name)
        if progress is None or progress.firing or not progress.complete() or self.holding():
            return
        if not self._alone():
            progress.foreign_at = now + FOREIGN_INTERVAL
            self.confirm(progress)
            if not progress.complete():
                return
        due = progress.manifest.due(progress.done, progress.failed)
        if due:
            self._fire(progress, due, now)

    def _alone(self) -> bool:
        """Whether this daemon leads every queue of the store (its events see every job)."""
        try:
            return all(self.leads(q) for q in self.store.queues())
        except CkptdError:
            return False

    def confirm(self, progress: Progress, everywhere: bool = False) -> None:
        """Count the batch's jobs in the queues other daemons lead (``everywhere``: in every
        queue), from listings."""
        prefix = progress.manifest.batch + "."
        try:
            queues = [q for q in self.store.queues() if everywhere or not self.leads(q)]
            for queue in queues:
                for state in STATES:
                    for job_id in self.store.ids_after(queue, state, progress.manifest.batch):
                        if job_id < prefix:
                            continue
                        if not job_id.startswith(prefix):
                            break  # sorted: past the batch's ids
                        if batches.member_of(job_id, self.batches) == progress.manifest.batch:
                            self._note(progress, f"{queue}/{job_id}", state.value)
        except CkptdError as exc:
            log.warning("cannot list the jobs of batch %s (asked again later): %s",
                        progress.manifest.batch, exc)
            progress.open.add("?")  # not complete until a listing succeeds

    def tick(self, now: float) -> None:
        """Batches with jobs in other daemons' queues: look again now and then."""
        for name, progress in list(self.batches.items()):
            if progress.foreign_at and now >= progress.foreign_at and not progress.firing:
                progress.foreign_at = 0.0
                progress.open.discard("?")
                progress.open = {r for r in progress.open if self.leads(r.split("/", 1)[0])}
                self.check(name, now)

    def _fire(self, progress: Progress, keys: list[str], now: float) -> None:
        manifest = progress.manifest
        progress.firing = True
        outcomes = sorted(progress.ends.items())
        for key in keys:
            queue = manifest.all_callbacks()[key]
            payload = self._payload(progress, outcomes, key)
            self._create(progress, key, queue, payload, now)

    def _payload(self, progress: Progress, outcomes: list[tuple[str, str]], key: str
                 ) -> dict[str, Any]:
        manifest = progress.manifest
        payload: dict[str, Any] = {"batch": manifest.batch, "queue": manifest.queue,
                                   "done": progress.done, "failed": progress.failed}
        if key == batches.REDUCE_SUFFIX and not manifest.open_ended():
            # submit-file's reduce: its jobs by number, in one queue (as it always was)
            ends = {r.split("/", 1)[1]: s for r, s in outcomes}
            payload["total"] = manifest.total
            payload["jobs"] = [[batches.job_id(manifest.batch, n),
                                ends.get(batches.job_id(manifest.batch, n), "missing")]
                               for n in range(manifest.total)]
            return payload
        payload["total"] = len(outcomes)
        payload["callback"] = key
        payload["context"] = manifest.context
        payload["outcomes"] = [[r, s] for r, s in outcomes]
        return payload

    def _create(self, progress: Progress, key: str, queue: str, payload: dict[str, Any],
                now: float) -> None:
        manifest = progress.manifest
        cid = batches.callback_id(manifest.batch, key)
        job = jobs.new_job(queue, cid, None, now,
                           max_attempts=self.settings.max_attempts_for(queue),
                           batch=manifest.batch, lineage=[f"{manifest.queue}/{manifest.batch}"])
        encoded = dumps(payload)
        if len(encoded) > self.settings.blob_threshold:  # 100,000 outcomes: beside the job
            self._txn().add(PutBlob(queue, cid, "payload", encoded))
            job["payload_ref"] = f"blobs/{cid}.payload"
            job["payload_size"] = len(encoded)
        else:
            job["payload"] = json.loads(encoded)

        def created(outcome: Outcome) -> None:
            if outcome is not None and not isinstance(outcome, JobExists):
                progress.firing = False  # tried again at the next end or recovery
                log.error("cannot create callback %s of batch %s: %s", key, manifest.batch,
                          outcome)
                return
            crashpoints.reached("reduce_submitted")  # crash tests: before the manifest says so
            log.info("batch complete: callback created", extra={"fields": {
                "batch": manifest.batch, "queue": manifest.queue, "to_queue": queue,
                "id": cid, "callback": key, "done": progress.done, "failed": progress.failed,
                "again": outcome is not None}})
            if key == batches.REDUCE_SUFFIX and not manifest.open_ended():
                manifest.reduced = utc_iso(now)
            else:
                manifest.fired[key] = utc_iso(now)
            # Through the transaction like every write (fenced on a bucket); a crash before
            # it only creates the callback again, a no-op.
            self._txn().add(PutManifest(manifest.queue, manifest.batch, manifest.encode()),
                            self._recorded(progress))

        self._txn().add(PutNew(queue, cid, encode_job(job), check_other_states=True),
                        created)

    def _recorded(self, progress: Progress) -> Callable[[Outcome], None]:
        def then(outcome: Outcome) -> None:
            progress.firing = False
            if outcome is not None:
                log.error("cannot record the callbacks of batch %s in its manifest (they are "
                          "created again, a no-op, after a restart): %s",
                          progress.manifest.batch, outcome)
        return then

    # -- status ----------------------------------------------------------------------------

    def status(self, queue: str, now: float) -> dict[str, BatchStatus]:
        """Progress of the queue's batches."""
        return {name: p.as_dict(now) for name, p in sorted(self.batches.items())
                if p.manifest.queue == queue}
