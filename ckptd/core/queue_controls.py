"""The operator controls of a queue, as settings: limits, retention, dedup, priority aging.

They are keys of the ``[queues.NAME]`` tables (with global defaults in :class:`Settings`)::

    [queues.supplier]
    max_running = 5           # at most 5 jobs of the queue claimed at once, over all workers
    rate = "100/s"            # the dispatch rate, a token bucket ("5000/h", "10/m", "3/2s")
    keep_done = "7d"          # done jobs older than this are removed (0 = kept forever)
    keep_failed = "30d"       # failed jobs likewise
    keep_last = 1000          # or: keep only the newest N done (and N failed) jobs
    archive = true            # move them under <queue>/archive/DATE/ instead of removing
    unique = "payload"        # the id is a hash of the payload: the same work is made once
    unique_scope = "forever"  # ... as long as a job with it exists ("open": pending/claimed)
    priority_aging = "60s"    # a waiting job moves one priority level up per this long

``ckptd limit`` may override ``max_running`` and ``rate`` at run time with the file
``<root>/<queue>/limits.json`` (see :func:`parse_limits_file`), which wins over the config
until ``ckptd limit QUEUE --reset`` removes it. Pure: standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypedDict

from ckptd.core.answer_types import LimitsView, RetentionView
from ckptd.core.errors import ConfigError
from ckptd.core.timefmt import parse_duration


class QueueOverrides(Protocol):
    """What these functions read of a queue's ``[queues.NAME]`` settings
    (:class:`ckptd.core.config.QueueSettings`)."""

    @property
    def max_running(self) -> int | None: ...
    @property
    def rate(self) -> Rate | None: ...
    @property
    def keep_done(self) -> float | None: ...
    @property
    def keep_failed(self) -> float | None: ...
    @property
    def keep_last(self) -> int | None: ...
    @property
    def archive(self) -> bool | None: ...
    @property
    def unique(self) -> str | None: ...
    @property
    def unique_scope(self) -> str | None: ...
    @property
    def priority_aging(self) -> float | None: ...


class Settings(Protocol):
    """What these functions read of :class:`ckptd.core.config.Settings` (which imports
    this module: a Protocol keeps the two apart)."""

    @property
    def keep_done(self) -> float: ...
    @property
    def keep_failed(self) -> float: ...
    @property
    def archive(self) -> bool: ...
    @property
    def priority_aging(self) -> float: ...

    def queue(self, name: str) -> QueueOverrides:
        """The queue's ``[queues.NAME]`` settings."""

UNIQUE_KINDS = ("payload",)
UNIQUE_SCOPES = ("forever", "open")
LIMITS_FILE = "limits.json"
PAUSED_FILE = "paused"
MAX_PRIORITY = 1_000_000
DEFAULT_PRIORITY = 0
RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d*\.?\d*)\s*([a-z]*)\s*")

QUEUE_CONTROL_KEYS = ("max_running", "rate", "keep_done", "keep_failed", "keep_last",
                      "archive", "unique", "unique_scope", "priority_aging")
"""The keys of a ``[queues.NAME]`` table that this module reads."""


@dataclass(frozen=True)
class Rate:
    """A dispatch rate: ``count`` jobs per ``per`` seconds, as written (``100/s``)."""

    count: float
    per: float
    text: str

    @property
    def per_second(self) -> float:
        """Jobs per second."""
        return self.count / self.per

    @property
    def burst(self) -> float:
        """The token bucket's size: a tenth of a second's jobs, at least one (so a restart,
        which starts with a full bucket, adds at most that)."""
        return max(1.0, self.per_second * 0.1)


