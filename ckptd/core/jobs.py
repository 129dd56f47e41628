"""The job file: a self-describing JSON document that ``cat`` can read.

A job file holds everything known about one job::

    {"id": "...", "queue": "price", "payload": {...}, "created": "2026-11-27T19:24:16.1Z",
     "attempts": 0, "max_attempts": 3, "rev": 0, ...}

``attempts`` counts the attempts that have ended; while a job is claimed its running attempt
is ``attempts + 1`` and that number is the fencing token every worker message carries.
``rev`` counts rewrites of the file and decides which copy wins when a crash leaves a job in
two folders (see :mod:`ckptd.core.states`). Optional keys: ``not_before``, ``last_error``,
``result``, ``claimed_at``, ``finished_at``, ``worker``, ``history``, ``batch``, ``lineage``,
``time_limit`` (seconds an attempt may run), ``priority`` (lower runs first; absent = 0),
``key`` (its key for flow control, :mod:`ckptd.core.job_keys`), ``debounced`` (submits that
replaced its payload while it was pending, :mod:`ckptd.core.unique_windows`),
``meta`` (fields the client's hooks added: a trace context, a tenant, ...),
``payload_ref`` / ``result_ref`` when the value lives in a blob beside the job (and
``payload_size``), ``after`` / ``on_parent_failure`` / ``wait`` / ``woken`` (work that waits,
:mod:`ckptd.core.waits`), ``next`` (the job its result was handed over to), ``moves``
(to other queues) and ``replay_of`` (the job it replays). :class:`Job` gives each its type.
Unknown keys are kept as they are, so other tools may add their own.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn, NotRequired, TypedDict, TypeGuard

from ckptd.core.errors import InvalidInput, MalformedJob
from ckptd.core.names import is_valid_name
from ckptd.core.queue_controls import MAX_PRIORITY
from ckptd.core.timefmt import utc_iso


class ErrorRecord(TypedDict):
    """``last_error``: how the last failed attempt ended (:func:`error_record`)."""

    message: str
    type: str
    attempt: int
    at: NotRequired[str]
    """When it ended (missing in the error of a park the daemon refused)."""
    traceback: NotRequired[str]
    worker: NotRequired[str]
    by: NotRequired[str]
    """Who cancelled it (an operator's cancel)."""
    parent: NotRequired[str]
    """The parent that failed (a waiting job abandoned)."""
    log_tail: NotRequired[list[str]]
    """The last lines of the attempt's own log."""


class HistoryEntry(TypedDict):
    """One ended attempt in ``history``."""

    attempt: int
    worker: str | None
    claimed: str | None
    ended: str
    outcome: str
    error: NotRequired[str]


class WaitRecord(TypedDict, total=False):
    """``wait``: what a job in ``waiting/`` waits for (:mod:`ckptd.core.waits`)."""

    since: str
    signals: list[str]
    until: str
    timeout: str
    children: list[str]
    ended: dict[str, str]
    reason: str
    """Why its handler parked, in its words."""


class WokenRecord(TypedDict):
    """``woken``: why a waiting job woke, and the ends and signals its handler reads."""

    reason: str
    at: str
    parents: NotRequired[dict[str, str]]
    children: NotRequired[dict[str, str]]
    signals: NotRequired[dict[str, Any]]
    """Each signal's data, as its sender gave it."""


class JobRef(TypedDict):
    """A job named by queue and id (``next``: the job a result was handed over to)."""

    queue: str
    id: str


MoveRecord = TypedDict("MoveRecord", {"from": str, "to": str, "at": str, "by": str})
"""One move to another queue in ``moves`` (``from`` is a keyword: the functional form)."""


class Job(TypedDict):
    """A decoded job file (see the module docstring); unknown keys are kept as they are."""

    id: str
    queue: str
    created: str
    attempts: int
    max_attempts: int
    rev: NotRequired[int]
    payload: NotRequired[Any]
    payload_ref: NotRequired[str]
    payload_size: NotRequired[int]
    not_before: NotRequired[str]
    last_error: NotRequired[ErrorRecord]
    result: NotRequired[Any]
    result_ref: NotRequired[str]
    claimed_at: NotRequired[str]
    finished_at: NotRequired[str]
    worker: NotRequired[str | None]
    history: NotRequired[list[HistoryEntry]]
    batch: NotRequired[str]
    lineage: NotRequired[list[str]]
    time_limit: NotRequired[float]
    priority: NotRequired[int]
    key: NotRequired[str]
    debounced: NotRequired[int]
    meta: NotRequired[dict[str, Any]]
    after: NotRequired[list[str]]
    on_parent_failure: NotRequired[str]
    wait: NotRequired[WaitRecord]
    woken: NotRequired[WokenRecord]
    next: NotRequired[JobRef]
    moves: NotRequired[list[MoveRecord]]
    replay_of: NotRequired[dict[str, str]]


REQUIRED_FIELDS = ("id", "queue", "created", "attempts", "max_attempts")
HISTORY_LIMIT = 20
TRACEBACK_LIMIT = 8192

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


MAX_DELAY = 10 * 366 * 86400.0
"""The longest delay a submit may ask for (ten years): later is surely a mistake."""
MIN_TIME_LIMIT = 0.001
"""The shortest time limit of an attempt (1 ms); MAX_DELAY is the longest."""


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def is_woken(value: object) -> TypeGuard[WokenRecord]:
    """True when ``value`` is a ``woken`` record (its reason and time are there)."""
    return isinstance(value, dict) and isinstance(value.get("reason"), str) \
        and isinstance(value.get("at"), str)


def check_delay(value: object) -> float:
    """A submit's delay in seconds, checked: from 0 to ten years (InvalidInput otherwise)."""
    seconds = _seconds(value)
    if seconds is None or not 0 <= seconds <= MAX_DELAY:
        raise InvalidInput(f"delay {value!r} is out of range: give from 0s to 10 years "
                           "(for example 30s, 5m, 2h, 7d)")
    return seconds


def check_time_limit(value: object) -> float:
    """A time limit in seconds, checked: from 1 ms to ten years (InvalidInput otherwise)."""
    seconds = _seconds(value)
    if seconds is None or not MIN_TIME_LIMIT <= seconds <= MAX_DELAY:
        raise InvalidInput(f"time limit {value!r} is out of range: give from 1ms to 10 years "
                           "(for example 30s, 2m, 1h)")
    return seconds


def new_job(
    queue: str,
    job_id: str,
    payload: Any,
    now: float,
    *,
    max_attempts: int,
    not_before: float | None = None,
    batch: str | None = None,
    lineage: list[str] | None = None,
    time_limit: float | None = None,
    priority: int | None = None,
    key: str | None = None,
) -> Job:
    """Return the file of a new pending job (``time_limit``: seconds an attempt may run;
    ``priority``: lower runs first, 0 when left out; ``key``: for flow control)."""
    job: Job = {
        "id": job_id,
        "queue": queue,
        "payload": payload,
        "created": utc_iso(now),
        "attempts": 0,
        "max_attempts": max_attempts,
        "rev": 0,
    }
    if not_before is not None and not_before > now:
        job["not_before"] = utc_iso(not_before)
    if batch is not None:
        job["batch"] = batch
    if lineage:
        job["lineage"] = lineage
    if time_limit:
        job["time_limit"] = time_limit
    if priority:
        job["priority"] = priority
    if key:
        job["key"] = key
    return job


META_LIMIT = 64 * 1024


def check_meta(meta: object) -> dict[str, Any]:
    """``meta`` (the fields clients' hooks add to a job) when it is a JSON object of a sane
    size; raises ValueError otherwise."""
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise ValueError("meta must be a JSON object (a dict with string keys)")
    if len(encode_value(meta)) > META_LIMIT:
        raise ValueError(f"meta is over {META_LIMIT} bytes")
    return meta


def encode(job: Job) -> bytes:
    """Return the bytes of a job file: one line of JSON and a newline."""
    return (_encoder.encode(job) + "\n").encode()


def encode_value(value: object) -> bytes:
    """Return a payload or result as compact JSON bytes (also its size for the inline limit)."""
    try:
        return _compact.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"value is not JSON-serialisable: {exc}") from None


