"""The names of job files: ``<id>.json``, and in ``pending/`` the priority and key too.

A pending file's name carries its priority: ``<id>,p<N>.json`` (``,p-5``, ``,p3``); a job
of priority 0 is plain ``<id>.json``. A job with a key (:mod:`ckptd.core.job_keys`) carries
it after that: ``<id>,ksupplier-a.json``, ``<id>,p3,ksupplier-a.json``. The comma cannot be
part of an id, so the name says all three without doubt, and a listing alone orders a queue
and tells each job's key: no file is read for it. Only the form :func:`pending_name` writes
counts (``,p0``, ``,p+3``, ``,p03`` or a key written otherwise are not job files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ckptd.core.job_keys import KEY_TAG, key_name, key_of_name
from ckptd.core.names import is_valid_name
from ckptd.core.queue_controls import MAX_PRIORITY
from ckptd.core.states import State

JOB_SUFFIX = ".json"
PRIORITY_TAG = ",p"
_PENDING_NAME = re.compile(r"([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})(?:,p(-?[1-9][0-9]{0,6}))?"
                           r"(?:,k([A-Za-z0-9%._@:+=~-]{1,100}))?\.json")
# A chunk of plain job file names, one a line (the usual case: checked in one call).
_PLAIN = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\.json\n)*")
_SUFFIX = len(JOB_SUFFIX)


def split_job_name(name: str) -> str | None:
    """Return the id of a file named ``<id>.json``, else None (not a job file)."""
    if not name.endswith(JOB_SUFFIX):
        return None
    job_id = name[:-_SUFFIX]
    return job_id if is_valid_name(job_id) else None


Named = tuple[str, int, str]
"""``(id, priority, key)`` of a job file's name (priority 0 and key "" when it has none)."""

Tag = tuple[int, str]
"""``(priority, key)`` of a pending file, as its name carries them."""

Line = int | tuple[int, str]
"""Where a listed id is filed: its priority, or ``(priority, key)`` for a job with a key."""


def pending_name(job_id: str, priority: int = 0, key: str = "") -> str:
    """The file name of a pending job of ``priority`` with ``key`` ("" for none)."""
    if not priority and not key:
        return job_id + JOB_SUFFIX
    tag = f"{PRIORITY_TAG}{priority}" if priority else ""
    if key:
        tag += KEY_TAG + key_name(key)
    return f"{job_id}{tag}{JOB_SUFFIX}"


def split_pending_name(name: str) -> Named | None:
    """``(id, priority, key)`` of a file name in ``pending/``, else None (not a job file)."""
    if "," not in name:
        job_id = split_job_name(name)
        return None if job_id is None else (job_id, 0, "")
    found = _PENDING_NAME.fullmatch(name)
    if found is None:
        return None
    level, written = found.group(2), found.group(3)
    priority = int(level) if level is not None else 0
    if abs(priority) > MAX_PRIORITY or (level is None and written is None):
        return None
    key = ""
    if written is not None:
        key = key_of_name(written) or ""
        if not key:
            return None
    return found.group(1), priority, key


def job_file_name(state: State, job_id: str, priority: int = 0, key: str = "") -> str:
    """The file name of a job in ``state`` (only a pending one carries priority and key)."""
    return pending_name(job_id, priority, key) if state is State.PENDING \
        else job_id + JOB_SUFFIX


def job_names(names: Iterable[str], state: State) -> list[Named]:
    """``(id, priority, key)`` of the job files among ``names`` (priority 0 and no key
    outside pending/)."""
    if state is State.PENDING:
        return [found for found in map(split_pending_name, names) if found is not None]
    return [(job_id, 0, "") for job_id in map(split_job_name, names) if job_id is not None]


def line_of(priority: int, key: str) -> Line:
    """Where an id of ``priority`` and ``key`` is filed (its priority when it has no key)."""
    return (priority, key) if key else priority


def level_of_line(line: Line) -> int:
    """The priority of a line."""
    return line if isinstance(line, int) else line[0]


def ids_by_priority(names: list[str], state: State = State.PENDING) -> dict[Line, list[str]]:
    """The ids of the job files among ``names`` by the priority (and key) their names
    carry (other names are skipped); a chunk of plain names is checked with one regex,
    not one each."""
    if names and _PLAIN.fullmatch("\n".join(names) + "\n"):
        return {0: [name[:-_SUFFIX] for name in names]}
    found: dict[Line, list[str]] = {}
    for job_id, priority, key in job_names(names, state):
        found.setdefault(line_of(priority, key), []).append(job_id)
    return found
