"""Work that waits: what a job in ``waiting/`` waits for, when that has happened, and the
edits of its file on the way in and out. Pure code, no I/O.

A job file in ``waiting/`` says what it waits for, so that ``cat`` shows it and a restart
rebuilds the daemon's index of who waits on whom from the files alone::

    "after": ["split/B1", "split/C1"],       its parents ("queue/id"), from submit's after=
    "on_parent_failure": "fail",             the rule for a parent that failed (below)
    "wait": {"since": "...",                 what a parked handler waits for, and the ends
             "signals": ["approved"],        learned so far:
             "until": "...", "timeout": "...",
             "children": ["mail/X.a"],
             "ended": {"split/B1": "done"}}

It wakes (``waiting -> pending``) at the first of: every parent (or child) has ended; a
signal it waits for arrived; ``until`` came; ``timeout`` came (then the reason says so).
The woken file keeps a ``woken`` record: the reason, the parents' and children's end states
and the signals it got, which the handler reads as ``job.woken``, ``job.parents``,
``job.signals``.

The rule for a parent that failed (or was cancelled, or removed before it ended):

- ``fail`` (the default): the job fails too, without running (``waiting -> failed``, the
  error names the parent), at once;
- ``run``: the job runs once every parent has ended, whatever the ends; ``job.parents``
  says which failed;
- ``ignore``: as ``run``, but failed parents are left out of ``job.parents``, as if they
  had not been parents.

A handler's own children (``Park(children=True)``) are always waited for under ``run``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ckptd.core.errors import InvalidName, JobNotFound
from ckptd.core.jobs import ErrorRecord, Job, WaitRecord, WokenRecord, add_history, bump
from ckptd.core.names import MAX_NAME_LENGTH, is_valid_name
from ckptd.core.timefmt import time_or_none, utc_iso

RULES = ("fail", "run", "ignore")
DEFAULT_RULE = "fail"
MAX_PARENTS = 10_000
DONE = "done"
FAILED = "failed"
REMOVED = "removed"
"""The end of a parent that was cancelled or removed before it ended."""
FAILURES = frozenset({FAILED, REMOVED})
WAKE_REASONS = ("parents", "children", "signal", "until", "timeout", "operator")
SIGNAL_SUFFIX = ".json"
_SIGNAL = re.compile(r"[A-Za-z0-9_-]{1,64}")


# -- names -----------------------------------------------------------------------------------

def ref(queue: str, job_id: str) -> str:
    """The reference ``queue/id`` of a job."""
    return f"{queue}/{job_id}"


def split_ref(text: str) -> tuple[str, str]:
    """(queue, id) of a reference ``queue/id``; raise InvalidName for anything else."""
    queue, slash, job_id = text.partition("/") if isinstance(text, str) else ("", "", "")
    if not slash or not is_valid_name(queue) or not is_valid_name(job_id):
        raise InvalidName(f"invalid job reference {str(text)[:80]!r}: expected QUEUE/ID")
    return queue, job_id


def check_refs(refs: object, queue: str) -> list[str]:
    """The parents named by ``after``: ``queue/id`` references (a bare id is a job of
    ``queue``), each once, in order. Raises InvalidName for a bad one or too many."""
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, (list, tuple)) or not refs:
        raise InvalidName("after must name one or more jobs: ['queue/id', ...]")
    if len(refs) > MAX_PARENTS:
        raise InvalidName(f"after names {len(refs)} jobs; at most {MAX_PARENTS} (wait for "
                          "more with a batch: client.batch(then=...))")
    seen: dict[str, None] = {}
    for item in refs:
        text = str(item)
        seen[ref(*split_ref(text if "/" in text else f"{queue}/{text}"))] = None
    return list(seen)


def no_parent(parent: str) -> JobNotFound:
    """The error of a submit whose parent ``parent`` does not exist."""
    return JobNotFound(f"parent {parent} does not exist: a job can only wait for jobs that "
                       "were submitted (check the queue and the id)")


def check_rule(rule: object) -> str:
    """``rule`` when it is one of :data:`RULES` (None: the default)."""
    if rule is None:
        return DEFAULT_RULE
    if rule not in RULES:
        raise InvalidName(f"invalid on_parent_failure {rule!r}: expected one of "
                          f"{', '.join(RULES)}")
    return str(rule)


def check_signal(name: object) -> str:
    """A signal's name: 1-64 letters, digits, '-' and '_' (no dots: it ends a file name)."""
    if not isinstance(name, str) or not _SIGNAL.fullmatch(name):
        raise InvalidName(f"invalid signal name {str(name)[:70]!r}: 1-64 letters, digits, "
                          "'-' and '_'")
    return name


