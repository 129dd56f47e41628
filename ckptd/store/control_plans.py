"""The operators' controls of a queue, each decided in one place: pause, resume, limit.

A control is a file at the queue's top (``<queue>/paused``, ``<queue>/limits.json``,
``<queue>/key_limits.json``, :mod:`ckptd.core.queue_controls`). A planner is a pure
function: given the file as found, it says which file is written (or removed) and with
what, or raises the refusal. The store commands (:class:`ckptd.store.admin.StoreAdmin`)
write it and answer from the files; a daemon
(:class:`ckptd.daemon.controls.control_files.QueueControls`) writes it, applies it to its
gate at once and answers from the gate. The jobs' actions are in :mod:`ckptd.store.plans`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ckptd.core.answer_types import LimitAnswer
from ckptd.core.config import Settings
from ckptd.core.errors import ConfigError
from ckptd.core.job_keys import EVERY_KEY, check_key
from ckptd.core.key_settings import (
    KEY_LIMITS_FILE,
    changed_key_limits_file,
    key_limits_of,
    parse_key_limits_file,
)
from ckptd.core.names import check_queue
from ckptd.core.queue_controls import LIMITS_FILE, PAUSED_FILE, changed_limits_file
from ckptd.store.base import Store

MAX_REASON = 500
"""Characters of a pause reason shown (in answers, status and logs)."""


@dataclass(frozen=True)
class ControlChange:
    """One control file of a queue written with ``data``, or removed (``data`` None)."""

    queue: str
    name: str
    data: bytes | None


def pause_reason(data: bytes) -> str:
    """The reason a ``paused`` file gives: its text, trimmed to :data:`MAX_REASON`."""
    return data.decode(errors="replace").strip()[:MAX_REASON]


def plan_pause(queue: str, reason: str) -> ControlChange:
    """Pause ``queue``: its ``paused`` file, holding the reason (empty without one)."""
    check_queue(queue)
    text = reason.strip()
    return ControlChange(queue, PAUSED_FILE, (text + "\n").encode() if text else b"")


def plan_resume(queue: str) -> ControlChange:
    """Resume ``queue``: its ``paused`` file removed (nothing when there is none)."""
    check_queue(queue)
    return ControlChange(queue, PAUSED_FILE, None)


def limits_file(key: str | None) -> str:
    """The file a limit changes: ``limits.json``, or with a key ``key_limits.json``."""
    return LIMITS_FILE if key is None else KEY_LIMITS_FILE


def plan_limit(queue: str, changes: Mapping[str, object], reset: bool, current: bytes | None,
               where: str, key: str | None = None) -> ControlChange | None:
    """Change the limits of ``queue`` as its file (:func:`limits_file`) is found now
    (``current``; ``where``: its place, for errors): ``changes`` (a None value removes a
    limit, so the config's applies), or with ``reset`` no file (for a key: no entry; the
    file goes when no entry is left). None when nothing is to change.

    ``weight`` is a limit of keys only: ConfigError without ``key``. Raises ConfigError for
    a bad value, InvalidInput for a bad key.
    """
    check_queue(queue)
    name = limits_file(key)
    if key is None:
        if "weight" in changes:
            raise ConfigError("weight is a limit of keys: give it with a key")
        if reset:
            return ControlChange(queue, name, None)
        if changes:
            return ControlChange(queue, name, changed_limits_file(current, changes, where))
        return None
    if changes or reset:
        return ControlChange(queue, name,
                             changed_key_limits_file(current, key, changes, reset, where))
    if key != EVERY_KEY:
        check_key(key)
    return None


@dataclass(frozen=True)
class LimitPlan:
    """A limit planned on the store's file: the change (None: nothing to write), the file
    as it was found, and its place (for errors and answers)."""

    change: ControlChange | None
    found: bytes | None
    where: str

    @property
    def data(self) -> bytes | None:
        """The file as it is once the change is written."""
        return self.found if self.change is None else self.change.data


def plan_limit_on(store: Store, queue: str, changes: Mapping[str, object], reset: bool,
                  key: str | None = None) -> LimitPlan:
    """:func:`plan_limit` on the file as ``store`` has it now (read only when the plan or
    the answer needs it)."""
    name = limits_file(key)
    where = f"{store.url.rstrip('/')}/{queue}/{name}"
    found = store.read_control(queue, name) \
        if key is not None or (changes and not reset) else None
    return LimitPlan(plan_limit(queue, changes, reset, found, where, key), found, where)


def key_limits_answer(settings: Settings, queue: str, key: str, data: bytes | None,
                      where: str) -> LimitAnswer:
    """The answer to a limit of ``key``: the key's limits in force, from the settings and
    ``key_limits.json`` as it is now (``data``)."""
    override = parse_key_limits_file(data, where) if data is not None else None
    return {"queue": queue, "key": key, "limits": key_limits_of(
        settings.queue(queue).keys, key, override, where).as_dict()}
