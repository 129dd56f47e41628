"""Periodic jobs, as settings: the ``[schedules.NAME]`` tables.

::

    [schedules.daily-prices]
    cron = "0 6 * * *"            # or: every = "30s"
    timezone = "Europe/Berlin"    # of the cron expression (default UTC)
    queue = "prices"
    payload = { list = "daily" }
    catch_up = "last"             # ticks missed while no daemon ran: none | last | all

Each tick makes one job whose id is the schedule's name and the tick's UTC time
(``daily-prices.20261127T050000Z``), created only if that id exists nowhere: a tick is
submitted once, whatever crashes or failovers happen around it. The cron expression itself
is checked by the daemon's scheduler (a cron library is not standard library); this module
checks everything else. Pure: standard library only.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ckptd.core.errors import ConfigError
from ckptd.core.names import check_name, check_queue, is_valid_name
from ckptd.core.timefmt import parse_duration

CATCH_UP = ("none", "last", "all")
DEFAULT_CATCH_UP = "last"
KEYS = ("cron", "every", "timezone", "queue", "payload", "catch_up", "max_attempts")
MAX_SCHEDULE_NAME = 100  # the id adds ".YYYYMMDDTHHMMSSZ" (17) and must stay within 128


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    """One ``[schedules.NAME]`` table."""

    name: str
    queue: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    payload: Any = field(default_factory=dict)  # the user's JSON
    catch_up: str = DEFAULT_CATCH_UP
    max_attempts: int | None = None
    source: str = "the config"  # the file it came from, for error messages

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of the cron expression."""
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        """``cron "0 6 * * *" (Europe/Berlin)`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron \"{self.cron}\" ({self.timezone})"
        return f"every {self.every:g}s"


def _jsonable(value: object, what: str) -> object:
    """TOML values that JSON cannot hold (dates and times) are refused, naming the key."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must hold only JSON values (no TOML dates or times, NaN "
                          "or infinity); write a date as a string") from None
    return value


def parse_schedule(name: str, table: object, source: str) -> ScheduleSettings:
    """One ``[schedules.<name>]`` table; ConfigError naming the key and the file."""
    where = f"[schedules.{name}] in {source}"
    check_name(name, "schedule name")
    if len(name) > MAX_SCHEDULE_NAME:
        raise ConfigError(f"schedule name {name!r} in {source} is longer than "
                          f"{MAX_SCHEDULE_NAME} characters")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - set(KEYS)
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in {where}; known: "
                          f"{', '.join(KEYS)}")
    if ("cron" in table) == ("every" in table):
        raise ConfigError(f"{where} needs cron = \"MIN HOUR DAY MONTH WEEKDAY\" or every = "
                          "\"30s\" (one of the two)")
    if "queue" not in table or not is_valid_name(table["queue"]):
        raise ConfigError(f"{where} needs queue = \"NAME\", the queue its jobs go to")
    check_queue(table["queue"])
    cron = table.get("cron")
    if cron is not None and (not isinstance(cron, str) or len(cron.split()) != 5):
        raise ConfigError(f"invalid cron {cron!r} in {where}: expected five fields, "
                          "\"MIN HOUR DAY MONTH WEEKDAY\", e.g. \"0 6 * * *\"")
    every = None
    if "every" in table:
        every = parse_duration(table["every"], f"schedules.{name}.every ({source})")
        if every < 1:
            raise ConfigError(f"every = {table['every']!r} in {where} is shorter than 1s")
    zone = table.get("timezone", "UTC")
    try:
        if not isinstance(zone, str):
            raise ValueError(zone)
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {zone!r} in {where}: expected an IANA name such "
                          "as \"UTC\" or \"Europe/Berlin\"") from None
    catch_up = table.get("catch_up", DEFAULT_CATCH_UP)
    if catch_up not in CATCH_UP:
        raise ConfigError(f"invalid catch_up {catch_up!r} in {where}: expected none, last "
                          "or all")
    attempts = table.get("max_attempts")
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)
                                 or attempts < 1):
        raise ConfigError(f"invalid max_attempts {attempts!r} in {where}: expected a whole "
                          "number of at least 1")
    payload = _jsonable(table.get("payload", {}), f"payload of {where}")
    return ScheduleSettings(name=name, queue=table["queue"], cron=cron, every=every,
                            timezone=zone, payload=payload, catch_up=catch_up,
                            max_attempts=attempts, source=source)


def parse_schedules(value: object, source: str) -> dict[str, ScheduleSettings]:
    """Every ``[schedules.NAME]`` table of a config file."""
    if not isinstance(value, dict):
        raise ConfigError(f"'schedules' in {source} must be a table of tables")
    return {name: parse_schedule(name, table, source) for name, table in value.items()}


def tick_id(name: str, tick: float) -> str:
    """The id of the job of schedule ``name`` for the tick at UNIX time ``tick``."""
    stamp = datetime.datetime.fromtimestamp(tick, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}.{stamp}"