def signal_file(job_id: str, name: str) -> str:
    """The file name of a signal: ``<id>.<name>.json`` in ``<queue>/signals/``."""
    return f"{job_id}.{check_signal(name)}{SIGNAL_SUFFIX}"


def parse_signal_file(file_name: str) -> tuple[str, str] | None:
    """(job id, signal name) of a file in ``signals/``, or None when it is not one."""
    if not file_name.endswith(SIGNAL_SUFFIX):
        return None
    job_id, dot, name = file_name[:-len(SIGNAL_SUFFIX)].rpartition(".")
    if not dot or not _SIGNAL.fullmatch(name) or not is_valid_name(job_id):
        return None
    return job_id, name


def child_id(parent: str, key: str) -> str:
    """The id of a job's child (or continuation) ``key``: ``<parent>.<key>``, fixed, so an
    attempt that runs again creates nothing twice."""
    if not isinstance(key, str) or not _SIGNAL.fullmatch(key):
        raise InvalidName(f"invalid child key {str(key)[:70]!r}: 1-64 letters, digits, '-' "
                          "and '_'")
    made = f"{parent}.{key}"
    if len(made) > MAX_NAME_LENGTH:
        raise InvalidName(f"the child id {made[:60]!r}... is longer than {MAX_NAME_LENGTH} "
                          "characters: use shorter keys (or ids) in deep trees")
    return made


# -- what a job waits for --------------------------------------------------------------------

@dataclass(slots=True)
class Wait:
    """What a waiting job waits for, as its file says."""

    after: tuple[str, ...] = ()
    rule: str = DEFAULT_RULE
    children: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()
    until: float | None = None
    timeout: float | None = None
    since: float | None = None
    ended: dict[str, str] = field(default_factory=dict)

    def waits_for_jobs(self) -> bool:
        """Whether it waits for parents or children (not only a time or a signal)."""
        return bool(self.after or self.children)

    def refs(self) -> tuple[str, ...]:
        """Every job it waits for: parents, then children."""
        return self.after + self.children

    def open_refs(self) -> list[str]:
        """The jobs it waits for that have not ended (as far as it knows)."""
        ended = self.ended
        return [r for r in self.refs() if r not in ended]


def wait_of(job: Mapping[str, object]) -> Wait:
    """What a job file waits for (``after`` and ``wait``); missing parts are empty.

    The file may have been edited by hand: a part of the wrong type raises InvalidName."""
    queue = str(job.get("queue", ""))
    after = job.get("after")
    found = job.get("wait")
    record: Mapping[str, object] = found if isinstance(found, dict) else {}
    ended = record.get("ended")
    children = record.get("children")
    signals = record.get("signals")
    return Wait(
        after=tuple(check_refs(after, queue)) if after else (),
        rule=check_rule(job.get("on_parent_failure")),
        children=tuple(check_refs(children, queue)) if children else (),
        signals=tuple(check_signal(s) for s in _items(signals)) if signals else (),
        until=time_or_none(record.get("until")),
        timeout=time_or_none(record.get("timeout")),
        since=time_or_none(record.get("since")),
        ended={str(k): str(v) for k, v in ended.items()} if isinstance(ended, dict) else {})


def _items(value: object) -> Iterable[object]:
    if not isinstance(value, Iterable):
        raise InvalidName(f"expected a list of names, found {str(value)[:70]!r}")
    return value


def wait_record(wait: Wait) -> WaitRecord:
    """The ``wait`` object of a waiting job's file (``after`` stays at the top)."""
    record: WaitRecord = {}
    if wait.since is not None:
        record["since"] = utc_iso(wait.since)
    if wait.signals:
        record["signals"] = list(wait.signals)
    if wait.until is not None:
        record["until"] = utc_iso(wait.until)
    if wait.timeout is not None:
        record["timeout"] = utc_iso(wait.timeout)
    if wait.children:
        record["children"] = list(wait.children)
    if wait.ended:
        record["ended"] = dict(wait.ended)
    return record