def parse_rate(value: object, what: str) -> Rate:
    """Return the rate of ``100/s``, ``5000/h``, ``10/m``, ``3/2s``; ConfigError otherwise."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    match = _RATE.fullmatch(text)
    if match:
        count = float(match.group(1))
        number, unit = match.group(2), match.group(3) or "s"
        if unit in RATE_UNITS and count > 0:
            per = RATE_UNITS[unit] * (float(number) if number else 1.0)
            if per > 0:
                return Rate(count, per, text.replace(" ", ""))
    raise ConfigError(f"invalid {what} {value!r}: expected jobs per time, like \"100/s\", "
                      "\"5000/h\", \"10/m\" or \"3/2s\"")


def whole(value: object, what: str, least: int) -> int:
    """Return ``value`` when it is a whole number of at least ``least``; ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number of at least "
                          f"{least}")
    return value


def _keep(value: object, what: str) -> float:
    if isinstance(value, str) and value.strip().lower() in ("forever", "never", "off"):
        return 0.0
    return parse_duration(value, what)


class QueueControlSettings(TypedDict, total=False):
    """The control keys of a ``[queues.NAME]`` table, as fields of
    :class:`~ckptd.core.config.QueueSettings`."""

    max_running: int
    rate: Rate
    keep_done: float
    keep_failed: float
    keep_last: int
    archive: bool
    unique: str
    unique_scope: str
    priority_aging: float


def parse_queue_controls(name: str, table: Mapping[str, object], source: str
                         ) -> QueueControlSettings:
    """The control keys of the table ``[queues.<name>]`` as QueueSettings fields."""
    found: QueueControlSettings = {}

    def what(key: str) -> str:
        return f"queues.{name}.{key} ({source})"

    if "max_running" in table:
        found["max_running"] = whole(table["max_running"], what("max_running"), 1)
    if "rate" in table:
        found["rate"] = parse_rate(table["rate"], what("rate"))
    if "keep_done" in table:
        found["keep_done"] = _keep(table["keep_done"], what("keep_done"))
    if "keep_failed" in table:
        found["keep_failed"] = _keep(table["keep_failed"], what("keep_failed"))
    if "keep_last" in table:
        found["keep_last"] = whole(table["keep_last"], what("keep_last"), 0)
    if "archive" in table:
        archive = table["archive"]
        if not isinstance(archive, bool):
            raise ConfigError(f"invalid {what('archive')} {archive!r}: expected "
                              "true or false")
        found["archive"] = archive
    if "unique" in table:
        unique = table["unique"]
        if not isinstance(unique, str) or unique not in UNIQUE_KINDS:
            raise ConfigError(f"invalid {what('unique')} {unique!r}: expected "
                              "\"payload\" (the id is a hash of the payload)")
        found["unique"] = unique
    if "unique_scope" in table:
        scope = table["unique_scope"]
        if not isinstance(scope, str) or scope not in UNIQUE_SCOPES:
            raise ConfigError(f"invalid {what('unique_scope')} {scope!r}: "
                              "expected \"forever\" (while a job with that payload exists in "
                              "any state) or \"open\" (while it is pending or claimed)")
        found["unique_scope"] = scope
    if "priority_aging" in table:
        found["priority_aging"] = parse_duration(table["priority_aging"],
                                                 what("priority_aging"))
    return found


@dataclass(frozen=True)
class Limits:
    """What bounds dispatch from one queue (None: no bound), and where it was set."""

    max_running: int | None = None
    rate: Rate | None = None
    source: str = "config"  # "config", or the limits file that overrides it

    def as_dict(self) -> LimitsView:
        """For status and the wire."""
        return {"max_running": self.max_running,
                "rate": self.rate.text if self.rate else None,
                "rate_per_s": round(self.rate.per_second, 6) if self.rate else None,
                "source": self.source}


