"""Child process of the store crash tests: run transitions until CKPTD_CRASH_AT kills it.

Usage: ``python -m tests.faults.crash_child ROOT FSYNC each|group local|broken``

The parent has put the jobs of :func:`initial_jobs` in place. This process carries out
:data:`PLAN` on a LocalStore, one op per ``apply()`` (``each``) or all in one group
(``group``), printing ``start K`` before and ``done K`` after each (flushed), so the parent
knows which op was in flight when the armed crash point sent SIGKILL. ``broken`` uses the
deliberately unsafe store of the negative control.
"""

from __future__ import annotations

import sys
from typing import Any

from ckptd.core import jobs
from ckptd.core.config import FsyncMode
from ckptd.core.states import State
from ckptd.store.base import Move, Op, PutNew
from ckptd.store.local.backend import LocalStore

Q = "crash"
P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED
NOW = 1_795_000_000.0

# (job id, from, to, rewritten?) in the order the child carries them out; None = new job.
PLAN: list[tuple[str, State | None, State, bool]] = [
    ("new-job", None, P, True),  # submit: write, rename into pending/
    ("claim-me", P, C, False),  # claim: a pure rename
    ("finish-me", C, D, True),  # finish with the result
    ("release-me", C, P, True),  # release (lease lost) with one more attempt
    ("retry-me", F, P, True),  # an operator's retry
]
BYSTANDERS = {"keep-p": P, "keep-c": C, "keep-d": D, "keep-f": F}


def initial_jobs() -> dict[str, tuple[State, bytes]]:
    """Every job the parent puts in place before the child starts: id -> (state, bytes)."""
    found: dict[str, tuple[State, bytes]] = {}
    starts = {job_id: src for job_id, src, _, _ in PLAN if src is not None}
    for job_id, state in {**starts, **BYSTANDERS}.items():
        job = jobs.new_job(Q, job_id, {"item": job_id}, NOW, max_attempts=3)
        job["rev"] = 2
        job["attempts"] = 3 if state is F else 1
        found[job_id] = (state, jobs.encode(job))
    return found


def new_job_bytes() -> bytes:
    return jobs.encode(jobs.new_job(Q, "new-job", {"item": "new"}, NOW, max_attempts=3))


def rewritten(job_id: str, data: bytes) -> bytes:
    """The file a move of ``job_id`` writes, made from the file it moves (as the daemon would)."""
    job: dict[str, Any] = jobs.decode(data, Q, job_id)
    if job_id == "finish-me":
        job["attempts"] += 1
        job["result"] = {"price": 42}
    elif job_id == "release-me":
        job["attempts"] += 1
        job["last_error"] = {"message": "lease lost"}
    elif job_id == "retry-me":
        job["max_attempts"] = job["attempts"] + 3
    return jobs.encode(jobs.bump(job))


def plan_ops() -> list[Op]:
    start = initial_jobs()
    ops: list[Op] = []
    for job_id, src, dst, rewrite in PLAN:
        if src is None:
            ops.append(PutNew(Q, job_id, new_job_bytes()))
        else:
            data = rewritten(job_id, start[job_id][1]) if rewrite else None
            ops.append(Move(Q, job_id, src, dst, data))
    return ops


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    root, fsync, grouping, kind = argv
    if kind == "broken":
        from tests.faults.test_store_crash import BrokenLocalStore

        store: LocalStore = BrokenLocalStore(root, FsyncMode(fsync))
    else:
        store = LocalStore(root, FsyncMode(fsync))
    ops = plan_ops()
    batches = [ops] if grouping == "group" else [[op] for op in ops]
    for number, batch in enumerate(batches, 1):
        label = "group" if grouping == "group" else str(number)
        say(f"start {label}")
        outcomes = store.apply(batch)
        if any(o is not None for o in outcomes):
            say(f"error {outcomes}")
            return 3
        say(f"done {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
