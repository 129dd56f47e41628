"""The names of job files: ``<id>.json``, and in ``pending/`` the priority too.

A pending file's name carries its priority: ``<id>,p<N>.json`` (``,p-5``, ``,p3``); a job
of priority 0 is plain ``<id>.json``. The comma cannot be part of an id, so the name says
both without doubt, and a listing alone orders a queue: no file is read for it. Only the
form :func:`pending_name` writes counts (``,p0``, ``,p+3`` or ``,p03`` are not job files).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ckptd.core.names import is_valid_name
from ckptd.core.queue_controls import MAX_PRIORITY
from ckptd.core.states import State

JOB_SUFFIX = ".json"
PRIORITY_TAG = ",p"
_PENDING_NAME = re.compile(r"([A-Za-z0-9_-][A-Za-z0-9._-]{0,127}),p(-?[1-9][0-9]{0,6})\.json")
# A chunk of plain job file names, one a line (the usual case: checked in one call).
_PLAIN = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\.json\n)*")
_SUFFIX = len(JOB_SUFFIX)


def split_job_name(name: str) -> str | None:
    """Return the id of a file named ``<id>.json``, else None (not a job file)."""
    if not name.endswith(JOB_SUFFIX):
        return None
    job_id = name[:-_SUFFIX]
    return job_id if is_valid_name(job_id) else None


def pending_name(job_id: str, priority: int = 0) -> str:
    """The file name of a pending job of ``priority``."""
    return f"{job_id}{PRIORITY_TAG}{priority}{JOB_SUFFIX}" if priority else job_id + JOB_SUFFIX


def split_pending_name(name: str) -> tuple[str, int] | None:
    """``(id, priority)`` of a file name in ``pending/``, else None (not a job file)."""
    if PRIORITY_TAG not in name:
        job_id = split_job_name(name)
        return None if job_id is None else (job_id, 0)
    found = _PENDING_NAME.fullmatch(name)
    if found is None:
        return None
    priority = int(found.group(2))
    if abs(priority) > MAX_PRIORITY:
        return None
    return found.group(1), priority


def job_file_name(state: State, job_id: str, priority: int = 0) -> str:
    """The file name of a job in ``state`` (only a pending one carries its priority)."""
    return pending_name(job_id, priority) if state is State.PENDING else job_id + JOB_SUFFIX


def job_names(names: Iterable[str], state: State) -> list[tuple[str, int]]:
    """``(id, priority)`` of the job files among ``names`` (priority 0 outside pending/)."""
    if state is State.PENDING:
        return [found for found in map(split_pending_name, names) if found is not None]
    return [(job_id, 0) for job_id in map(split_job_name, names) if job_id is not None]


def ids_by_priority(names: list[str], state: State = State.PENDING) -> dict[int, list[str]]:
    """The ids of the job files among ``names`` by the priority their names carry (other
    names are skipped); a chunk of plain names is checked with one regex, not one each."""
    if names and _PLAIN.fullmatch("\n".join(names) + "\n"):
        return {0: [name[:-_SUFFIX] for name in names]}
    found: dict[int, list[str]] = {}
    for job_id, priority in job_names(names, state):
        found.setdefault(priority, []).append(job_id)
    return found
