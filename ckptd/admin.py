"""Producer and operator actions on a store, with no daemon: submit, status, ls, show,
retry, cancel, purge and fsck.

The CLI calls these when it is given a store (``--root``), and the daemon builds on the same
functions for its own submits and retries, so a job made either way is the same file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import jobs, recovery
from .config import Settings
from .errors import JobExists, JobNotFound, MalformedJob, TransitionError
from .ids import new_id
from .names import check_job_id, check_queue
from .states import STATES, State, transition_name
from .store.base import Delete, Move, Op, PutBlob, PutNew, Store

IF_EXISTS = ("error", "return")


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the job's id, and whether this call created it."""

    id: str
    created: bool = True
    state: str = State.PENDING.value


def prepare_submit(settings: Settings, queue: str, payload: Any, now: float, *,
                   job_id: str | None = None, max_attempts: int | None = None,
                   delay: float | None = None, batch: str | None = None,
                   lineage: list[str] | None = None) -> tuple[jobs.Job, list[Op]]:
    """Return the new job's file and the store ops that create it (blob first, if any).

    Raises InvalidName for a bad queue or id and ValueError for a payload that is not JSON.
    """
    check_queue(queue)
    generated = job_id is None
    job_id = new_id(now) if job_id is None else check_job_id(job_id)
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    job = jobs.new_job(queue, job_id, payload, now,
                       max_attempts=max_attempts or settings.max_attempts_for(queue),
                       not_before=now + delay if delay else None, batch=batch, lineage=lineage)
    ops: list[Op] = []
    encoded = jobs.encode_value(payload)
    if len(encoded) > settings.inline_limit:
        ops.append(PutBlob(queue, job_id, "payload", encoded))
        job["payload"] = None
        job["payload_ref"] = f"blobs/{job_id}.payload"
        job["payload_size"] = len(encoded)
    ops.append(PutNew(queue, job_id, jobs.encode(job), check_other_states=not generated))
    return job, ops


def load_payload(store: Store, job: jobs.Job) -> Any:
    """Return a job's payload, reading its blob when it is not inline."""
    if job.get("payload_ref"):
        import json

        return json.loads(store.read_blob(job["queue"], job["id"], "payload"))
    return job.get("payload")


def retried(job: jobs.Job, attempts: int | None, settings: Settings) -> jobs.Job:
    """Return a failed job made ready to run again with a fresh budget of attempts.

    ``attempts`` is never reset (it is the fencing token); ``max_attempts`` grows instead.
    """
    budget = attempts or settings.max_attempts_for(job["queue"])
    job["max_attempts"] = int(job["attempts"]) + budget
    job.pop("not_before", None)
    return jobs.bump(job)