@dataclass(frozen=True)
class Retention:
    """How long finished jobs of a queue are kept (0 / None: forever)."""

    keep_done: float
    keep_failed: float
    keep_last: int | None
    archive: bool

    @property
    def active(self) -> bool:
        """True when anything is ever removed (or archived)."""
        return bool(self.keep_done or self.keep_failed or self.keep_last is not None)

    def as_dict(self) -> RetentionView:
        """For status: what is kept and for how long, as people write it."""
        def text(seconds: float) -> str:
            return duration_text(seconds) if seconds else "forever"
        return {"keep_done": text(self.keep_done), "keep_failed": text(self.keep_failed),
                "keep_last": self.keep_last, "archive": self.archive,
                "keep_done_s": self.keep_done or None, "keep_failed_s": self.keep_failed or None}


def duration_text(seconds: float) -> str:
    """A duration as a setting is written: ``7d``, ``36h``, ``90s``, ``1.5s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def limits_of(settings: Settings, queue: str, override: Limits | None = None) -> Limits:
    """The limits in force for ``queue``: the limits file's, else the config's."""
    q = settings.queue(queue)
    if override is None:
        return Limits(q.max_running, q.rate)
    return Limits(q.max_running if override.max_running is None else override.max_running,
                  override.rate or q.rate, override.source)


def retention_of(settings: Settings, queue: str) -> Retention:
    """The retention of ``queue``: its own keys over the global defaults."""
    q = settings.queue(queue)
    return Retention(
        keep_done=q.keep_done if q.keep_done is not None else settings.keep_done,
        keep_failed=q.keep_failed if q.keep_failed is not None else settings.keep_failed,
        keep_last=q.keep_last,
        archive=q.archive if q.archive is not None else settings.archive)


def unique_of(settings: Settings, queue: str) -> tuple[str, str] | None:
    """(kind, scope) when ids of ``queue`` are derived from its payloads, else None."""
    q = settings.queue(queue)
    return (q.unique, q.unique_scope or "forever") if q.unique else None


def aging_of(settings: Settings, queue: str) -> float:
    """Seconds of waiting that move a job one priority level up (0: never)."""
    q = settings.queue(queue)
    return q.priority_aging if q.priority_aging is not None else settings.priority_aging


def check_priority(value: object, what: str = "priority") -> int:
    """Return ``value`` when it is a priority (a whole number, lower runs first)."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number from "
                          f"{-MAX_PRIORITY} to {MAX_PRIORITY} (lower runs first; default 0)")
    return value


def parse_limits_file(data: bytes, where: str) -> Limits:
    """Read ``<queue>/limits.json`` (``{"max_running": 3, "rate": "50/s"}``, either key may be
    null or absent); ConfigError naming the file when it is not that."""
    try:
        value = json.loads(data or b"{}")
    except ValueError as exc:
        raise ConfigError(f"{where} is not JSON ({exc}); expected "
                          "{\"max_running\": 3, \"rate\": \"50/s\"}") from None
    if not isinstance(value, dict) or set(value) - {"max_running", "rate"}:
        raise ConfigError(f"{where}: expected an object with max_running and/or rate, e.g. "
                          "{\"max_running\": 3, \"rate\": \"50/s\"}")
    running = value.get("max_running")
    rate = value.get("rate")
    return Limits(None if running is None else whole(running, f"max_running in {where}", 1),
                  None if rate is None else parse_rate(rate, f"rate in {where}"), where)


def changed_limits_file(old: bytes | None, changes: Mapping[str, object], where: str
                        ) -> bytes:
    """The new bytes of ``limits.json``: ``old`` (None: no file yet) with ``changes``
    applied (``max_running`` and/or ``rate``; a None value removes the key, so the config's
    value applies again). Raises ConfigError for a bad value."""
    current = parse_limits_file(old, where) if old is not None else Limits()
    values: dict[str, int | str | None] = {
        "max_running": current.max_running, "rate": current.rate.text if current.rate else None}
    for key, value in changes.items():
        if key == "max_running":
            values[key] = None if value is None else whole(value, "max_running", 1)
        elif key == "rate":
            values[key] = None if value is None else parse_rate(value, "rate").text
        else:
            raise ConfigError(f"unknown limit {key!r}: expected max_running or rate")
    return (json.dumps(values) + "\n").encode()
