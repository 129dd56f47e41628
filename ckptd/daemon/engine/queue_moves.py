"""Moving a job to another queue on a running daemon (the operators' ``move``).

A pending job, or a failed one (which gets fresh attempts, as a retry would), is created in
the other queue's ``pending/`` with the same id, then removed from its queue; a claimed or
done job is refused. Both store operations go in one group: a crash between them leaves the
job in both queues, so it may run twice (at-least-once), never zero times. Its payload blob
and checkpoint are copied along.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ckptd.codec import decode_job, encode_job
from ckptd.core import edits
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, TransitionError
from ckptd.core.names import check_queue
from ckptd.core.states import State
from ckptd.daemon.engine.engine import Engine
from ckptd.store.base import Delete, Op, Outcome, PutBlob, PutCheckpoint, PutNew

log = logging.getLogger(__name__)

Reply = Callable[[dict[str, str] | CkptdError], None]


def move_job(engine: Engine, queue: str, job_id: str, to: str, reply: Reply, *, now: float,
             by: str) -> None:
    """Move job ``job_id`` of ``queue`` to queue ``to`` (see the module's doc)."""
    try:
        check_queue(to)
        if to == queue:
            raise TransitionError(f"job {job_id!r} is in queue {queue!r} already")
        index = engine.queue(queue)
        state = State.PENDING if job_id in index.pending else State.FAILED \
            if engine.store.exists(queue, State.FAILED, job_id) else None
        if state is None:
            where = engine.where(queue, job_id)
            if where is None:
                raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
            raise TransitionError(f"job {job_id!r} is {where}: only pending and failed jobs "
                                  "can be moved to another queue")
        target = engine.queue(to)
        if job_id in target.pending or job_id in target.claimed or engine.where(to, job_id):
            raise JobExists(to, job_id, engine.where(to, job_id) or "pending")
        store = engine.store
        job = decode_job(store.read(queue, state, job_id), queue, job_id)
        budget = engine.settings.max_attempts_for(to) if state is State.FAILED else None
        edits.moved(job, to=to, now=now, by=by, budget=budget)
        ops: list[Op] = []
        if job.get("payload_ref"):
            ops.append(PutBlob(to, job_id, "payload", store.read_blob(queue, job_id, "payload")))
            job["payload_ref"] = f"blobs/{job_id}.payload"
        checkpoint = store.read_checkpoint(queue, job_id)
        if checkpoint is not None:
            ops.append(PutCheckpoint(to, job_id, checkpoint))
    except CkptdError as exc:
        reply(exc)
        return
    if state is State.PENDING:  # no claim of it from now on
        index.pending.discard(job_id)
        index.delayed_at.pop(job_id, None)
    target.pending.add(job_id)  # reserved: a submit of this id in the same round is refused

    def created(outcome: Outcome) -> None:
        if outcome is not None:
            target.pending.discard(job_id)
            if state is State.PENDING:
                index.pending.add(job_id)
                index.ready.append(job_id)
            reply(outcome)
            return
        target.added_since_scan.add(job_id)
        target.ready.note(job_id, job.get("priority"))
        target.ready.append(job_id)
        if state is State.FAILED:
            index.failed = max(0, index.failed - 1)
        engine.txn.add(Delete(queue, state, job_id), removed)

    def removed(outcome: Outcome) -> None:
        log.info("move", extra={"fields": {"queue": queue, "id": job_id, "from": state.value,
                                           "to": f"{to}/pending", "by": by}})
        reply({"queue": to, "id": job_id, "was": state.value} if outcome is None else outcome)

    for op in ops:
        engine.txn.add(op)
    engine.txn.add(PutNew(to, job_id, encode_job(job), check_other_states=False), created)
