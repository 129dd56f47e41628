"""The control files of each queue, read into the dispatch gate; pause, resume and limit.

``<root>/<queue>/paused`` pauses a queue (``touch`` pauses, ``rm`` resumes, its text is the
reason); ``<root>/<queue>/limits.json`` overrides the queue's ``max_running`` and ``rate``;
``<root>/<queue>/key_limits.json`` those of its keys (:mod:`ckptd.core.key_settings`).
The daemon reads them at start (and when it becomes the active daemon on a bucket), when
the watcher reports a change (local stores: at once), and at every listing (buckets: every
``poll_interval``; local stores: every ``rescan_interval``, in case an event was missed).
``ckptd pause/resume/limit`` through the daemon write the same files, so the files stay the
only state: a restart or a failover reads them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ckptd.core.answer_types import LimitAnswer, PauseAnswer, ResumeAnswer
from ckptd.core.errors import CkptdError, ConfigError
from ckptd.core.key_settings import KEY_LIMITS_FILE, parse_key_limits_file
from ckptd.core.queue_controls import (
    LIMITS_FILE,
    PAUSED_FILE,
    parse_limits_file,
)
from ckptd.daemon.controls.gate import Gate, Pause
from ckptd.daemon.controls.key_gate import KeyGate
from ckptd.store.admin_controls import write_change
from ckptd.store.base import Store
from ckptd.store.control_plans import (
    ControlChange,
    key_limits_answer,
    pause_reason,
    plan_limit_on,
    plan_pause,
    plan_resume,
)

log = logging.getLogger(__name__)

class QueueControls:
    """Keeps the gate in line with the control files of the store."""

    def __init__(self, store: Store, gate: Gate, clock: Callable[[], float],
                 key_gate: KeyGate | None = None) -> None:
        self.store = store
        self.gate = gate
        self.key_gate = key_gate if key_gate is not None else KeyGate(gate.live)
        self.clock = clock
        self.touched: dict[str, float] = {}  # queue -> when its files were last read or set

    def recover(self) -> None:
        """Read every queue's control files (at start, or on becoming the active daemon)."""
        self.gate.clear()
        self.key_gate.clear()
        self.touched.clear()
        self.load_all(self.store.queue_controls())

    def load_all(self, found: Mapping[str, Mapping[str, bytes]], since: float | None = None
                 ) -> None:
        """Apply a listing of the control files of every queue (what is absent is lifted).
        ``since``: when the listing began; a queue whose files were read or written after
        that is left as it is (the listing may predate the change)."""
        for queue, files in found.items():
            if since is not None and self.touched.get(queue, float("-inf")) >= since:
                continue
            self.load(queue, files)

    def load(self, queue: str, files: Mapping[str, bytes]) -> None:
        """Apply the control files of one queue as found now."""
        self._paused(queue, files.get(PAUSED_FILE))
        self._limits(queue, files.get(LIMITS_FILE))
        self._key_limits(queue, files.get(KEY_LIMITS_FILE))

    def changed(self, queue: str, name: str) -> None:
        """The watcher saw ``<queue>/<name>`` change: read it again."""
        self.touched[queue] = self.clock()
        try:
            data = self.store.read_control(queue, name)
        except CkptdError as exc:
            log.warning("cannot read %s/%s: %s", queue, name, exc)
            return
        if name == PAUSED_FILE:
            self._paused(queue, data)
        elif name == LIMITS_FILE:
            self._limits(queue, data)
        elif name == KEY_LIMITS_FILE:
            self._key_limits(queue, data)

    def _paused(self, queue: str, data: bytes | None) -> None:
        gate = self.gate
        if data is None:
            if gate.paused.pop(queue, None) is not None:
                log.info("queue resumed", extra={"fields": {"queue": queue}})
            return
        reason = pause_reason(data)
        known = gate.paused.get(queue)
        if known is None:
            gate.paused[queue] = Pause(reason, self.clock())
            log.info("queue paused: no new claims until <queue>/paused is removed",
                     extra={"fields": {"queue": queue, "reason": reason}})
        elif known.reason != reason:
            known.reason = reason

    def _limits(self, queue: str, data: bytes | None) -> None:
        gate = self.gate
        if data is None:
            if gate.overrides.pop(queue, None) is not None:
                log.info("limits file removed: the config's limits apply",
                         extra={"fields": {"queue": queue, **gate.limits(queue).as_dict()}})
            gate.override_errors.pop(queue, None)
            return
        where = f"{self.store.url.rstrip('/')}/{queue}/{LIMITS_FILE}"
        try:
            limits = parse_limits_file(data, where)
        except ConfigError as exc:
            if gate.override_errors.get(queue) != str(exc):
                log.error("%s; the limits in force stay as they were", exc)
            gate.override_errors[queue] = str(exc)
            return
        gate.override_errors.pop(queue, None)
        if gate.overrides.get(queue) != limits:
            gate.overrides[queue] = limits
            log.info("limits changed", extra={"fields": {"queue": queue, **limits.as_dict()}})

    def _key_limits(self, queue: str, data: bytes | None) -> None:
        keys = self.key_gate
        if data is None:
            if queue in keys.overrides:
                keys.set_override(queue, None)
                log.info("key limits file removed: the config's limits of keys apply",
                         extra={"fields": {"queue": queue}})
            keys.override_errors.pop(queue, None)
            return
        where = f"{self.store.url.rstrip('/')}/{queue}/{KEY_LIMITS_FILE}"
        try:
            limits = parse_key_limits_file(data, where)
        except ConfigError as exc:
            if keys.override_errors.get(queue) != str(exc):
                log.error("%s; the limits of keys in force stay as they were", exc)
            keys.override_errors[queue] = str(exc)
            return
        keys.override_errors.pop(queue, None)
        if keys.overrides.get(queue) != limits:
            keys.set_override(queue, limits, where)
            log.info("limits of keys changed", extra={"fields": {
                "queue": queue, **{k: v.as_dict() for k, v in limits.items()}}})

    # -- operators' requests ---------------------------------------------------------------

    def pause(self, queue: str, reason: str) -> PauseAnswer:
        """Write ``<queue>/paused`` with the reason, and pause at once."""
        change = plan_pause(queue, reason)
        self._write(change)
        return {"queue": queue, "paused": self.gate.paused[queue].as_dict()}

    def resume(self, queue: str) -> ResumeAnswer:
        """Remove ``<queue>/paused``, and resume at once."""
        was = queue in self.gate.paused
        self._write(plan_resume(queue))
        return {"queue": queue, "was_paused": was}

    def limit(self, queue: str, changes: Mapping[str, object], reset: bool,
              key: str | None = None) -> LimitAnswer:
        """Change ``<queue>/limits.json`` (or with ``reset`` remove it); apply it at once.
        ``changes``: max_running and/or rate, None removing one (the config's applies).
        With ``key`` (``*``: every key), the key's entry of ``<queue>/key_limits.json``
        instead (weight too; the file goes when no entry is left)."""
        self.touched[queue] = self.clock()
        plan = plan_limit_on(self.store, queue, changes, reset, key)
        if plan.change is not None:
            self._write(plan.change)
        elif key is not None:  # a look at a key's limits reads its file again
            self._key_limits(queue, plan.found)
        if key is not None:
            return key_limits_answer(self.key_gate.live.current, queue, key, plan.data,
                                     plan.where)
        return {"queue": queue, "limits": self.gate.limits(queue).as_dict()}

    def _write(self, change: ControlChange) -> None:
        """Write a planned change of a control file, and apply it to the gates at once."""
        self.touched[change.queue] = self.clock()
        write_change(self.store, change)
        if change.name == PAUSED_FILE:
            self._paused(change.queue, change.data)
        elif change.name == LIMITS_FILE:
            self._limits(change.queue, change.data)
        elif change.name == KEY_LIMITS_FILE:
            self._key_limits(change.queue, change.data)
