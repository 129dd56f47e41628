"""Uniqueness: which id a submit gets, by payload or by some of its fields, forever, while
open, in a window of time, or debounced.

Keys of ``[queues.NAME]`` (with ``unique`` and ``unique_scope`` of
:mod:`ckptd.core.queue_controls`)::

    unique_fields = ["customer", "date"]  # the id is a hash of these fields of the payload
    unique_window = "10m"                 # at most one job per 10 minutes of the clock
    debounce = "30s"                      # or: a submit while its job is still pending
                                          # replaces its payload and pushes its start back

The ids (:mod:`ckptd.core.dedup` makes the hash, ``u`` and 32 hex digits):

- scope ``forever`` (the default): ``u<hash>``, created only where it exists in no state;
- scope ``open``: ``u<hash>.<new id>``, returned while that job is pending or claimed;
- a window: ``u<hash>.w<start>``, the window's start in UTC (``w20261127T192000Z``).
  Windows are aligned on the clock (multiples of the window since 1970), so every submit of
  one window gets the same id, and it is created only where absent, like any id: there is
  no lock, so a crash between two submits leaves nothing behind but the job. One job per
  window, whatever state it is in (until retention removes it);
- debounce: ``u<hash>.<new id>`` as for scope ``open``; while it is pending, a submit of
  the same fields rewrites it with the new payload and a start ``debounce`` from now (the
  job's ``debounced`` counts them); once it runs, the next submit makes a new job.

Pure: standard library only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

from ckptd.core.answer_types import UniqueView
from ckptd.core.dedup import payload_key
from ckptd.core.errors import ConfigError
from ckptd.core.job_keys import value_at
from ckptd.core.timefmt import parse_duration

UNIQUE_CONTROL_KEYS = ("unique_fields", "unique_window", "debounce")
"""The keys of a ``[queues.NAME]`` table that this module reads."""
MAX_FIELDS = 32


class QueueSettings(Protocol):
    """What this module reads of a queue's settings (:class:`ckptd.core.config.QueueSettings`)."""

    @property
    def unique(self) -> str | None: ...
    @property
    def unique_scope(self) -> str | None: ...
    @property
    def unique_fields(self) -> tuple[str, ...] | None: ...
    @property
    def unique_window(self) -> float | None: ...
    @property
    def debounce(self) -> float | None: ...


class Settings(Protocol):
    """What this module reads of :class:`ckptd.core.config.Settings`."""

    def queue(self, name: str) -> QueueSettings:
        """The queue's ``[queues.NAME]`` settings."""


class UniqueControls(TypedDict, total=False):
    """The keys of a ``[queues.NAME]`` table this module reads, as QueueSettings fields."""

    unique_fields: tuple[str, ...]
    unique_window: float
    debounce: float


_SCOPES: tuple[Literal["unique_window", "debounce"], ...] = ("unique_window", "debounce")


@dataclass(frozen=True)
class Uniqueness:
    """How a queue's ids are derived: ``by`` "payload" or "fields", ``scope`` "forever",
    "open", "window" or "debounce" (``seconds``: the window, or the debounce)."""

    by: str
    fields: tuple[str, ...] = ()
    scope: str = "forever"
    seconds: float = 0.0

    def key(self, payload: object) -> str:
        """``u`` + the hash of what makes a submit the same (ValueError: not JSON)."""
        if self.by == "payload":
            return payload_key(payload)
        return payload_key({name: value_at(payload, tuple(name.split(".")))
                            for name in self.fields})

    def as_dict(self) -> UniqueView:
        """For status and explain."""
        found: UniqueView = {"by": self.by, "scope": self.scope}
        if self.fields:
            found["fields"] = list(self.fields)
        if self.scope == "window":
            found["window_s"] = self.seconds
        elif self.scope == "debounce":
            found["debounce_s"] = self.seconds
        return found


def window_start(now: float, window: float) -> float:
    """The start of the window that holds ``now`` (windows are aligned on the clock)."""
    return math.floor(now / window) * window


def window_id(key: str, now: float, window: float) -> str:
    """The id of the job of ``key`` in the window that holds ``now``."""
    start = time.gmtime(window_start(now, window))
    return f"{key}.w{time.strftime('%Y%m%dT%H%M%SZ', start)}"


def _fields(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_FIELDS or not all(
            isinstance(v, str) and v and all(v.split(".")) for v in value):
        raise ConfigError(f"invalid {what} {value!r}: expected a list of payload fields, "
                          "like [\"customer\", \"date\"] (a.b for a field inside a field)")
    return tuple(dict.fromkeys(value))


def parse_unique_controls(name: str, table: Mapping[str, object], source: str
                          ) -> UniqueControls:
    """The keys of ``[queues.<name>]`` this module reads, as QueueSettings fields; refuses
    the combinations that mean nothing."""
    def what(key: str) -> str:
        return f"queues.{name}.{key} ({source})"

    found: UniqueControls = {}
    if "unique_fields" in table:
        if "unique" in table:
            raise ConfigError(f"[queues.{name}] ({source}) sets both unique and "
                              "unique_fields: choose one (unique = \"payload\" is every field)")
        found["unique_fields"] = _fields(table["unique_fields"], what("unique_fields"))
    unique = "unique" in table or "unique_fields" in table
    for setting in _SCOPES:
        if setting not in table:
            continue
        seconds = parse_duration(table[setting], what(setting))
        if not unique:
            raise ConfigError(f"{what(setting)} needs unique_fields (or unique = "
                              "\"payload\"): what makes two submits the same job")
        if "unique_scope" in table:
            raise ConfigError(f"[queues.{name}] ({source}) sets unique_scope and {setting}: "
                              f"{setting} is a scope of its own")
        if setting == "unique_window" and (seconds < 1 or seconds != int(seconds)):
            raise ConfigError(f"invalid {what(setting)} {table[setting]!r}: expected a whole "
                              "number of seconds, 1s or more, like \"10m\"")
        if setting == "debounce" and seconds <= 0:
            raise ConfigError(f"invalid {what(setting)} {table[setting]!r}: expected a "
                              "duration longer than 0, like \"30s\"")
        found[setting] = seconds
    if "unique_window" in found and "debounce" in found:
        raise ConfigError(f"[queues.{name}] ({source}) sets unique_window and debounce: "
                          "choose one (a window keeps the first submit, debounce the last)")
    return found


def uniqueness_of(settings: Settings, queue: str) -> Uniqueness | None:
    """How the ids of ``queue`` are derived, None when they are not."""
    q = settings.queue(queue)
    if not q.unique and not q.unique_fields:
        return None
    by, fields = ("fields", q.unique_fields) if q.unique_fields else ("payload", ())
    if q.unique_window:
        return Uniqueness(by, fields, "window", q.unique_window)
    if q.debounce:
        return Uniqueness(by, fields, "debounce", q.debounce)
    return Uniqueness(by, fields, q.unique_scope or "forever")
