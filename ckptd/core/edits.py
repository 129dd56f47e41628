"""The edits of a job file, one pure function each: what finishing, failing an attempt,
cancelling and retrying write into the file.

The daemon (answers of workers, lease expiry, cancel through the control socket) and the
store commands of the CLI (``--root cancel``, ``--root retry``) call the same functions, so a
job ended either way carries the same fields (``attempts``, ``history``, ``finished_at``,
``last_error``). Each function changes the given dict and returns it, with ``rev`` bumped:
the edited copy must win over the old one if a crash leaves both (:mod:`ckptd.core.states`).
"""

from __future__ import annotations

from typing import Any

from ckptd.core.jobs import ErrorRecord, Job, add_history, bump, error_record
from ckptd.core.timefmt import utc_iso

CANCELLED = "Cancelled"
"""The error type of an attempt ended by an operator's cancel."""

GIVEN_BACK = "GivenBack"
"""The error type of an attempt that its worker gave back unfinished (it was stopped)."""


def finished(job: Job, *, attempt: int, claimed_at: float, now: float, worker: str | None,
             result: Any = None, result_ref: str | None = None) -> Job:
    """The file of a job whose attempt ``attempt`` succeeded, for ``done/``.

    ``result_ref`` names a blob holding the result (then ``result`` is None).
    """
    job["attempts"] = attempt
    job["claimed_at"] = utc_iso(claimed_at)
    job["finished_at"] = utc_iso(now)
    job["worker"] = worker
    job.pop("not_before", None)
    if result_ref:
        job["result_ref"] = result_ref
        job["result"] = None
    else:
        job["result"] = result
    add_history(job, {"attempt": attempt, "worker": worker, "claimed": job["claimed_at"],
                      "ended": job["finished_at"], "outcome": "done"})
    return bump(job)


def may_retry(job: Job, attempt: int, requested: bool) -> bool:
    """Whether a job whose attempt ``attempt`` failed gets another one."""
    return requested and attempt < int(job["max_attempts"])


def attempt_failed(job: Job, *, attempt: int, claimed_at: float | None, now: float,
                   error: ErrorRecord, outcome: str, retry_at: float | None) -> Job:
    """The file of a job whose attempt ``attempt`` ended without success.

    ``error`` is the ``last_error`` record (:func:`ckptd.core.jobs.error_record`);
    ``outcome`` names how the attempt ended in the history (error, expired, cancelled,
    time-limit). With ``retry_at`` the job goes back to ``pending/`` not before then;
    without, it is finished (``failed/``).
    """
    job["attempts"] = attempt
    job["last_error"] = error
    add_history(job, {"attempt": attempt, "worker": error.get("worker"),
                      "claimed": utc_iso(claimed_at) if claimed_at is not None else None,
                      "ended": utc_iso(now), "outcome": outcome,
                      "error": str(error.get("message", ""))[:500]})
    if retry_at is not None:
        job["not_before"] = utc_iso(retry_at)
    else:
        job["finished_at"] = utc_iso(now)
        job.pop("not_before", None)
    return bump(job)


def cancelled(job: Job, *, attempt: int, claimed_at: float | None, now: float,
              worker: str | None, by: str) -> Job:
    """The file of a claimed job cancelled by ``by`` (who, from where), for ``failed/``."""
    error = error_record(f"cancelled by {by}", CANCELLED, None, attempt, now, worker)
    error["by"] = by
    return attempt_failed(job, attempt=attempt, claimed_at=claimed_at, now=now, error=error,
                          outcome="cancelled", retry_at=None)


def given_back(job: Job, *, attempt: int, claimed_at: float | None, now: float,
               worker: str | None, reason: str) -> Job:
    """The file of a claimed job whose worker stopped before the attempt ended and gave it
    back, for ``pending/`` (to run again now).

    The attempt ends (``attempts`` is the fencing token and only grows), and ``max_attempts``
    grows with it, so that stopping a worker never costs a job one of its attempts.
    """
    error = error_record(reason, GIVEN_BACK, None, attempt, now, worker)
    attempt_failed(job, attempt=attempt, claimed_at=claimed_at, now=now, error=error,
                   outcome="given back", retry_at=now)
    job["max_attempts"] = int(job["max_attempts"]) + 1
    job.pop("not_before", None)
    return job


def retried(job: Job, budget: int) -> Job:
    """The file of a failed job made ready to run again with ``budget`` fresh attempts.

    ``attempts`` is never reset (it is the fencing token); ``max_attempts`` grows instead.
    """
    job["max_attempts"] = int(job["attempts"]) + budget
    job.pop("not_before", None)
    return bump(job)


def debounced(old: Job, new: Job) -> Job:
    """The file of a pending job after a submit debounced onto it: ``new`` (the new
    submit's payload and start) with ``old``'s creation, attempts and history, and one more
    in ``debounced`` (:mod:`ckptd.core.unique_windows`)."""
    job = new.copy()
    job["created"] = old["created"]
    job["attempts"] = old["attempts"]
    if "history" in old:
        job["history"] = old["history"]
    if "last_error" in old:
        job["last_error"] = old["last_error"]
    if "batch" in old:
        job["batch"] = old["batch"]
    if "lineage" in old:
        job["lineage"] = old["lineage"]
    job["debounced"] = int(old.get("debounced") or 0) + 1
    job["rev"] = int(old.get("rev") or 0) + 1
    return job


def moved(job: Job, *, to: str, now: float, by: str, budget: int | None = None) -> Job:
    """The file of a pending or failed job moved to queue ``to`` by ``by``, for its
    ``pending/`` there; a failed one gets ``budget`` fresh attempts (as a retry would)."""
    origin = job.get("queue")
    if budget is not None:
        retried(job, budget)
    job["queue"] = to
    job.pop("not_before", None)
    job.setdefault("moves", []).append({"from": origin, "to": to, "at": utc_iso(now),
                                        "by": by})
    return bump(job)


def who_am_i(how: str) -> str:
    """``user@host (how)``: who an operator's action is recorded as coming from."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} ({how})"
