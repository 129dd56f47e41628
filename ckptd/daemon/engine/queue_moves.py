"""Moving a job to another queue on a running daemon (the operators' ``move``).

A pending job, or a failed one (which gets fresh attempts, as a retry would), is created in
the other queue's ``pending/`` with the same id, then removed from its queue; a claimed or
done job is refused. Both store operations go in one group: a crash between them leaves the
job in both queues, so it may run twice (at-least-once), never zero times. Its payload blob
and checkpoint are copied along. The move is planned by
:func:`ckptd.store.plans.plan_move`, as the store command's is (:mod:`ckptd.store.moves`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ckptd.codec import decode_job
from ckptd.core.errors import CkptdError, JobExists, JobNotFound
from ckptd.core.job_keys import key_of_job
from ckptd.core.names import check_queue
from ckptd.core.states import State
from ckptd.daemon.engine.engine import Engine
from ckptd.store.base import Outcome
from ckptd.store.plans import Attachments, cannot_move, plan_move, unmovable

log = logging.getLogger(__name__)

Reply = Callable[[dict[str, str] | CkptdError], None]


def move_job(engine: Engine, queue: str, job_id: str, to: str, reply: Reply, *, now: float,
             by: str) -> None:
    """Move job ``job_id`` of ``queue`` to queue ``to`` (see the module's doc)."""
    try:
        check_queue(to)
        index = engine.index.queue(queue)
        state = State.PENDING if job_id in index.pending else State.FAILED \
            if engine.store.exists(queue, State.FAILED, job_id) else None
        refusal = cannot_move(queue, job_id, to, state)
        if isinstance(refusal, JobNotFound):  # not one to move here: where is it?
            where = engine.index.where(queue, job_id)
            refusal = refusal if where is None else unmovable(job_id, State(where))
        if refusal is not None:
            raise refusal
        assert state is not None  # cannot_move refuses a job that is nowhere
        target = engine.index.queue(to)
        if job_id in target.pending or job_id in target.claimed or engine.index.where(to, job_id):
            raise JobExists(to, job_id, engine.index.where(to, job_id) or "pending")
        store = engine.store
        # a pending job's name carries its priority and key (the index knows them)
        priority, key = (index.ready.prio.get(job_id, 0), index.ready.key_of(job_id)) \
            if state is State.PENDING else (0, "")
        job = decode_job(store.read(queue, state, job_id, priority, key), queue, job_id)
        attachments = Attachments(
            payload=store.read_blob(queue, job_id, "payload") if job.get("payload_ref")
            else None,
            checkpoint=store.read_checkpoint(queue, job_id))
        plan = plan_move(engine.settings, queue, job_id, to, state, job, now=now, by=by,
                         attachments=attachments, priority=priority, key=key,
                         target_looked=True)
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
        target.ready.note_key(job_id, key_of_job(job))
        target.ready.append(job_id)
        if state is State.FAILED:
            index.failed = max(0, index.failed - 1)
        engine.creating.forget(queue, job_id)
        engine.txn.add(plan.remove, removed)

    def removed(outcome: Outcome) -> None:
        log.info("move", extra={"fields": {"queue": queue, "id": job_id, "from": state.value,
                                           "to": f"{to}/pending", "by": by}})
        reply({"queue": to, "id": job_id, "was": state.value} if outcome is None else outcome)

    *first, last = plan.create
    for op in first:
        engine.txn.add(op)
    engine.txn.add(last, created)
