"""Flow control by key, as settings: limits per key, the fair share, the queue's key path.

Keys of the ``[queues.NAME]`` table and its ``keys`` sub-tables::

    [queues.quote]
    key = "payload.supplier"     # a job's key, from its payload (a submit may name its own)
    fair = true                  # round-robin between the keys that have ready jobs

    [queues.quote.keys]          # every key of the queue
    max_running = 2              # at most 2 jobs of one key claimed at once
    rate = "10/s"                # each key dispatched at most at 10/s

    [queues.quote.keys."supplier-a"]   # one key, over the lines above
    rate = "50/s"
    weight = 3                   # with fair = true: 3 turns per round (default 1)

``ckptd limit QUEUE --key K`` overrides them at run time with the file
``<root>/<queue>/key_limits.json`` (``{"*": {...}, "supplier-a": {...}}``, ``*`` for every
key). Each limit of a key is the first one set of: the file's entry for the key, the
config's table for the key, the file's ``*``, the config's ``[queues.Q.keys]``: a named key
beats every key, and at each of the two the file beats the config, as ``limits.json`` does
for the queue. Jobs without a key are held by the queue's limits only. Pure: standard
library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from ckptd.core.answer_types import LimitsView
from ckptd.core.errors import CkptdError, ConfigError
from ckptd.core.job_keys import EVERY_KEY, check_key, check_key_path
from ckptd.core.queue_controls import Rate, parse_rate, whole

KEY_LIMITS_FILE = "key_limits.json"
KEY_LIMIT_FIELDS = ("max_running", "rate", "weight")
MAX_WEIGHT = 1000
KEY_CONTROL_KEYS = ("key", "fair", "keys")
"""The keys of a ``[queues.NAME]`` table that this module reads."""


class KeyLimitView(TypedDict):
    """:class:`KeyLimit` as the limits file and ``status`` write it."""

    max_running: int | None
    rate: str | None
    weight: int | None


@dataclass(frozen=True)
class KeyLimit:
    """Limits of one key, or of every key (None: not set here)."""

    max_running: int | None = None
    rate: Rate | None = None
    weight: int | None = None

    def as_dict(self) -> KeyLimitView:
        """As the limits file and ``status`` write it."""
        return {"max_running": self.max_running,
                "rate": self.rate.text if self.rate else None, "weight": self.weight}

    @property
    def empty(self) -> bool:
        """True when it sets nothing."""
        return self.max_running is None and self.rate is None and self.weight is None


@dataclass(frozen=True)
class KeySettings:
    """A queue's ``keys`` tables: the limits of every key, and of named keys."""

    every: KeyLimit = KeyLimit()
    named: Mapping[str, KeyLimit] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyLimitsInForce:
    """What holds one key now, and where each part comes from."""

    max_running: int | None
    rate: Rate | None
    weight: int
    source: str  # "config", or the limits file when it sets any of them

    def as_dict(self) -> LimitsView:
        """For status, explain and the wire."""
        return {"max_running": self.max_running,
                "rate": self.rate.text if self.rate else None,
                "rate_per_s": round(self.rate.per_second, 6) if self.rate else None,
                "weight": self.weight, "source": self.source}


def _limit(table: object, what: str) -> KeyLimit:
    if not isinstance(table, dict):
        raise ConfigError(f"{what} must be a table of max_running, rate and weight")
    unknown = set(table) - set(KEY_LIMIT_FIELDS)
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in {what}; known: "
                          f"{', '.join(KEY_LIMIT_FIELDS)}")
    running, rate, weight = (table.get(k) for k in KEY_LIMIT_FIELDS)
    if weight is not None and (whole(weight, f"weight in {what}", 1) > MAX_WEIGHT):
        raise ConfigError(f"invalid weight in {what} {weight!r}: at most {MAX_WEIGHT}")
    return KeyLimit(None if running is None else whole(running, f"max_running in {what}", 1),
                    None if rate is None else parse_rate(rate, f"rate in {what}"), weight)


class KeyControls(TypedDict, total=False):
    """The keys of a ``[queues.NAME]`` table this module reads, as QueueSettings fields."""

    key: tuple[str, ...]
    fair: bool
    keys: KeySettings


