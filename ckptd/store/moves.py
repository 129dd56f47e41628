"""``ckptd --root ... move``: a job moved to another queue on the store itself (no daemon).

The move is planned by :func:`ckptd.store.plans.plan_move`, as a daemon's is
(:mod:`ckptd.daemon.engine.queue_moves`): a pending or failed job (the latter with fresh
attempts) is created in the other queue's ``pending/`` with the same id, its payload blob
and checkpoint copied first, then removed from its queue. A crash between the two leaves it
in both queues: it may run twice, never zero times.
"""

from __future__ import annotations

from ckptd.codec import decode_job
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.states import State
from ckptd.store.base import Store
from ckptd.store.plans import MOVABLE, Attachments, cannot_move, plan_move


def move_on_store(store: Store, settings: Settings, queue: str, job_id: str, to: str, *,
                  now: float, by: str) -> str:
    """Move ``job_id`` of ``queue`` to queue ``to``; return the state it was in."""
    check_queue(queue)
    check_queue(to)
    check_job_id(job_id)
    states = store.find(queue, job_id) if to != queue else []
    # a job found in two states (a crash) moves from pending first
    state = next((s for s in MOVABLE if s in states), states[0] if states else None)
    refusal = cannot_move(queue, job_id, to, state)
    if refusal is not None:
        raise refusal
    assert state is not None  # cannot_move refuses a job that is nowhere
    priority, key = (store.pending_tag(queue, job_id) or (0, "")) if state is State.PENDING \
        else (0, "")
    job = decode_job(store.read(queue, state, job_id, priority, key), queue, job_id)
    attachments = Attachments(
        payload=store.read_blob(queue, job_id, "payload") if job.get("payload_ref") else None,
        checkpoint=store.read_checkpoint(queue, job_id))
    plan = plan_move(settings, queue, job_id, to, state, job, now=now, by=by,
                     attachments=attachments, priority=priority, key=key)
    for ops in (plan.create, (plan.remove,)):
        for outcome in store.apply(ops):
            if isinstance(outcome, CkptdError):
                raise outcome
    return state.value
