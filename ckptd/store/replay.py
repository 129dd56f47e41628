"""``ckptd replay``: finished jobs copied as new pending jobs, with their lineage.

A replay reads done or failed jobs of one queue (those the filter takes), and creates for
each a new pending job with the same payload, attempts budget, time limit and priority, and
``replay_of`` naming the job it copies (queue, id, state, root). The copies go into the
same store or another one (a sandbox root, to try a fix on real work without touching the
real queue). The source is only read: nothing in it changes.

The new jobs are created like any submit on a store (create-only ``pending/`` files, a
running daemon picks them up); with ``keep_checkpoint`` a job's last checkpoint is copied
first, so the copy resumes where the original stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ckptd.codec import decode_job, encode_job
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobNotFound, MalformedJob, TransitionError
from ckptd.core.job_filter import JobFilter
from ckptd.core.jobs import Job
from ckptd.core.names import check_queue
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.store.admin import load_payload, prepare_submit
from ckptd.store.base import Op, PutCheckpoint, PutNew, Store

GROUP = 500  # jobs created per store group (one sync each)
SHOWN = 20  # ids listed in the answer


ReplayedView = TypedDict("ReplayedView", {
    "queue": str, "from": str, "target": str, "looked": int, "matched": int, "created": int,
    "checkpoints": int, "skipped": int, "dry_run": bool, "sample": list[list[str]]})
"""A replay's answer as JSON-able values (``from`` is a keyword: the functional form)."""


@dataclass
class Replayed:
    """What a replay did (or, dry, would do)."""

    queue: str
    state: str
    target: str
    looked: int = 0  # job files read
    matched: int = 0
    created: int = 0
    checkpoints: int = 0
    skipped: int = 0  # unreadable files, or gone meanwhile
    dry_run: bool = False
    sample: list[tuple[str, str]] = field(default_factory=list)  # (source id, new id)

    def as_dict(self) -> ReplayedView:
        """The answer as JSON-able values."""
        return {"queue": self.queue, "from": self.state, "target": self.target,
                "looked": self.looked, "matched": self.matched, "created": self.created,
                "checkpoints": self.checkpoints, "skipped": self.skipped,
                "dry_run": self.dry_run, "sample": [list(p) for p in self.sample]}


def replay(source: Store, target: Store, settings: Settings, queue: str, state: State,
           flt: JobFilter, *, now: float, keep_checkpoint: bool = False,
           dry_run: bool = False, limit: int | None = None,
           progress: Callable[[Replayed], None] | None = None) -> Replayed:
    """Copy the done or failed jobs of ``queue`` that ``flt`` takes into ``target`` as new
    pending jobs (see the module's doc); return what was done. ``limit``: at most this many.

    Not atomic as a whole: each group of :data:`GROUP` jobs is one store group, so a crash
    leaves the groups made so far (each copy is a whole job, never half of one).
    """
    if state not in (State.DONE, State.FAILED):
        raise TransitionError(f"replay copies done or failed jobs, not {state.value}")
    check_queue(queue)
    if queue not in source.queues():
        raise JobNotFound(f"no queue {queue!r} in {source.url}")
    answer = Replayed(queue, state.value, target.url, dry_run=dry_run)
    same = target.url == source.url
    ops: list[Op] = []
    for job_id in source.ids(queue, state):
        if limit is not None and answer.matched >= limit:
            break
        if not flt.id_may_match(job_id):
            continue
        try:
            job = decode_job(source.read(queue, state, job_id), queue, job_id)
            answer.looked += 1
            if not flt.matches(job):
                continue
            payload = load_payload(source, job)
            checkpoint = source.read_checkpoint(queue, job_id) if keep_checkpoint else None
        except (JobNotFound, MalformedJob, ValueError):
            answer.skipped += 1
            continue
        answer.matched += 1
        if dry_run:
            if len(answer.sample) < SHOWN:
                answer.sample.append((job_id, ""))
            continue
        ops += _copy_ops(settings, queue, state, job, payload, checkpoint, now,
                         None if same else source.url, answer)
        if len(ops) >= GROUP:
            _apply(target, ops)
            ops = []
            if progress is not None:
                progress(answer)
    if ops:
        _apply(target, ops)
    if progress is not None:
        progress(answer)
    return answer


def _copy_ops(settings: Settings, queue: str, state: State, job: Job,
              payload: Any, checkpoint: bytes | None, now: float, root: str | None,
              answer: Replayed) -> list[Op]:
    """The ops that create one copy: its blob, its checkpoint, then its pending file."""
    limit = job.get("time_limit")
    priority = job.get("priority")
    attempts = job.get("max_attempts")
    new, ops = prepare_submit(
        settings, queue, payload, now, fresh=True,
        max_attempts=attempts if isinstance(attempts, int) and attempts > 0 else None,
        time_limit=limit if isinstance(limit, (int, float)) and limit > 0 else None,
        priority=priority if isinstance(priority, int) and not isinstance(priority, bool)
        else None)
    lineage: dict[str, str] = {"queue": queue, "id": job["id"], "state": state.value,
                               "at": utc_iso(now)}
    if root is not None:
        lineage["root"] = root
    new["replay_of"] = lineage
    new_id = str(new["id"])
    put = ops.pop()  # the pending file, written again with its lineage
    assert isinstance(put, PutNew)
    if checkpoint is not None:
        ops.append(PutCheckpoint(queue, new_id, checkpoint))
        answer.checkpoints += 1
    ops.append(PutNew(queue, new_id, encode_job(new), check_other_states=False))
    answer.created += 1
    if len(answer.sample) < SHOWN:
        answer.sample.append((str(job["id"]), new_id))
    return ops


def _apply(target: Store, ops: list[Op]) -> None:
    for outcome in target.apply(ops):
        if isinstance(outcome, CkptdError):
            raise outcome