def parse_key_controls(name: str, table: Mapping[str, object], source: str) -> KeyControls:
    """The keys of ``[queues.<name>]`` this module reads, as QueueSettings fields."""
    found: KeyControls = {}
    if "key" in table:
        found["key"] = check_key_path(table["key"], f"queues.{name}.key ({source})")
    if "fair" in table:
        fair = table["fair"]
        if not isinstance(fair, bool):
            raise ConfigError(f"invalid queues.{name}.fair ({source}) {fair!r}: "
                              "expected true or false")
        found["fair"] = fair
    if "keys" in table:
        keys = table["keys"]
        what = f"[queues.{name}.keys] ({source})"
        if not isinstance(keys, dict):
            raise ConfigError(f"{what} must be a table")
        every = {k: v for k, v in keys.items() if not isinstance(v, dict)}
        named: dict[str, KeyLimit] = {}
        for key, sub in keys.items():
            if isinstance(sub, dict):
                try:
                    check_key(key)
                except CkptdError as exc:
                    raise ConfigError(f"{what}: {exc}") from None
                named[key] = _limit(sub, f'[queues.{name}.keys."{key}"] ({source})')
        found["keys"] = KeySettings(_limit(every, what), named)
    return found


def parse_key_limits_file(data: bytes, where: str) -> dict[str, KeyLimit]:
    """Read ``<queue>/key_limits.json`` (``{"*": {"max_running": 2}, "supplier-a":
    {"rate": "50/s"}}``); ConfigError naming the file when it is not that."""
    example = '{"*": {"max_running": 2}, "supplier-a": {"rate": "50/s", "weight": 3}}'
    try:
        value = json.loads(data or b"{}")
    except ValueError as exc:
        raise ConfigError(f"{where} is not JSON ({exc}); expected {example}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object of keys (\"*\" for every key), "
                          f"e.g. {example}")
    found: dict[str, KeyLimit] = {}
    for key, table in value.items():
        if key != EVERY_KEY:
            try:
                check_key(key)
            except CkptdError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        found[key] = _limit(table, f"{key!r} in {where}")
    return found


def changed_key_limits_file(old: bytes | None, key: str, changes: Mapping[str, object],
                            reset: bool, where: str) -> bytes | None:
    """The new bytes of ``key_limits.json``: ``old`` (None: no file yet) with ``changes``
    for ``key`` (max_running, rate, weight; a None value removes one, so the next in line
    applies), or with ``reset`` without the key. None when no key is left (remove the
    file). Raises ConfigError for a bad value."""
    if key != EVERY_KEY:
        check_key(key)
    current = parse_key_limits_file(old, where) if old is not None else {}
    table: dict[str, object] = {
        k: v for k, v in current.get(key, KeyLimit()).as_dict().items() if v is not None}
    if reset:
        table = {}
    for name, value in changes.items():
        if name not in KEY_LIMIT_FIELDS:
            raise ConfigError(f"unknown limit {name!r}: expected max_running, rate or weight")
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value
    current[key] = _limit(table, f"{key!r}")  # checks the new values
    tables = {k: {n: v for n, v in limit.as_dict().items() if v is not None}
              for k, limit in sorted(current.items()) if not limit.empty}
    return (json.dumps(tables) + "\n").encode() if tables else None


def key_limits_of(keys: KeySettings | None, key: str,
                  override: Mapping[str, KeyLimit] | None, source: str = "config"
                  ) -> KeyLimitsInForce:
    """The limits of ``key`` from the queue's ``keys`` settings and its limits file
    (``source``: the file's name, for status), in the order of the module docstring."""
    layers: list[tuple[KeyLimit | None, bool]] = [
        (override.get(key) if override else None, True),
        (keys.named.get(key) if keys else None, False),
        (override.get(EVERY_KEY) if override else None, True),
        (keys.every if keys else None, False)]
    running: int | None = None
    rate: Rate | None = None
    weight: int | None = None
    from_file = False
    for limit, in_file in layers:  # the first layer that sets a field wins it
        if limit is None:
            continue
        if running is None and limit.max_running is not None:
            running, from_file = limit.max_running, from_file or in_file
        if rate is None and limit.rate is not None:
            rate, from_file = limit.rate, from_file or in_file
        if weight is None and limit.weight is not None:
            weight, from_file = limit.weight, from_file or in_file
    return KeyLimitsInForce(running, rate, weight or 1, source if from_file else "config")


def limits_any_key(keys: KeySettings | None, override: Mapping[str, KeyLimit] | None
                   ) -> bool:
    """True when some key of the queue has a max_running or a rate."""
    tables = ([keys.every, *keys.named.values()] if keys else []) + \
        (list(override.values()) if override else [])
    return any(t.max_running is not None or t.rate is not None for t in tables)
