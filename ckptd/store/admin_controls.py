"""Operator controls on a store, with no daemon: pause, resume, limits, dispatch order, dedup.

The same files a daemon reads: ``<queue>/paused`` and ``<queue>/limits.json``. A daemon that
runs on the store sees the change at once (its watcher, on a local disk) or at its next
listing (``poll_interval``, on a bucket). Mixed into :class:`ckptd.store.admin.StoreAdmin`.
"""

from __future__ import annotations

from typing import Any

from ckptd.codec import decode_job
from ckptd.core import dedup
from ckptd.core.answers import Submitted
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, InvalidInput, JobNotFound, MalformedJob
from ckptd.core.names import check_queue
from ckptd.core.queue_controls import (
    LIMITS_FILE,
    PAUSED_FILE,
    Limits,
    aging_of,
    changed_limits_file,
    limits_of,
    parse_limits_file,
    retention_of,
    unique_of,
)
from ckptd.core.states import State
from ckptd.core.timefmt import time_or_none
from ckptd.store.base import Store


def _reason(data: bytes) -> str:
    return data.decode(errors="replace").strip()[:500]


class StoreControls:
    """The controls part of the store commands (a mixin of StoreAdmin)."""

    store: Store

    @property
    def settings(self) -> Settings:
        raise NotImplementedError  # StoreAdmin's

    def _where_limits(self, queue: str) -> str:
        return f"{self.store.url.rstrip('/')}/{queue}/{LIMITS_FILE}"

    def pause(self, queue: str, reason: str = "") -> dict[str, Any]:
        """Write ``<queue>/paused`` (its text: the reason); the queue is made if needed."""
        check_queue(queue)
        text = reason.strip()
        self.store.write_control(queue, PAUSED_FILE, (text + "\n").encode() if text else b"")
        return {"queue": queue, "paused": {"reason": text, "since": None}}

    def resume(self, queue: str) -> dict[str, Any]:
        """Remove ``<queue>/paused``."""
        check_queue(queue)
        was = self.store.read_control(queue, PAUSED_FILE) is not None
        self.store.delete_control(queue, PAUSED_FILE)
        return {"queue": queue, "was_paused": was}

    def limit(self, queue: str, changes: dict[str, Any], reset: bool = False
              ) -> dict[str, Any]:
        """Change ``<queue>/limits.json`` (None removes a limit: the config's applies), or
        with ``reset`` remove the file."""
        check_queue(queue)
        if reset:
            self.store.delete_control(queue, LIMITS_FILE)
        elif changes:
            data = changed_limits_file(self.store.read_control(queue, LIMITS_FILE), changes,
                                       self._where_limits(queue))
            self.store.write_control(queue, LIMITS_FILE, data)
        return {"queue": queue, "limits": self._limits(queue).as_dict()}

    def _limits(self, queue: str) -> Limits:
        data = self.store.read_control(queue, LIMITS_FILE)
        override = parse_limits_file(data, self._where_limits(queue)) if data is not None \
            else None
        return limits_of(self.settings, queue, override)

    def controls_status(self, queue: str) -> dict[str, Any]:
        """What status shows of a queue's controls, from its files and the settings."""
        paused = self.store.read_control(queue, PAUSED_FILE)
        view: dict[str, Any] = {
            "paused": {"reason": _reason(paused), "since": None} if paused is not None
            else None}
        try:
            view["limits"] = self._limits(queue).as_dict()
        except CkptdError as exc:
            view["limits"] = {**limits_of(self.settings, queue).as_dict(), "error": str(exc)}
        view["retention"] = retention_of(self.settings, queue).as_dict()
        unique = unique_of(self.settings, queue)
        view["unique"] = None if unique is None else {"by": unique[0], "scope": unique[1]}
        view["priorities"] = {"aging_s": aging_of(self.settings, queue)}
        return view

    def pending_in_order(self, queue: str, named: list[tuple[str, int]], now: float
                         ) -> list[str]:
        """Pending ids in the order a daemon dispatches them: due jobs by the priority their
        names carry (then by id, which is creation order for generated ids), then delayed
        ones by due time. Each file is read for its ``not_before``."""
        keyed = []
        for job_id, priority in named:
            due = None
            try:
                job = decode_job(self.store.read(queue, State.PENDING, job_id, priority),
                                 queue, job_id)
                due = time_or_none(job.get("not_before"))
            except (JobNotFound, MalformedJob):
                pass  # gone, or written by hand: due now
            later = due is not None and due > now
            keyed.append((1, due or 0.0, 0, job_id) if later else (0, 0.0, priority, job_id))
        return [key[3] for key in sorted(keyed)]

    def unique_id(self, queue: str, payload: Any, job_id: str | None, now: float,
                  key: str | None = None) -> tuple[str | None, Submitted | None]:
        """The id a submit to ``queue`` gets: ``job_id`` when the queue is not unique, else
        the payload's (``key``: its keyed hash, for a sealed payload); with the answer when
        its job is found open already (scope open)."""
        unique = unique_of(self.settings, queue)
        if unique is None:
            return job_id, None
        if job_id is not None:
            raise InvalidInput(f"queue {queue!r} makes ids from payloads (unique = "
                               "\"payload\" in its config): submit without an id of your own")
        key = key or dedup.payload_key(payload)
        if unique[1] == "forever":
            return key, None
        for state in (State.PENDING, State.CLAIMED):
            for found in self.store.ids_after(queue, state, key):
                if found.startswith(key + "."):
                    return found, Submitted(found, created=False, state=state.value)
                break  # ids sort: the first one after the key has it, or none does
        return dedup.open_id(key, now), None
