"""Signals: files in ``<queue>/signals/`` that wake the jobs waiting for them.

A signal is ``<queue>/signals/<id>.<name>.json``, its data the file's JSON (an empty file is
a signal without data). It comes from ``ckptd signal``, ``Client.signal`` (this daemon
writes the file, then answers) or a person or program that drops the file in (the watcher
sees it on a local disk; listings find it on a bucket and after a missed event). The daemon
keeps which signal names each job has, never their data; a signal sent before its job parks
is kept until the job waits for it. When the job wakes, its signals are read into the woken
file (``job.signals``) and the files are removed in the same group of store operations, after
the move.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ckptd.core.errors import CkptdError, JobNotFound
from ckptd.core.jobs import Job
from ckptd.core.names import check_job_ref
from ckptd.core.states import State
from ckptd.core.timefmt import time_or_none
from ckptd.core.waits import check_signal
from ckptd.daemon.engine.index import Index
from ckptd.store.base import DeleteSignal, Outcome, PutSignal, SignalFile
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

Key = tuple[str, str]
Reply = Callable[[Body | CkptdError], None]


def signal_data(raw: bytes | None) -> Any:
    """A signal file's data: its JSON, None when empty, else its text."""
    if not raw or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def consumed(job: Job, name: str, written: float) -> bool:
    """Whether the signal ``name`` written at ``written`` was already taken by a wake of
    ``job`` (a crash between the wake and the removal of the file leaves it behind)."""
    record = job.get("woken")
    if not isinstance(record, dict) or name not in (record.get("signals") or {}):
        return False
    at = time_or_none(record.get("at"))
    return at is not None and written <= at


class SignalBox:
    """The signal names each job of the led queues has; ``arrived`` says who to wake."""

    def __init__(self, index: Index, arrived: Callable[[str, str, float], None]) -> None:
        self.ix = index
        self.arrived = arrived  # (queue, id, now): a job may have a signal it waits for
        self.present: dict[Key, dict[str, float]] = {}

    def names(self, queue: str, job_id: str) -> frozenset[str]:
        """The signals job ``queue/id`` has now."""
        found = self.present.get((queue, job_id))
        return frozenset(found) if found else frozenset()

    def clear(self) -> None:
        """Forget every signal (the daemon stopped leading)."""
        self.present.clear()

    def drop(self, queue: str) -> None:
        """Forget the signals of one queue."""
        for key in [k for k in self.present if k[0] == queue]:
            del self.present[key]

    # -- finding them ----------------------------------------------------------------------

    def recover(self, queue: str, listed: list[SignalFile] | None = None) -> None:
        """Know the queue's signal files (from a listing); leftovers of a wake that a crash
        cut short (the wake recorded them) are removed."""
        store = self.ix.store
        files = store.signals(queue) if listed is None else listed
        index = self.ix.queue(queue)
        stale: list[DeleteSignal] = []
        seen: set[Key] = set()
        for item in files:
            key = (queue, item.job_id)
            seen.add(key)
            if item.job_id not in index.waiting and self._stale(queue, item):
                stale.append(DeleteSignal(queue, item.job_id, item.name))
                continue
            self._note(key, item.name, item.mtime)
        for key in [k for k in self.present if k[0] == queue and k not in seen]:
            del self.present[key]  # removed by hand meanwhile
        for op in stale:
            log.info("removed signal %s.%s of %s: its job was woken with it before a crash",
                     op.job_id, op.name, queue)
            self.ix.txn.add(op)

    def _stale(self, queue: str, item: SignalFile) -> bool:
        from ckptd.codec import decode_job

        for state in (State.PENDING, State.CLAIMED, State.DONE, State.FAILED):
            try:
                job = decode_job(self.ix.store.read(queue, state, item.job_id), queue,
                                 item.job_id)
            except JobNotFound:
                continue
            except CkptdError:
                return False
            return consumed(job, item.name, item.mtime)
        return False

    def seen(self, queue: str, file_job: str, name: str, mtime: float, now: float) -> None:
        """A signal file appeared (watcher event or listing)."""
        key = (queue, file_job)
        if name in self.present.get(key, {}):
            return
        self._note(key, name, mtime)
        self.arrived(queue, file_job, now)

    def _note(self, key: Key, name: str, mtime: float) -> None:
        self.present.setdefault(key, {})[name] = mtime

    # -- sending ---------------------------------------------------------------------------

    def send(self, queue: str, job_id: str, name: str, data: Any, now: float,
             reply: Reply) -> None:
        """Write the signal ``name`` (with ``data``) for job ``queue/id``; reply once it is
        durable with the state the job is in."""
        try:
            check_job_ref(queue, job_id)
            check_signal(name)
            raw = b"" if data is None else json.dumps(data).encode()
        except (CkptdError, TypeError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        state = self.ix.where(queue, job_id)
        if state is None:
            reply(JobNotFound(f"no job {job_id!r} in queue {queue!r} to signal"))
            return

        def written(outcome: Outcome) -> None:
            if outcome is not None:
                reply(outcome)
                return
            log.info("signal", extra={"fields": {"queue": queue, "id": job_id,
                                                 "signal": name, "state": state}})
            present = self.present.get((queue, job_id), {})
            present.pop(name, None)  # a new copy: noted again, and arrives again
            self.seen(queue, job_id, name, now, now)
            reply({"queue": queue, "id": job_id, "signal": name,
                   "state": self.ix.where(queue, job_id) or state})

        self.ix.txn.add(PutSignal(queue, job_id, name, raw), written)

    # -- taking them -----------------------------------------------------------------------

    def take(self, queue: str, job_id: str) -> tuple[dict[str, Any], list[DeleteSignal]]:
        """The data of every signal job ``queue/id`` has, and the ops that remove their
        files (to queue after the job's wake). Unreadable files are left for later."""
        names = self.present.pop((queue, job_id), None)
        if not names:
            return {}, []
        data: dict[str, Any] = {}
        ops = []
        for name in sorted(names):
            try:
                raw = self.ix.store.read_signal(queue, job_id, name)
            except CkptdError as exc:
                log.warning("cannot read signal %s of %s/%s (kept): %s", name, queue, job_id,
                            exc)
                self._note((queue, job_id), name, names[name])
                continue
            if raw is None:
                continue  # removed by hand meanwhile
            data[name] = signal_data(raw)
            ops.append(DeleteSignal(queue, job_id, name))
        return data, ops

    def view(self, queue: str, job_id: str) -> list[str]:
        """The names of the signals a job has, for explain."""
        return sorted(self.present.get((queue, job_id), {}))