class StoreAdmin:
    """The actions of the CLI, carried out directly on a store."""

    def __init__(self, store: Store, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    # -- producing -------------------------------------------------------------------------

    def submit(self, queue: str, payload: Any, *, job_id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               if_exists: str = "error", batch: str | None = None) -> Submitted:
        """Create a pending job and return its id once it is durable.

        An id that exists in any state is never created twice: JobExists is raised, or with
        ``if_exists="return"`` the existing job is returned with ``created=False``.
        """
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be one of {', '.join(IF_EXISTS)}")
        if job_id is not None and any(True for _ in self._where(queue, job_id)):
            return self._existing(queue, job_id, if_exists)
        job, ops = prepare_submit(self.settings, queue, payload, self.clock(), job_id=job_id,
                                  max_attempts=max_attempts, delay=delay, batch=batch)
        outcomes = self.store.apply(ops)
        error = outcomes[-1]
        if isinstance(error, JobExists):
            return self._existing(queue, job["id"], if_exists)
        for outcome in outcomes:
            if outcome is not None:
                raise outcome
        return Submitted(job["id"])

    def _where(self, queue: str, job_id: str) -> Iterable[State]:
        return self.store.find(check_queue(queue), check_job_id(job_id))

    def _existing(self, queue: str, job_id: str, if_exists: str) -> Submitted:
        states = list(self._where(queue, job_id))
        if if_exists == "return" and states:
            return Submitted(job_id, created=False, state=states[-1].value)
        raise JobExists(queue, job_id, states[-1].value if states else None)

    # -- looking ---------------------------------------------------------------------------

    def status(self, queue: str | None = None) -> dict[str, Any]:
        """Return ``{"queues": {name: {"pending": n, "claimed": n, "done": n, "failed": n}}}``."""
        names = [check_queue(queue)] if queue else self.store.queues()
        if queue and queue not in self.store.queues():
            raise JobNotFound(f"no queue {queue!r} under {self.store.url}")
        result: dict[str, Any] = {}
        for name in names:
            counts: dict[str, Any] = {s.value: self.store.count(name, s) for s in STATES}
            counts["quarantined"] = len(self.store.quarantined(name))
            result[name] = counts
        return {"queues": result, "root": self.store.url, "source": "store"}

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """Return (state, id) of the queue's jobs, in one state or all of them."""
        check_queue(queue)
        states = [state] if state else list(STATES)
        return [(s, job_id) for s in states for job_id in self.store.ids(queue, s)]

    def show(self, queue: str, job_id: str) -> dict[str, Any]:
        """Return what the store holds for a job: its state, file, and checkpoint."""
        states = self.store.find(check_queue(queue), check_job_id(job_id))
        if not states:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        state = states[-1]
        raw = self.store.read(queue, state, job_id)
        try:
            job: Any = jobs.decode(raw, queue, job_id)
        except MalformedJob as exc:
            job = {"unreadable": str(exc), "raw": raw.decode(errors="replace")}
        checkpoint = self.store.read_checkpoint(queue, job_id)
        info: dict[str, Any] = {
            "state": state.value,
            "path": self.store.describe(queue, state, job_id),
            "job": job,
            "checkpoint": _json_or_text(checkpoint) if checkpoint is not None else None,
        }
        if len(states) > 1:
            info["also_in"] = [s.value for s in states[:-1]]
        return info

    # -- repairing -------------------------------------------------------------------------

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """Move failed jobs back to pending (all of them when ``job_ids`` is None).

        Returns the ids moved. Raises JobNotFound for a named id that is not failed.
        """
        check_queue(queue)
        ids = self.store.ids(queue, State.FAILED) if job_ids is None else job_ids
        ops: list[Op] = []
        for job_id in ids:
            check_job_id(job_id)
            try:
                job = jobs.decode(self.store.read(queue, State.FAILED, job_id), queue, job_id)
            except JobNotFound:
                states = self.store.find(queue, job_id)
                where = f"it is {states[-1].value}" if states else "no such job"
                raise JobNotFound(f"cannot retry {job_id!r}: only failed jobs can be retried "
                                  f"({where})") from None
            ops.append(Move(queue, job_id, State.FAILED, State.PENDING,
                            jobs.encode(retried(job, attempts, self.settings))))
        _raise_first(self.store.apply(ops))
        return [op.job_id for op in ops]

    def cancel(self, queue: str, job_id: str) -> str:
        """Remove a pending job (or fail a claimed one); return the state it was in."""
        states = self.store.find(check_queue(queue), check_job_id(job_id))
        if not states:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        state = states[-1]
        if state is State.PENDING:
            transition_name(state, None)
            self.store.delete(queue, state, job_id)
        elif state is State.CLAIMED:
            job = jobs.decode(self.store.read(queue, state, job_id), queue, job_id)
            now = self.clock()
            job["last_error"] = jobs.error_record("cancelled by an operator", "Cancelled", None,
                                                  jobs.running_attempt(job), now, None)
            self.store.move(queue, job_id, state, State.FAILED, jobs.encode(jobs.bump(job)))
        else:
            raise TransitionError(f"job {job_id!r} is already {state.value}; "
                                  f"use 'ckptd purge {queue} {state.value}' to remove it")
        return str(state.value)

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """Remove done or failed jobs (older than ``older_than`` seconds); return how many."""
        transition_name(state, None)
        check_queue(queue)
        now = self.clock()
        doomed = []
        for job_id in self.store.ids(queue, state):
            if older_than is not None:
                try:
                    if now - self.store.mtime(queue, state, job_id) < older_than:
                        continue
                except JobNotFound:
                    continue
            doomed.append(Delete(queue, state, job_id))
        for start in range(0, len(doomed), 1000):
            _raise_first(self.store.apply(doomed[start:start + 1000]))
        return len(doomed)

    def fsck(self, repair: bool = False) -> list[recovery.Finding]:
        """Check every queue of the store; with ``repair`` fix what can be fixed.

        Finds jobs in two states, malformed and foreign files, stale leftovers in tmp/,
        checkpoints and blobs whose job is gone, and payload blobs that a job lacks.
        """
        findings: list[recovery.Finding] = []
        now = self.clock()
        for queue in self.store.queues():
            findings += recovery.quarantine_foreign(self.store, queue, repair)
            ids = recovery.listing(self.store, queue)
            blobs: set[tuple[str, str]] = set(self.store.blob_ids(queue))
            findings += recovery.resolve_duplicates(self.store, queue, ids, repair)
            live: set[str] = set()
            anywhere: set[str] = set()
            for state, state_ids in ids.items():
                for job_id in state_ids:
                    job, finding = recovery.check_job(self.store, queue, state, job_id, repair)
                    if finding is not None:
                        findings.append(finding)
                    if job is None:
                        continue
                    anywhere.add(job_id)
                    if state in (State.PENDING, State.CLAIMED):
                        live.add(job_id)
                        if job.get("payload_ref") and (job_id, "payload") not in blobs:
                            findings.append(recovery.Finding(
                                queue, "missing-blob", f"{state.value}/{job_id}.json",
                                f"refers to {job['payload_ref']}, which is gone"))
            findings += recovery.clean_leftovers(self.store, queue, now,
                                                 self.settings.tmp_max_age, repair)
            findings += self._orphans(queue, live, anywhere, repair)
        return findings

    def _orphans(self, queue: str, live: set[str], anywhere: set[str], repair: bool
                 ) -> list[recovery.Finding]:
        found = []
        for job_id in self.store.checkpoint_ids(queue):
            if job_id not in live and job_id not in anywhere:
                if repair:
                    self.store.delete_checkpoint(queue, job_id)
                found.append(recovery.Finding(queue, "orphan-checkpoint", f"state/{job_id}.json",
                                              "its job is in no state", repair))
        for job_id, kind in self.store.blob_ids(queue):
            if job_id not in anywhere:
                if repair:  # a Delete of an absent job file removes only its attachments
                    self.store.apply([Delete(queue, State.DONE, job_id)])
                found.append(recovery.Finding(queue, "orphan-blob", f"blobs/{job_id}.{kind}",
                                              "its job is in no state", repair))
        return found


def _raise_first(outcomes: list[Any]) -> None:
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


def _json_or_text(data: bytes) -> Any:
    import json

    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