def _no_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; accepting them would make the file impossible to rewrite.
    raise ValueError(f"{name} is not a JSON value")


def _parse(data: bytes) -> object:
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJob(f"not valid JSON: {exc}") from None
    except RecursionError:  # deeply nested arrays or objects
        raise MalformedJob("not valid JSON: nested too deeply") from None


def decode(data: bytes, queue: str | None = None, job_id: str | None = None) -> Job:
    """Parse and check a job file; raise :class:`MalformedJob` saying what is wrong.

    When ``queue`` / ``job_id`` are given (the folder and file name it was found under) the
    file must agree with them, so a file copied to the wrong place is caught.
    """
    return check(_parse(data), queue, job_id)


def check(job: object, queue: str | None = None, job_id: str | None = None) -> Job:
    """Check a parsed job file (see :func:`decode`); raise :class:`MalformedJob`."""
    if not isinstance(job, dict):
        raise MalformedJob(f"expected a JSON object, found {type(job).__name__}")
    return _check(job, queue, job_id)


def decode_pending(data: bytes, queue: str, job_id: str, *, written: float,
                   max_attempts: int) -> tuple[Job, bool]:
    """Parse a file found in ``pending/``, completing one written by hand.

    A job file needs only what cannot be defaulted. A JSON object with a ``payload`` (or
    ``payload_ref``) key is a job file: the fields it lacks are defaulted (``id`` from the
    file name, ``queue`` from the folder, ``created`` = ``written``, the time the file was
    written, ``attempts`` 0, ``max_attempts`` the queue's, ``rev`` 0). Any other JSON value
    (an object without ``payload`` too) is the payload itself. Returns the job and whether
    it was completed (then the file should be rewritten as the full job).

    Raises :class:`MalformedJob` for what cannot be a job: not JSON, a field of the wrong
    type, an ``id`` or ``queue`` that disagrees with where the file is, or an object that
    has every other field of a job file but no payload.
    """
    value = _parse(data)
    if isinstance(value, dict) and all(f in value for f in REQUIRED_FIELDS):
        return _check(value, queue, job_id), False  # a full job file (the usual case)
    if isinstance(value, dict) and ("payload" in value or "payload_ref" in value):
        defaults: Job = {"id": job_id, "queue": queue, "created": utc_iso(written),
                         "attempts": 0, "max_attempts": max_attempts, "rev": 0}
        return _check({**defaults, **value}, queue, job_id), True
    return _check(new_job(queue, job_id, value, written, max_attempts=max_attempts),
                  queue, job_id), True