def holds(job: Job) -> bool:
    """Whether a job found in ``pending/`` must wait first: it names parents and was never
    woken (a file put there by hand, or moved back from ``waiting/`` or ``failed/``)."""
    return bool(job.get("after")) and not isinstance(job.get("woken"), dict)


# -- the decision ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """What to do with a waiting job now: ``wait``, ``wake`` (with the reason) or
    ``abandon`` (with the parent that failed)."""

    action: str
    reason: str = ""
    parent: str | None = None


WAIT = Verdict("wait")


def decide(wait: Wait, signals: set[str] | frozenset[str], now: float) -> Verdict:
    """The verdict for ``wait``, given the signals the job has and the time."""
    if wait.rule == "fail":
        for parent in wait.after:
            if wait.ended.get(parent) in FAILURES:
                return Verdict("abandon", parent=parent)
    if wait.signals and signals.intersection(wait.signals):
        return Verdict("wake", "signal")
    if wait.until is not None and now >= wait.until:
        return Verdict("wake", "until")
    if wait.waits_for_jobs() and not wait.open_refs():
        return Verdict("wake", "parents" if wait.after and not wait.children else "children")
    if wait.timeout is not None and now >= wait.timeout:
        return Verdict("wake", "timeout")
    if not wait.waits_for_jobs() and not wait.signals and wait.until is None \
            and wait.timeout is None:
        return Verdict("wake", "parents")  # waits for nothing at all (a hand-edited file)
    return WAIT


def next_time(wait: Wait) -> float | None:
    """The next time a waiting job must be looked at (its ``until`` or ``timeout``)."""
    times = [t for t in (wait.until, wait.timeout) if t is not None]
    return min(times) if times else None


# -- the edits -------------------------------------------------------------------------------

def waiting(job: Job, wait: Wait) -> Job:
    """A job file for ``waiting/`` (new, or held back from pending/)."""
    job.pop("woken", None)
    job["wait"] = wait_record(wait)
    return job


def parked(job: Job, *, attempt: int, claimed_at: float, now: float, worker: str | None,
           wait: Wait) -> Job:
    """The file of a claimed job whose handler parked (``claimed -> waiting``).

    The attempt ends (``attempts`` is the fencing token and only grows) and ``max_attempts``
    grows with it: waiting never costs a job one of its attempts.
    """
    job["attempts"] = attempt
    job["max_attempts"] = int(job["max_attempts"]) + 1
    add_history(job, {"attempt": attempt, "worker": worker, "claimed": utc_iso(claimed_at),
                      "ended": utc_iso(now), "outcome": "parked"})
    wait.since = now
    waiting(job, wait)
    return bump(job)


def woken(job: Job, wait: Wait, reason: str, now: float,
          signals: dict[str, Any] | None = None) -> Job:
    """The file of a waiting job that wakes (``waiting -> pending``): ``wait`` becomes the
    ``woken`` record the handler reads."""
    record: WokenRecord = {"reason": reason, "at": utc_iso(now)}
    if wait.after:
        ignore = wait.rule == "ignore"
        record["parents"] = {r: wait.ended.get(r, "open") for r in wait.after
                             if not (ignore and wait.ended.get(r) in FAILURES)}
    if wait.children:
        record["children"] = {r: wait.ended.get(r, "open") for r in wait.children}
    if signals:
        record["signals"] = signals
    job.pop("wait", None)
    job.pop("not_before", None)
    job["woken"] = record
    return bump(job)


def abandoned(job: Job, parent: str, end: str, now: float) -> Job:
    """The file of a waiting job that fails without running (``waiting -> failed``): its
    parent ``parent`` ended ``end`` and its rule is ``fail``."""
    message = (f"parent {parent} {end}, and on_parent_failure is 'fail': the job did not "
               "run (retry both, or submit it with on_parent_failure 'run' or 'ignore')")
    error: ErrorRecord = {"message": message, "type": "ParentFailed", "parent": parent,
                          "attempt": int(job.get("attempts", 0)), "at": utc_iso(now)}
    job["last_error"] = error
    job["finished_at"] = utc_iso(now)
    add_history(job, {"attempt": int(job.get("attempts", 0)), "worker": None,
                      "claimed": None, "ended": utc_iso(now), "outcome": "abandoned",
                      "error": message[:500]})
    job.pop("wait", None)
    return bump(job)
