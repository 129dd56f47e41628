"""The operators' actions on jobs, each decided in one place: retry, cancel, purge, move.

A planner is a pure function: given what was found of a job (its state, its file, the tags
its name carries) and ``now``, it says what the action does (the store ops, in order, and
the edit of the job file, :mod:`ckptd.core.edits`) or raises the refusal. Two executors
carry the plans out, each in its own way: the store commands (``--root``,
:class:`ckptd.store.admin.StoreAdmin`) apply the ops to the store; a daemon
(:mod:`ckptd.daemon.engine.actions`, :mod:`ckptd.daemon.engine.queue_moves`) applies them to
its index and queues them in the turn's transaction. Only what is found, and how, is each
executor's own: the daemon knows from its index what the store commands read from the store.

The controls of a queue (pause, resume, limit) are planned in
:mod:`ckptd.store.control_plans`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ckptd.codec import encode_job
from ckptd.core import edits
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobNotFound, TransitionError, cannot_retry
from ckptd.core.job_keys import key_of_job
from ckptd.core.jobs import Job, priority_of
from ckptd.core.names import check_queue
from ckptd.core.states import TERMINAL, State, transition_name
from ckptd.store.ops import Delete, Move, Op, PutBlob, PutCheckpoint, PutNew

PURGE_SLICE = 64
"""Ids a purge looks at (their files' times) and removes together: one group of deletes on
a store, one step of a daemon's sliced work (:mod:`ckptd.daemon.engine.bulk`), which
dispatches between its turns' slices."""


# -- retry -----------------------------------------------------------------------------------

def plan_retry(settings: Settings, queue: str, job_id: str, job: Job | None, *,
               attempts: int | None = None, found: str | None = None) -> Move:
    """The move of failed job ``job_id`` (``job``: its file as read from ``failed/``) back to
    ``pending/``, with ``attempts`` fresh attempts (default: the queue's ``max_attempts``).

    ``job`` None: it is not in ``failed/`` (``found``: the state it is in, if any), and the
    retry is refused (TransitionError, or JobNotFound when it is nowhere).
    """
    if job is None:
        raise cannot_retry(job_id, found)
    transition_name(State.FAILED, State.PENDING)
    budget = attempts or settings.max_attempts_for(queue)
    return Move(queue, job_id, State.FAILED, State.PENDING,
                encode_job(edits.retried(job, budget)),
                priority=priority_of(job), key=key_of_job(job))


# -- cancel ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    """The attempt a claimed job is running, as whoever cancels it knows it."""

    number: int
    claimed_at: float | None
    worker: str | None


@dataclass(frozen=True)
class Cancel:
    """What a cancel does: the job's file removed (``remove``: pending or waiting), or the
    running attempt ended, its file edited by ``edit`` and moved to ``failed/`` (claimed)."""

    queue: str
    job_id: str
    was: State
    remove: Delete | None = None
    edit: Callable[[Job], Job] | None = None

    def ended(self, job: Job) -> Move:
        """The move of a cancelled claimed job's file (``job``, as read) to ``failed/``."""
        assert self.edit is not None, "only a claimed job's cancel edits its file"
        return Move(self.queue, self.job_id, State.CLAIMED, State.FAILED,
                    encode_job(self.edit(job)))


def cannot_cancel(queue: str, job_id: str, state: State | None) -> CkptdError:
    """The answer to a cancel of a job that cannot be cancelled: it is nowhere, or ended."""
    if state is None:
        return JobNotFound(f"no job {job_id!r} in queue {queue!r}")
    return TransitionError(f"job {job_id!r} is already {state.value}; "
                           f"use 'ckptd purge {queue} {state.value}' to remove it")


def plan_cancel(queue: str, job_id: str, state: State | None, *, now: float, by: str,
                attempt: Attempt | None = None, priority: int = 0, key: str = "") -> Cancel:
    """Cancel the job ``job_id`` found in ``state``: a pending (``priority``, ``key``: its
    file's name) or waiting job is removed; a claimed one whose ``attempt`` is known fails
    for good, its file recording ``by`` (who, from where). Anything else is refused
    (:func:`cannot_cancel`)."""
    if state in (State.PENDING, State.WAITING):
        transition_name(state, None)
        return Cancel(queue, job_id, state,
                      remove=Delete(queue, state, job_id, priority=priority, key=key))
    if state is State.CLAIMED and attempt is not None:
        transition_name(state, State.FAILED)
        running = attempt

        def edit(job: Job) -> Job:
            return edits.cancelled(job, attempt=running.number, claimed_at=running.claimed_at,
                                   now=now, worker=running.worker, by=by)

        return Cancel(queue, job_id, state, edit=edit)
    raise cannot_cancel(queue, job_id, state)


# -- purge -----------------------------------------------------------------------------------

def check_purge(state: State) -> None:
    """Raise TransitionError unless ``state`` is one a purge removes (done, failed)."""
    if state not in TERMINAL:  # removing a pending job is a cancel, not a purge
        raise TransitionError(f"only done or failed jobs can be purged, not {state.value}; "
                              "use 'ckptd cancel' for a pending job")


def purge_slices(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """``ids`` in slices of :data:`PURGE_SLICE`, the steps of a purge."""
    for start in range(0, len(ids), PURGE_SLICE):
        yield ids[start:start + PURGE_SLICE]


def plan_purge(queue: str, state: State, found: Sequence[tuple[str, float | None]], *,
               older_than: float | None, now: float) -> list[Delete]:
    """The deletes of a purge of ``state`` among the jobs ``found`` there: (id, the time
    its file last changed, or None when not looked at). All of them, or with ``older_than``
    those whose file changed more than ``older_than`` seconds before ``now``."""
    check_purge(state)
    return [Delete(queue, state, job_id) for job_id, mtime in found
            if older_than is None or (mtime is not None and now - mtime >= older_than)]


# -- move ------------------------------------------------------------------------------------

MOVABLE = (State.PENDING, State.FAILED)
"""The states a job may be moved to another queue from (a failed one with fresh attempts)."""


@dataclass(frozen=True)
class Attachments:
    """What a job has beside its file, copied along when it moves: its payload blob (when
    its payload is not inline) and its checkpoint."""

    payload: bytes | None = None
    checkpoint: bytes | None = None


@dataclass(frozen=True)
class QueueMove:
    """A job's move to another queue: ``create`` in the other queue (its blob and
    checkpoint first, then its file in ``pending/``), then, once that is durable,
    ``remove`` from its queue. A crash between the two leaves it in both: it may run twice,
    never zero times."""

    was: State
    create: tuple[Op, ...]
    remove: Delete


def cannot_move(queue: str, job_id: str, to: str, state: State | None) -> CkptdError | None:
    """Why job ``job_id`` of ``queue``, found in ``state``, cannot move to ``to`` (or None)."""
    if to == queue:
        return TransitionError(f"job {job_id!r} is in queue {queue!r} already")
    if state is None:
        return JobNotFound(f"no job {job_id!r} in queue {queue!r}")
    if state not in MOVABLE:
        return unmovable(job_id, state)
    return None


def unmovable(job_id: str, state: State) -> TransitionError:
    """The refusal of a move of a job found in ``state``, which a move does not take from
    (or, on a daemon, a job found there that its index does not hold yet)."""
    return TransitionError(f"job {job_id!r} is {state.value}: only pending and failed "
                           "jobs can be moved to another queue")


def plan_move(settings: Settings, queue: str, job_id: str, to: str, state: State, job: Job,
              *, now: float, by: str, attachments: Attachments = Attachments(),
              priority: int = 0, key: str = "", target_looked: bool = False) -> QueueMove:
    """Move job ``job_id`` (``job``: its file as read from ``state``; ``priority``, ``key``:
    the name of its pending file) to queue ``to`` with the same id, recording ``by``; a
    failed job gets the other queue's ``max_attempts`` afresh, as a retry would.

    ``target_looked``: the caller has made sure the id is in no state of ``to`` (the create
    then skips that look). Raises what :func:`cannot_move` says.
    """
    check_queue(to)
    refusal = cannot_move(queue, job_id, to, state)
    if refusal is not None:
        raise refusal
    budget = settings.max_attempts_for(to) if state is State.FAILED else None
    edits.moved(job, to=to, now=now, by=by, budget=budget)
    create: list[Op] = []
    if job.get("payload_ref") and attachments.payload is not None:
        create.append(PutBlob(to, job_id, "payload", attachments.payload))
        job["payload_ref"] = f"blobs/{job_id}.payload"  # where it is in ``to``
    if attachments.checkpoint is not None:
        create.append(PutCheckpoint(to, job_id, attachments.checkpoint))
    create.append(PutNew(to, job_id, encode_job(job), check_other_states=not target_looked,
                         priority=priority_of(job), key=key_of_job(job)))
    return QueueMove(state, tuple(create),
                     Delete(queue, state, job_id, priority=priority, key=key))
