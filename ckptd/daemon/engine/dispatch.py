"""Dispatch: claim pending jobs for workers that have free slots.

Each claim is a rename ``pending -> claimed`` queued in the round's transaction; the job
message is sent once it is applied. A worker is only sent what its credits allow, so a slow
worker never holds jobs it cannot start. Workers are served in turn, and each worker's
queues in turn. Of a queue whose jobs have keys, the ready lines pick a job of a key that
its limits allow (:mod:`ckptd.daemon.controls.key_lines`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ckptd.codec import decode_job, encode_job
from ckptd.core import jobs
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob, StoreError
from ckptd.core.ids import is_generated
from ckptd.core.job_keys import key_of_job
from ckptd.core.states import State
from ckptd.core.timefmt import parse_iso, time_or_none
from ckptd.daemon.engine.index import Index, QueueIndex, WorkerInfo
from ckptd.store.background import Background
from ckptd.store.base import Move, Outcome
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

# A pending file younger than this that does not parse may still be being written in place
# by a producer; it is retried later instead of being quarantined at once.
MALFORMED_GRACE = 2.0
# A pending job that cannot be read (I/O error, permissions) is tried again after this.
STORE_RETRY_DELAY = 5.0
# Jobs whose file is at most this big keep it in their lease while claimed, so that the
# answer does not read it again; bigger ones are read again when they finish.
CACHE_JOB_BYTES = 16 * 1024


def _time_limit(value: Any) -> float | None:
    """A job file's own time limit, when it holds a usable one (files may be hand-written)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e9:
        return float(value)
    return None


def _may_grow(raw: bytes) -> bool:
    """Whether a file that parses may still be the first part of a longer JSON text."""
    text = raw.strip()
    return not text or text[:1] in b"-0123456789"


class _TooYoung(Exception):
    """A pending file written by hand moments ago: it may not be complete yet."""


