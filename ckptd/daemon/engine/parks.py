"""Parked jobs: a handler that waits frees its worker slot and its lease.

A handler checkpoints and raises :class:`ckptd.Park`; its worker answers ``park`` (with
what the job waits for: signals, a time, its children, a timeout). The answer is fenced by
the attempt number like ``done`` and ``failed``; the job file is edited
(:func:`ckptd.core.waits.parked`: the attempt ends without counting against
``max_attempts``) and moved ``claimed -> waiting``, its checkpoint stays in ``state/``, and
once the move is durable the lease is gone and the worker is told (``ack``). From then on
it is a waiting job like any other (:mod:`~ckptd.daemon.engine.waits`): it wakes into
``pending/``, and its next attempt starts from its checkpoint with ``job.signals``.
"""

from __future__ import annotations

import logging

from ckptd.codec import encode_job
from ckptd.core import waits
from ckptd.core.errors import CkptdError
from ckptd.core.jobs import ErrorRecord
from ckptd.core.states import State
from ckptd.daemon.engine.index import Index, WorkerInfo
from ckptd.daemon.engine.results import Answers
from ckptd.daemon.engine.waits import Waits
from ckptd.store.base import Move, Outcome
from ckptd.wire.messages import Park

log = logging.getLogger(__name__)

MAX_PARK = 10 * 365 * 86400.0  # a time further than this is refused (a unit mistake)


def wait_of_park(queue: str, body: Park, now: float) -> waits.Wait:
    """What a ``park`` answer asks to wait for; raise CkptdError for what cannot be."""
    until = body.until
    timeout = body.timeout
    if until is not None and not now - MAX_PARK < until < now + MAX_PARK:
        raise CkptdError(f"Park(until={until}) is not a time within ten years (seconds since "
                         "the epoch)")
    if timeout is not None and not 0 < timeout < MAX_PARK:
        raise CkptdError(f"Park(timeout={timeout}) must be between 0 and ten years of seconds")
    children = waits.check_refs(body.children, queue) if body.children else []
    signals = tuple(waits.check_signal(s) for s in body.signals or ())
    wait = waits.Wait(rule="run", children=tuple(children), signals=signals,
                      until=until, timeout=now + timeout if timeout is not None else None)
    if not wait.children and not signals and until is None and timeout is None:
        if body.children_asked:
            wait.until = now  # children=True but it spawned none: nothing to wait for
        else:
            raise CkptdError("a park must wait for something: until, signal, children or "
                             "timeout")
    return wait


class Parks:
    """``park`` answers of workers."""

    def __init__(self, index: Index, answers: Answers, waits_part: Waits) -> None:
        self.ix = index
        self.answers = answers
        self.waits = waits_part

    def park(self, worker: WorkerInfo | None, body: Park, now: float,
             identity: bytes | None = None) -> None:
        """A handler parked: move its job to waiting/, free its slot and its lease; then
        confirm it to ``identity`` (default: the worker's)."""
        ix = self.ix
        answers = self.answers
        lease, identity = answers.answered(worker, body, now, identity)
        if lease is None:
            return
        try:
            wait = wait_of_park(lease.queue, body, now)
        except CkptdError as exc:
            error: ErrorRecord = {"message": f"bad park: {exc}", "type": "Park",
                                  "attempt": lease.attempt}
            answers.end_attempt(lease, error, now, may_retry=False, delay=None,
                                outcome="error", confirm=lambda: answers._ack(identity, body))
            return
        job = ix.claimed_job(lease)
        if job is None:
            return
        lease.closing = True
        index = ix.queue(lease.queue)
        who = lease.worker or (worker.id if worker else None)
        waits.parked(job, attempt=lease.attempt, claimed_at=lease.claimed_at, now=now,
                     worker=who, wait=wait)
        if body.reason:
            job["wait"]["reason"] = body.reason[:500]

        def moved(outcome: Outcome) -> None:
            if outcome is not None:
                answers._move_failed(lease, outcome, now)
                return
            ix.end_lease(index, lease)
            self.waits.counters["parked"] += 1
            ix.log_move(lease, State.CLAIMED, State.WAITING, now,
                        signals=list(wait.signals), children=len(wait.children))
            self.waits.register(lease.queue, lease.id, job, now)
            answers._ack(identity, body)

        ix.txn.add(Move(lease.queue, lease.id, State.CLAIMED, State.WAITING, encode_job(job)),
                   moved)
