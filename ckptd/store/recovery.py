"""Bringing a store back to one state per job: the repairs recovery and fsck share.

A crash (or a bucket's copy-then-delete) can leave a job in two state folders, a write in
``tmp/`` that never reached its folder, or a file nobody can parse. Each function here finds
one kind of problem, fixes it when asked, and reports what it found as :class:`Finding`s.
The rules themselves (which copy wins, when a leftover is stale) live in :mod:`ckptd.core.states`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ckptd.codec import decode_job, encode_job
from ckptd.core import jobs
from ckptd.core.errors import CkptdError, JobNotFound, MalformedJob
from ckptd.core.states import STATES, Copy, State, resolve, tmp_is_stale
from ckptd.store.base import Delete, Move, Store, is_trash
from ckptd.store.file_names import job_file_name, pending_name, split_pending_name

log = logging.getLogger(__name__)

TRASH_GRACE = 60.0  # seconds before a discarded copy in tmp/ counts as a leftover


@dataclass(frozen=True)
class Finding:
    """One problem found in the store, and whether it was repaired."""

    queue: str
    kind: str  # duplicate | malformed | foreign | leftover | orphan-checkpoint | orphan-blob | ...
    subject: str
    detail: str
    repaired: bool = False

    def line(self) -> str:
        """One line for people: ``[repaired] queue kind subject: detail``."""
        mark = "repaired" if self.repaired else "found"
        return f"{mark:8} {self.queue}: {self.kind} {self.subject}: {self.detail}"


def listing(store: Store, queue: str) -> dict[State, list[str]]:
    """Return the ids of each state folder of ``queue`` (an id once per folder)."""
    found = {state: store.ids(queue, state) for state in STATES}
    pending = found[State.PENDING]
    if any(a == b for a, b in zip(pending, pending[1:])):  # an id under two names
        found[State.PENDING] = sorted(set(pending))
    return found


def pending_priorities(store: Store, queue: str, repair: bool
                       ) -> tuple[dict[str, int], list[Finding]]:
    """The priority of each pending job whose name carries one (others are 0); a job found
    under two names in ``pending/`` is kept under one (the higher ``rev``, then the more
    urgent name), the other removed with ``repair``."""
    names: dict[str, list[int]] = {}
    for name in store.pending_names(queue):
        found = split_pending_name(name)
        if found is not None:
            names.setdefault(found[0], []).append(found[1])
    findings = []
    chosen: dict[str, int] = {}
    for job_id, priorities in names.items():
        if len(priorities) > 1:
            keep, finding = _one_name(store, queue, job_id, priorities, repair)
            findings.append(finding)
            priorities = [keep]
        if priorities[0]:
            chosen[job_id] = priorities[0]
    return chosen, findings


def _one_name(store: Store, queue: str, job_id: str, priorities: list[int], repair: bool
              ) -> tuple[int, Finding]:
    ranked = []
    for priority in priorities:
        try:
            job = decode_job(store.read(queue, State.PENDING, job_id, priority), queue, job_id)
            rev = int(job.get("rev", 0))
        except CkptdError:
            rev = -1
        ranked.append((-rev, priority))
    ranked.sort()
    keep = ranked[0][1]
    doomed = [p for _, p in ranked[1:]]
    names = ", ".join(pending_name(job_id, p) for p in priorities)
    detail = f"in pending/ as {names}; keep {pending_name(job_id, keep)}"
    if repair:
        store.apply([Delete(queue, State.PENDING, job_id, attachments=False, priority=p)
                     for p in doomed])
    return keep, Finding(queue, "duplicate", job_id, detail, repair)


def duplicates(ids_by_state: dict[State, list[str]]) -> dict[str, list[State]]:
    """Return the ids found in more than one state, with those states."""
    seen: dict[str, list[State]] = {}
    twice: set[str] = set()
    for state, ids in ids_by_state.items():
        for job_id in ids:
            where = seen.get(job_id)
            if where is None:
                seen[job_id] = [state]
            else:
                where.append(state)
                twice.add(job_id)
    return {job_id: seen[job_id] for job_id in sorted(twice)}


def resolve_duplicate(store: Store, queue: str, job_id: str, states: Iterable[State],
                      repair: bool, priority: int = 0) -> tuple[State | None, Finding]:
    """Keep one copy of a job found in several states (the rule of
    :func:`ckptd.core.states.resolve`).

    A copy that cannot be read or parsed loses to any that can. Returns the winning state
    (None when no copy is readable) and the finding.
    """
    copies: list[Copy] = []
    unreadable: list[State] = []
    for state in states:
        try:
            job = decode_job(store.read(queue, state, job_id, priority), queue, job_id)
        except JobNotFound:
            continue  # moved on since the listing: nothing to resolve for this copy
        except (MalformedJob, CkptdError):
            unreadable.append(state)
            continue
        copies.append(Copy(state, int(job.get("rev", 0)), int(job["attempts"])))
    if not copies:
        return None, Finding(queue, "duplicate", job_id, "no readable copy", False)
    winner, losers = resolve(copies)
    doomed = [c.state for c in losers] + unreadable
    detail = (f"in {', '.join(s.value for s in [winner.state] + doomed)}; keep "
              f"{winner.state.value}")
    if repair and doomed:
        outcomes = store.apply([Delete(queue, s, job_id, attachments=False, priority=priority)
                                for s in doomed])
        failed = [o for o in outcomes if o is not None]
        if failed:
            return winner.state, Finding(queue, "duplicate", job_id, f"{detail}; {failed[0]}")
    return winner.state, Finding(queue, "duplicate", job_id, detail, repair and bool(doomed))


def resolve_duplicates(store: Store, queue: str, ids_by_state: dict[State, list[str]],
                       repair: bool, priorities: dict[str, int] | None = None
                       ) -> list[Finding]:
    """Resolve every job of ``ids_by_state`` found in more than one state (``priorities``:
    of the pending files whose names carry one).

    With ``repair`` the losing ids are also taken out of ``ids_by_state``.
    """
    findings = []
    for job_id, states in duplicates(ids_by_state).items():
        winner, finding = resolve_duplicate(store, queue, job_id, states, repair,
                                            (priorities or {}).get(job_id, 0))
        findings.append(finding)
        if repair and winner is not None:
            for state in states:
                if state is not winner:
                    ids_by_state[state].remove(job_id)
    return findings


def clean_leftovers(store: Store, queue: str, now: float, max_age: float, repair: bool
                    ) -> list[Finding]:
    """Report (and with ``repair`` remove) writes in ``tmp/`` older than ``max_age``."""
    findings = []
    for leftover in store.leftovers(queue, now):
        # A discarded old copy is garbage at any age, but a live process deletes its own
        # within moments: give it that long before calling it a leftover.
        limit = min(max_age, TRASH_GRACE) if is_trash(leftover.name) else max_age
        if not tmp_is_stale(leftover.age, limit):
            continue
        if repair:
            store.remove_leftover(queue, leftover.name)
        findings.append(Finding(queue, "leftover", f"tmp/{leftover.name}",
                                f"unfinished write, {leftover.age:.0f}s old", repair))
    return findings


def quarantine_foreign(store: Store, queue: str, repair: bool) -> list[Finding]:
    """Report (and move to quarantine/) files in state folders that are not job files."""
    findings = []
    for item in store.foreign(queue):
        reason = (f"{item.folder}/{item.name} is not a job file: names must be "
                  "<id>.json with a valid id, and plain files")
        if repair:
            store.quarantine(queue, item.folder, item.name, reason)
        findings.append(Finding(queue, "foreign", f"{item.folder}/{item.name}", reason, repair))
    return findings


def check_job(store: Store, queue: str, state: State, job_id: str, repair: bool,
              max_attempts: int = 3, priority: int = 0
              ) -> tuple[jobs.Job | None, Finding | None]:
    """Parse one job file; quarantine it (with ``repair``) when it cannot be parsed.

    A file in ``pending/`` written by hand (``{"payload": ...}``, or any JSON value) is a
    job, not a problem: with ``repair`` it is rewritten as the full job file it stands for
    (``max_attempts`` is the queue's budget), else it is left for the daemon to complete.
    Returns (the job or None, the finding or None).
    """
    try:
        raw = store.read(queue, state, job_id, priority)
        return decode_job(raw, queue, job_id), None
    except JobNotFound:
        return None, None
    except MalformedJob as exc:
        error = exc
    if state is State.PENDING:
        try:
            job, _ = jobs.decode_pending(raw, queue, job_id, max_attempts=max_attempts,
                                         written=store.mtime(queue, state, job_id, priority))
        except JobNotFound:
            return None, None
        except MalformedJob as exc:
            error = exc
        else:
            if not repair:
                return job, None
            outcome = store.apply([Move(queue, job_id, state, state, encode_job(job),
                                        priority=priority)])[0]
            if outcome is not None:
                raise outcome
            return job, Finding(queue, "hand-written",
                                f"{state.value}/{job_file_name(state, job_id, priority)}",
                                "completed as a job file (id from its name)", True)
    name = job_file_name(state, job_id, priority)
    reason = f"{state.value}/{name} is malformed: {error}"
    if repair:
        where = store.quarantine(queue, state.value, name, reason)
        log.warning("quarantined %s: %s", where, error)
    return None, Finding(queue, "malformed", f"{state.value}/{job_id}.json", str(error),
                         repair)


def priority_name(queue: str, job_id: str, job: jobs.Job, priority: int) -> list[Finding]:
    """A pending file whose ``priority`` is not the one its name carries (a file of the
    version before names carried priorities, or renamed by hand): dispatch follows the name.
    Reported, not repaired: which of the two was meant only a person knows."""
    said = jobs.priority_of(job)
    if said == priority:
        return []
    return [Finding(queue, "priority-name", f"pending/{pending_name(job_id, priority)}",
                    f"the file says priority {said}, its name {priority}, and dispatch follows "
                    f"the name: mv it to pending/{pending_name(job_id, said)} to run it at "
                    f"{said}")]