class Dispatcher:
    """The dispatch part of the engine."""

    def __init__(self, index: Index, forget_worker: Callable[[WorkerInfo, str], None],
                 resync: Callable[[str, str, float], None],
                 hold: Callable[[QueueIndex, str, jobs.Job, float], bool] | None = None
                 ) -> None:
        self.ix = index
        self.forget_worker = forget_worker
        self.resync = resync  # a job found where it was to be moved: look at the folders
        # A job that names parents it has not waited for goes to waiting/ instead (waits.py).
        self.hold = hold
        index.deadlines.append(self._key_due)
        store = index.store  # a bucket reads pending files ahead, in the background
        self.ready_to_read = store.ready if isinstance(store, Background) else None

    def _key_due(self) -> float | None:
        """When a key held by its rate may be claimed again (while workers wait)."""
        ix = self.ix
        if not ix.a_slot_is_free():
            return None
        times = [due for index in ix.queues.values() if index.ready.by_key
                 for due in (index.ready.next_unpark(),) if due is not None]
        return min(times) if times else None

    def dispatch(self, now: float, message_limit: int) -> int:
        """Claim jobs for workers that have free slots; return how many were claimed.

        Payloads up to ``message_limit`` bytes travel in the job message.
        """
        ix = self.ix
        if not ix.dispatching or not ix.workers:
            return 0
        if not any(index.ready for index in ix.queues.values()):
            return 0
        claimed = 0
        order = ix.worker_order
        progress = True
        while progress:
            progress = False
            for _ in range(len(order)):
                worker = ix.workers[order[0]]
                order.rotate(-1)
                if worker.credits <= 0:
                    continue
                if self._claim_for(worker, now, message_limit):
                    claimed += 1
                    progress = True
        return claimed

    def has_takers(self) -> bool:
        """Whether a connected worker has a free slot (else a job made ready waits for one's
        hello or answer, which wakes the loop)."""
        return self.ix.dispatching and self.ix.a_slot_is_free()

    def ready_count(self) -> int:
        """How many ids wait in the ready lines (stale ones included): a growth means the
        next turn has jobs to dispatch."""
        return sum(len(index.ready) for index in self.ix.queues.values())

    def _claim_for(self, worker: WorkerInfo, now: float, message_limit: int) -> bool:
        queues = worker.queues
        gate = self.ix.gate
        key_gate = self.ix.key_gate
        for step in range(len(queues)):
            position = (worker.next_queue + step) % len(queues)
            index = self.ix.queues.get(queues[position])
            if index is None or index.holding:
                continue
            ready = index.ready
            # A queue whose ready jobs have keys: its keys' limits and fair share decide.
            rules = key_gate.rules(index.name, index.running_keys, now) if ready.by_key \
                else None
            # Paused, at its max_running, or out of rate tokens.
            while ready and gate.allows(index.name, len(index.claimed), now):
                job_id = ready.take(now, rules)
                if job_id is None:
                    break  # every ready job's key waits for its limits
                if job_id not in index.pending:
                    continue  # cancelled or already claimed
                if self.ready_to_read is not None and not self.ready_to_read(
                        index.name, job_id, index.ready.priority(job_id),
                        index.ready.key_of(job_id)):
                    index.ready.appendleft(job_id)  # its file is on its way: claimed then
                    break
                if self._claim(index, job_id, worker, now, message_limit):
                    gate.took(index.name, now)
                    if rules is not None:
                        key_gate.took(index.name, ready.key_of(job_id), now)
                    worker.next_queue = position + 1
                    return True
                if rules is None and ready.by_key:
                    rules = key_gate.rules(index.name, index.running_keys, now)
        return False

    def _claim(self, index: QueueIndex, job_id: str, worker: WorkerInfo, now: float,
               message_limit: int) -> bool:
        ix = self.ix
        queue = index.name
        if index.delayed_at:
            due = index.delayed_at.get(job_id)
            if due is not None and due > now:
                return False  # pushed back since it was made ready (debounce): it waits
        tag = index.ready.prio.get(job_id, 0) if index.ready.prio else 0  # in its file's name
        key = index.ready.key_of(job_id)  # likewise
        # A file the daemon did not write under an id of its own choosing (a --root
        # submit-file run again, by hand) may be a job that has ended already, as may any
        # while done/ and failed/ are being listed. (Generated ids are left out: each names
        # one job, and a direct submit's claim spares the two looks.)
        if (index.recovering is not None or (job_id in index.added_since_scan
                                             and not is_generated(job_id))) \
                and self._ended_too(index, job_id, now):
            return False
        try:
            raw = ix.store.read(queue, State.PENDING, job_id, tag, key)
        except JobNotFound:
            index.pending.discard(job_id)
            return False
        except MalformedJob as exc:  # e.g. a symlink planted in pending/: not a job file
            self._malformed_pending(index, job_id, str(exc), now, tag, key)
            return False
        except StoreError as exc:
            ix.counters["store_errors"] += 1
            log.error("cannot read pending job %s/%s (trying again in %gs): %s", queue, job_id,
                      STORE_RETRY_DELAY, exc)
            # Later, not back into ready: the dispatch loop would take it again at once, forever.
            ix.delay(index, job_id, now + STORE_RETRY_DELAY)
            return False
        try:
            job, rewrite = self._read_pending(index, job_id, raw, now, tag, key)
            not_before = job.get("not_before")
            wait_until = parse_iso(not_before) if isinstance(not_before, str) else None
        except (MalformedJob, ValueError) as exc:
            self._malformed_pending(index, job_id, str(exc), now, tag, key)
            return False
        except _TooYoung:  # written by hand, perhaps still being written: look again soon
            ix.delay(index, job_id, now + MALFORMED_GRACE)
            return False
        if wait_until is not None and wait_until > now:
            ix.delay(index, job_id, wait_until)
            return False
        if self.hold is not None and "after" in job and self.hold(index, job_id, job, now):
            return False
        attempt = jobs.running_attempt(job)
        if jobs.priority_of(job) != tag:  # the name decides; the claimed file says so too
            job["priority"] = tag
            if not tag:
                del job["priority"]
            rewrite = True
        if key_of_job(job) != key:  # likewise for its key
            job["key"] = key
            if not key:
                job.pop("key", None)
            rewrite = True
        index.pending.discard(job_id)
        if index.delayed_at:
            index.delayed_at.pop(job_id, None)
        lease = ix.lease(index, job_id, attempt, worker.id, now, claimed_at=now, key=key)
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
        if isinstance(job.get("woken"), dict):
            body["woken"] = job["woken"]  # parents' ends, signals: job.parents, job.signals
        time_limit = _time_limit(job.get("time_limit")) or ix.settings.time_limit_for(queue)
        if time_limit:
            body["time_limit"] = time_limit
        if job.get("payload_ref"):
            body["payload_ref"] = job["payload_ref"]
        elif len(raw) > message_limit:
            body["payload_ref"] = "job"  # inline in the job file, too big for a message
        else:
            body["payload"] = job.get("payload")
        if job.get("meta"):
            body["meta"] = job["meta"]  # what the client's hooks added (a trace context)
        if ix.traces is not None:
            ix.traces.dispatched(queue, job_id, attempt, job, body)
        if job_id in index.checkpointed:
            checkpoint = self._checkpoint_state(queue, job_id, message_limit)
            if checkpoint is not None:
                body.update(checkpoint)

        def moved(outcome: Outcome) -> None:
            if outcome is None:
                ix.outbox.append((worker.identity, b"job", body))
                if ready_at is not None:
                    index.metrics.dispatch.observe(max(0.0, now - ready_at))
                if key:
                    index.key_claims.claimed(key)
                ix.log_move(lease, State.PENDING, State.CLAIMED, now, worker=worker.id)
                return
            ix.end_lease(index, lease)
            worker.credits = min(worker.most, worker.credits + 1)
            if isinstance(outcome, JobExists):  # already in claimed/: a leftover, or a hand copy
                self.resync(queue, job_id, now)
            elif not isinstance(outcome, JobNotFound):
                index.pending.add(job_id)
                index.ready.appendleft(job_id)
                ix.counters["store_errors"] += 1
                log.error("cannot claim %s/%s: %s", queue, job_id, outcome)

        # A file written by hand is claimed as the full job file it stands for, so that
        # everything after (answers, fsck, cat) reads a complete job.
        data = encode_job(jobs.bump(job)) if rewrite else None
        ix.txn.add(Move(queue, job_id, State.PENDING, State.CLAIMED, data, priority=tag,
                        key=key), moved)
        return True

    def _ended_too(self, index: QueueIndex, job_id: str, now: float) -> bool:
        """True when the job is also in done/ or failed/ (a copy a crash left, or a job made
        again from outside), which the two-state rule then resolves."""
        store = self.ix.store
        if store.exists(index.name, State.DONE, job_id) \
                or store.exists(index.name, State.FAILED, job_id):
            index.pending.discard(job_id)  # back, if it wins, through resync
            self.resync(index.name, job_id, now)
            return True
        return False

    def _read_pending(self, index: QueueIndex, job_id: str, raw: bytes, now: float,
                      tag: int, key: str) -> tuple[jobs.Job, bool]:
        """The pending job, completed when it was written by hand; and whether it was.

        Raises MalformedJob when it cannot be a job, _TooYoung when it was completed, is a
        bare number (a prefix of a longer one parses too) and is so recent that it may still
        be being written in place.
        """
        try:
            return decode_job(raw, index.name, job_id), False
        except MalformedJob:
            pass
        try:
            written = self.ix.store.mtime(index.name, State.PENDING, job_id, tag, key)
        except CkptdError:
            written = now
        job, completed = jobs.decode_pending(
            raw, index.name, job_id, written=written,
            max_attempts=self.ix.settings.max_attempts_for(index.name))
        # Only a bare number can be a complete JSON text and yet a part of a longer one
        # being written; an object, list or string that parses is whole (a file put in by
        # mv, however fresh, is claimed at once).
        if completed and _may_grow(raw) and now - written < MALFORMED_GRACE:
            raise _TooYoung()
        return job, completed

    def _checkpoint_state(self, queue: str, job_id: str, message_limit: int
                          ) -> dict[str, Any] | None:
        try:
            raw = self.ix.store.read_checkpoint(queue, job_id)
        except (StoreError, MalformedJob) as exc:
            log.error("cannot read the checkpoint of %s/%s: %s", queue, job_id, exc)
            return None
        if raw is None:
            return None
        if len(raw) > message_limit:
            return {"state_ref": True}
        try:
            record = json.loads(raw)
        except ValueError:
            log.error("checkpoint of %s/%s is not JSON; the job starts afresh", queue, job_id)
            return None
        return {"state": record.get("state") if isinstance(record, dict) else None}

    def _malformed_pending(self, index: QueueIndex, job_id: str, reason: str, now: float,
                           tag: int, key: str) -> None:
        try:
            age = now - self.ix.store.mtime(index.name, State.PENDING, job_id, tag, key)
        except CkptdError:
            age = MALFORMED_GRACE
        if age < MALFORMED_GRACE:
            # Perhaps still being written in place: look again after the grace period.
            self.ix.delay(index, job_id, now + MALFORMED_GRACE)
            return
        index.pending.discard(job_id)
        self.ix.quarantine(index, State.PENDING, job_id, reason, tag, key)

    def undeliverable(self, identity: bytes, body: Body, now: float) -> None:
        """A job message could not reach its worker: put the job back at once."""
        ix = self.ix
        index = ix.queues.get(body.get("queue", ""))
        lease = index.claimed.get(body.get("id", "")) if index else None
        if index is None or lease is None or lease.attempt != body.get("attempt"):
            return
        lease.closing = True

        def moved(outcome: Outcome) -> None:
            if outcome is not None:
                lease.closing = False
                return
            ix.end_lease(index, lease)
            index.pending.add(lease.id)
            index.ready.appendleft(lease.id)

        lease.job = None
        # A plain rename back: the attempt never started, so it does not count.
        ix.txn.add(Move(index.name, lease.id, State.CLAIMED, State.PENDING,
                        priority=index.ready.prio.get(lease.id, 0), key=lease.key), moved)
        worker = ix.by_identity.get(identity)
        if worker is not None:
            self.forget_worker(worker, "unreachable")