def _check(job: dict[str, object] | Job, queue: str | None, job_id: str | None) -> Job:
    if not _is_job(job, queue, job_id):
        raise MalformedJob("not a job file")  # not reached: _is_job raises saying why
    return job


def _is_job(job: dict[str, object] | Job, queue: str | None,
            job_id: str | None) -> TypeGuard[Job]:
    """True when ``job`` has a job file's fields, of their types; MalformedJob otherwise."""
    missing = [f for f in REQUIRED_FIELDS if f not in job]
    if missing:
        raise MalformedJob(f"missing field(s): {', '.join(missing)}")
    if not is_valid_name(job["id"]) or not is_valid_name(job["queue"]):
        raise MalformedJob("field 'id' or 'queue' is not a valid name")
    if job_id is not None and job["id"] != job_id:
        raise MalformedJob(f"file name says id {job_id!r} but the file says {job['id']!r}")
    if queue is not None and job["queue"] != queue:
        raise MalformedJob(f"found in queue {queue!r} but the file says {job['queue']!r}")
    for field in ("attempts", "max_attempts"):
        value = job[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedJob(f"field {field!r} must be a non-negative integer")
    rev = job.get("rev", 0)
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise MalformedJob("field 'rev' must be a non-negative integer")
    if not isinstance(job["created"], str):
        raise MalformedJob("field 'created' must be an ISO 8601 string")
    if "payload" not in job and "payload_ref" not in job:
        raise MalformedJob("missing field 'payload' (or 'payload_ref')")
    return True


def bump(job: Job) -> Job:
    """Mark a job file as rewritten (see ``rev`` above) and return it."""
    job["rev"] = job.get("rev", 0) + 1
    return job


def priority_of(job: object) -> int:
    """A job file's priority: its ``priority`` when a whole number in range, else 0."""
    found = job.get("priority") if isinstance(job, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) \
            and -MAX_PRIORITY <= found <= MAX_PRIORITY:
        return found
    return 0


def running_attempt(job: Job) -> int:
    """The number of the attempt a claimed job is running (its fencing token)."""
    return int(job["attempts"]) + 1


def add_history(job: Job, entry: HistoryEntry) -> None:
    """Append one attempt to the job's history, keeping the newest :data:`HISTORY_LIMIT`."""
    history = job.setdefault("history", [])
    history.append(entry)
    if len(history) > HISTORY_LIMIT:
        del history[: len(history) - HISTORY_LIMIT]


def error_record(message: str, kind: str, traceback: str | None, attempt: int, now: float,
                 worker: str | None) -> ErrorRecord:
    """Return the ``last_error`` entry of a failed attempt (traceback cut to a sane size)."""
    record: ErrorRecord = {"message": message, "type": kind, "attempt": attempt,
                           "at": utc_iso(now)}
    if traceback:
        if len(traceback) > TRACEBACK_LIMIT:
            traceback = "...\n" + traceback[-TRACEBACK_LIMIT:]
        record["traceback"] = traceback
    if worker:
        record["worker"] = worker
    return record
