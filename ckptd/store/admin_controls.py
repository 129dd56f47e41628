"""Operator controls on a store, with no daemon: pause, resume, limits, dispatch order, dedup.

The same files a daemon reads: ``<queue>/paused`` and ``<queue>/limits.json``. A daemon that
runs on the store sees the change at once (its watcher, on a local disk) or at its next
listing (``poll_interval``, on a bucket). Mixed into :class:`ckptd.store.admin.StoreAdmin`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ckptd.codec import decode_job, encode_job
from ckptd.core import dedup, edits, jobs
from ckptd.core.answer_types import (
    KeysView,
    LimitAnswer,
    PauseAnswer,
    QueueControls,
    ResumeAnswer,
)
from ckptd.core.answers import LimitChanges, Submitted
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, InvalidInput, JobNotFound, MalformedJob
from ckptd.core.job_keys import EVERY_KEY
from ckptd.core.key_settings import (
    KEY_LIMITS_FILE,
    key_limits_of,
    parse_key_limits_file,
)
from ckptd.core.names import check_queue
from ckptd.core.queue_controls import (
    LIMITS_FILE,
    PAUSED_FILE,
    Limits,
    aging_of,
    limits_of,
    parse_limits_file,
    retention_of,
)
from ckptd.core.states import State
from ckptd.core.timefmt import time_or_none
from ckptd.core.unique_windows import uniqueness_of, window_id
from ckptd.store.base import Op, PutNew, Store
from ckptd.store.control_plans import (
    ControlChange,
    key_limits_answer,
    pause_reason,
    plan_limit_on,
    plan_pause,
    plan_resume,
)
from ckptd.store.file_names import Named


def write_change(store: Store, change: ControlChange) -> None:
    """Write (or remove) the control file a plan changes (:mod:`ckptd.store.control_plans`)."""
    if change.data is None:
        store.delete_control(change.queue, change.name)
    else:
        store.write_control(change.queue, change.name, change.data)


class StoreControls:
    """The controls part of the store commands (a mixin of StoreAdmin)."""

    store: Store

    @property
    def settings(self) -> Settings:
        raise NotImplementedError  # StoreAdmin's

    def _where_limits(self, queue: str) -> str:
        return f"{self.store.url.rstrip('/')}/{queue}/{LIMITS_FILE}"

    def pause(self, queue: str, reason: str = "") -> PauseAnswer:
        """Write ``<queue>/paused`` (its text: the reason); the queue is made if needed."""
        change = plan_pause(queue, reason)
        write_change(self.store, change)
        assert change.data is not None
        return {"queue": queue, "paused": {"reason": pause_reason(change.data), "since": None}}

    def resume(self, queue: str) -> ResumeAnswer:
        """Remove ``<queue>/paused``."""
        change = plan_resume(queue)
        was = self.store.read_control(queue, PAUSED_FILE) is not None
        write_change(self.store, change)
        return {"queue": queue, "was_paused": was}

    def limit(self, queue: str, changes: LimitChanges, reset: bool = False,
              key: str | None = None) -> LimitAnswer:
        """Change ``<queue>/limits.json`` (None removes a limit: the config's applies), or
        with ``reset`` remove the file. With ``key`` (``*``: every key), that key's entry
        of ``<queue>/key_limits.json`` instead (weight too)."""
        check_queue(queue)
        plan = plan_limit_on(self.store, queue, changes, reset, key)
        if plan.change is not None:
            write_change(self.store, plan.change)
        if key is not None:
            return key_limits_answer(self.settings, queue, key, plan.data, plan.where)
        return {"queue": queue, "limits": self._limits(queue).as_dict()}

    def _limits(self, queue: str) -> Limits:
        data = self.store.read_control(queue, LIMITS_FILE)
        override = parse_limits_file(data, self._where_limits(queue)) if data is not None \
            else None
        return limits_of(self.settings, queue, override)

    def controls_status(self, queue: str) -> QueueControls:
        """What status shows of a queue's controls, from its files and the settings."""
        paused = self.store.read_control(queue, PAUSED_FILE)
        try:
            limits = self._limits(queue).as_dict()
        except CkptdError as exc:
            limits = limits_of(self.settings, queue).as_dict()
            limits["error"] = str(exc)
        unique = uniqueness_of(self.settings, queue)
        return {"paused": {"reason": pause_reason(paused), "since": None} if paused is not None
                else None,
                "limits": limits,
                "retention": retention_of(self.settings, queue).as_dict(),
                "unique": None if unique is None else unique.as_dict(),
                "priorities": {"aging_s": aging_of(self.settings, queue)},
                "keys": self._keys_status(queue)}

    def _keys_status(self, queue: str) -> KeysView | None:
        """The queue's settings of keys (what runs is only the daemon's to say)."""
        q = self.settings.queue(queue)
        data = self.store.read_control(queue, KEY_LIMITS_FILE)
        if not (q.key or q.keys or q.fair or data is not None):
            return None
        where = f"{self.store.url.rstrip('/')}/{queue}/{KEY_LIMITS_FILE}"
        error: str | None = None
        try:
            override = parse_key_limits_file(data, where) if data is not None else None
        except CkptdError as exc:
            override, error = None, str(exc)
        fair, path = bool(q.fair), "payload." + ".".join(q.key) if q.key else None
        every = key_limits_of(q.keys, EVERY_KEY, override, where).as_dict()
        named = sorted(set(q.keys.named if q.keys else ()) |
                       {k for k in (override or {}) if k != EVERY_KEY})
        if error is None:
            return {"fair": fair, "key": path, "every_key": every, "named": named}
        return {"fair": fair, "key": path, "error": error, "every_key": every, "named": named}

    def pending_in_order(self, queue: str, named: list[Named], now: float) -> list[str]:
        """Pending ids in the order a daemon dispatches them: due jobs by the priority their
        names carry (then by id, which is creation order for generated ids), then delayed
        ones by due time. Each file is read for its ``not_before``."""
        keyed = []
        for job_id, priority, key in named:
            due = None
            try:
                job = decode_job(self.store.read(queue, State.PENDING, job_id, priority, key),
                                 queue, job_id)
                due = time_or_none(job.get("not_before"))
            except (JobNotFound, MalformedJob):
                pass  # gone, or written by hand: due now
            later = due is not None and due > now
            keyed.append((1, due or 0.0, 0, job_id) if later else (0, 0.0, priority, job_id))
        return [key[3] for key in sorted(keyed)]

    def unique_id(self, queue: str, payload: Any, job_id: str | None, now: float,
                  given: str | None = None
                  ) -> tuple[str | None, Submitted | None, Named | None]:
        """The id a submit to ``queue`` gets: ``job_id`` when the queue is not unique, else
        the one its payload gives (:mod:`ckptd.core.unique_windows`; ``given``: the keyed
        hash of a sealed payload, for ``unique = "payload"``); with the answer when its job
        is found open already (scope open), or (debounce) with the name of the pending job
        that the new one replaces."""
        unique = uniqueness_of(self.settings, queue)
        if unique is None:
            return job_id, None, None
        if job_id is not None:
            raise InvalidInput(f"queue {queue!r} makes ids from payloads (unique = "
                               "\"payload\" or unique_fields in its config): submit without "
                               "an id of your own")
        key = given if given and unique.by == "payload" else unique.key(payload)
        if unique.scope == "forever":
            return key, None, None
        if unique.scope == "window":
            return window_id(key, now, unique.seconds), None, None
        # ids sort: the first one after the key is of that key, or none is
        pending = next(iter(self.store.pending_after(queue, key)), None)
        if pending is not None and pending[0].startswith(key + "."):
            if unique.scope == "debounce":
                return dedup.open_id(key, now), None, pending
            return pending[0], Submitted(pending[0], created=False), None
        claimed = next(iter(self.store.ids_after(queue, State.CLAIMED, key)), None)
        if claimed is not None and claimed.startswith(key + ".") and unique.scope == "open":
            return claimed, Submitted(claimed, created=False, state=State.CLAIMED.value), None
        return dedup.open_id(key, now), None, None  # debounce: a running job keeps its own

    def _debounced(self, queue: str, replaces: Named, job: jobs.Job, op: Op) -> Op:
        """The create of a debounced job, as :func:`ckptd.core.edits.debounced` makes it
        from the pending job it replaces (as it is, when that one cannot be read)."""
        assert isinstance(op, PutNew)
        try:
            old = decode_job(self.store.read(queue, State.PENDING, *replaces), queue,
                             replaces[0])
        except (JobNotFound, MalformedJob):
            return op
        job.update(edits.debounced(old, job))
        return dataclasses.replace(op, data=encode_job(job))
