"""``ckptd --root ... move``: a job moved to another queue on the store itself (no daemon).

The same as a daemon's move (:mod:`ckptd.daemon.engine.queue_moves`): a pending or failed
job (the latter with fresh attempts) is created in the other queue's ``pending/`` with the
same id, its payload blob and checkpoint copied first, then removed from its queue. A crash
between the two leaves it in both queues: it may run twice, never zero times.
"""

from __future__ import annotations

from ckptd.codec import decode_job, encode_job
from ckptd.core import edits
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobNotFound, TransitionError
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.states import State
from ckptd.store.base import Delete, Op, PutBlob, PutCheckpoint, PutNew, Store


def move_on_store(store: Store, settings: Settings, queue: str, job_id: str, to: str, *,
                  now: float, by: str) -> str:
    """Move ``job_id`` of ``queue`` to queue ``to``; return the state it was in."""
    check_queue(queue)
    check_queue(to)
    check_job_id(job_id)
    if to == queue:
        raise TransitionError(f"job {job_id!r} is in queue {queue!r} already")
    states = store.find(queue, job_id)
    state = next((s for s in (State.PENDING, State.FAILED) if s in states), None)
    if state is None:
        if not states:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        raise TransitionError(f"job {job_id!r} is {states[0].value}: only pending and failed "
                              "jobs can be moved to another queue")
    job = decode_job(store.read(queue, state, job_id), queue, job_id)
    budget = settings.max_attempts_for(to) if state is State.FAILED else None
    edits.moved(job, to=to, now=now, by=by, budget=budget)
    ops: list[Op] = []
    if job.get("payload_ref"):
        ops.append(PutBlob(to, job_id, "payload", store.read_blob(queue, job_id, "payload")))
    checkpoint = store.read_checkpoint(queue, job_id)
    if checkpoint is not None:
        ops.append(PutCheckpoint(to, job_id, checkpoint))
    ops.append(PutNew(to, job_id, encode_job(job)))
    for outcome in store.apply(ops):
        if isinstance(outcome, CkptdError):
            raise outcome
    for outcome in store.apply([Delete(queue, state, job_id)]):
        if isinstance(outcome, CkptdError):
            raise outcome
    return state.value
