"""Schedules: periodic jobs from ``[schedules.NAME]``, exactly one per tick.

Each tick's job has the id ``<name>.<tick in UTC>`` and is created like any submit (create-
only, refused where the id exists in any state), so a tick can never make two jobs: not
when a daemon is killed while submitting it, not when another daemon takes over a bucket.
After each tick the schedule's record, ``<queue>/schedules/<name>.json``, says which tick
was the last one submitted; a daemon that starts (or takes over) reads it to know what it
missed, and ``catch_up`` says what to do about the ticks missed while no daemon ran:

- ``none``: nothing; the next tick is the first after the start;
- ``last`` (the default): the most recent missed tick is submitted at once (one run for an
  outage, whatever its length: the choice of anacron and systemd's ``Persistent=true``);
- ``all``: every missed tick is submitted (at most :data:`MAX_CATCH_UP`, oldest first).

A schedule without a record (new) starts with the first tick after the start. Ticks of
``every = "30s"`` are the multiples of 30 s since the epoch, so every daemon agrees on them;
``cron`` ticks come from cronsim, in the schedule's ``timezone``.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from cronsim import CronSim, CronSimError

from ckptd.core.answer_types import ScheduleRow
from ckptd.core.config import LiveSettings
from ckptd.core.errors import CkptdError, ConfigError
from ckptd.core.schedule_settings import ScheduleSettings, tick_id
from ckptd.core.timefmt import time_or_none, utc_iso
from ckptd.store.base import SCHEDULE_DIR, Store
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

MAX_CATCH_UP = 1000
Reply = Callable[[Body | CkptdError], None]  # a submit's answer, or why it failed
Submit = Callable[[Body, float, Reply], None]


def check_cron(schedule: ScheduleSettings) -> None:
    """Raise ConfigError naming the schedule and file when its cron expression is wrong."""
    if schedule.cron is None:
        return
    try:
        next(CronSim(schedule.cron, datetime.now(schedule.zone)))
    except (CronSimError, StopIteration) as exc:
        raise ConfigError(f"invalid cron {schedule.cron!r} in [schedules.{schedule.name}] of "
                          f"{schedule.source}: {exc}") from None


def check_schedules(schedules: Mapping[str, ScheduleSettings]) -> None:
    """Check every cron expression (the config file checked the rest)."""
    for schedule in schedules.values():
        check_cron(schedule)


def next_tick(schedule: ScheduleSettings, after: float) -> float:
    """The first tick of ``schedule`` strictly after the UNIX time ``after``."""
    if schedule.every is not None:
        period = schedule.every
        return (int(after // period) + 1) * period
    assert schedule.cron is not None
    start = datetime.fromtimestamp(after, UTC).astimezone(schedule.zone)
    return next(CronSim(schedule.cron, start)).timestamp()


def record_name(schedule: ScheduleSettings) -> str:
    """The schedule's record, a control file of its queue."""
    return f"{SCHEDULE_DIR}/{schedule.name}.json"


class ScheduleRecord(TypedDict, total=False):
    """A schedule's record (a control file of its queue): its last tick submitted."""

    schedule: str
    last: str  # ISO time
    last_id: str
    written: str


def read_record(store: Store, schedule: ScheduleSettings) -> ScheduleRecord | None:
    """The schedule's record (``{"last": "<ISO time of the last tick submitted>", ...}``)."""
    data = store.read_control(schedule.queue, record_name(schedule))
    if data is None:
        return None
    try:
        record: ScheduleRecord = json.loads(data)  # as a daemon wrote it
    except ValueError:
        log.error("the record of schedule %s is not JSON; starting it afresh", schedule.name)
        return None
    return record if isinstance(record, dict) else None


@dataclass
class Plan:
    """What one schedule does next."""

    schedule: ScheduleSettings
    next: float
    last: float | None = None  # the last tick submitted (from the record, then this daemon)
    last_id: str | None = None
    backlog: deque[float] = field(default_factory=deque)  # catch-up ticks to submit first
    busy: bool = False  # a tick's submit is in flight
    submitted: int = 0  # jobs this daemon created for it
    existing: int = 0  # ticks whose job existed already (a crash or another daemon)
    error: str | None = None


class Scheduler:
    """Submits the ticks of every schedule (active daemon only)."""

    def __init__(self, live: LiveSettings, store: Store, submit: Submit,
                 leads: Callable[[str], bool] = lambda queue: True) -> None:
        self.live = live
        self.store = store
        self.submit = submit
        # Several daemons on one store: a schedule runs in the daemon leading its queue.
        self.leads = leads
        self.plans: dict[str, Plan] = {}
        self._settings: Mapping[str, ScheduleSettings] | None = None
        self.running = False

    def clear(self) -> None:
        """Stop (this daemon stopped leading)."""
        self.plans.clear()
        self._settings = None
        self.running = False

    def start(self, now: float) -> None:
        """Read every schedule's record and plan what it missed (start, or takeover)."""
        self.plans.clear()
        self._settings = None
        self.running = True
        self._follow_settings(now)

    def _follow_settings(self, now: float) -> None:
        """Plan new and changed schedules (at start and after a reload); drop removed ones."""
        schedules = self.live.current.schedules
        if schedules is self._settings:
            return
        self._settings = schedules
        try:
            check_schedules(schedules)
        except ConfigError as exc:
            log.error("%s; schedules are not run until it is fixed (SIGHUP)", exc)
            self.plans.clear()
            return
        for name in list(self.plans):
            if name not in schedules:
                del self.plans[name]
        for name, schedule in schedules.items():
            plan = self.plans.get(name)
            if plan is not None and plan.schedule == schedule:
                continue
            try:
                self.plans[name] = self._plan(schedule, now)
            except CkptdError as exc:
                log.error("cannot read the record of schedule %s (trying again soon): %s",
                          name, exc)
                self._settings = None  # try again at the next turn

    def _plan(self, schedule: ScheduleSettings, now: float) -> Plan:
        record = read_record(self.store, schedule)
        last = time_or_none(record.get("last")) if record else None
        plan = Plan(schedule, next_tick(schedule, now), last,
                    record.get("last_id") if record else None)
        if last is None or schedule.catch_up == "none":
            return plan
        missed: list[float] = []
        tick = next_tick(schedule, last)
        while tick <= now:
            missed.append(tick)
            if len(missed) > MAX_CATCH_UP:
                missed.pop(0)
            tick = next_tick(schedule, tick)
        if schedule.catch_up == "last":
            missed = missed[-1:]
        if missed:
            log.info("schedule %s missed %d tick(s) while no daemon ran; catch_up = %s: "
                     "submitting %d", schedule.name, len(missed), schedule.catch_up,
                     len(missed), extra={"fields": {"from": utc_iso(missed[0]),
                                                    "to": utc_iso(missed[-1])}})
        plan.backlog.extend(missed)
        return plan

    def due(self, now: float) -> None:
        """Submit the ticks that are due (one in flight per schedule)."""
        if not self.running:
            return
        self._follow_settings(now)
        for plan in self.plans.values():
            if plan.busy or not self.leads(plan.schedule.queue):
                continue
            if plan.backlog:
                self._submit(plan, plan.backlog[0], now, catch_up=True)
            elif now >= plan.next:
                self._submit(plan, plan.next, now, catch_up=False)

    def next_due(self) -> float | None:
        """When the next tick is due (for the loop's sleep)."""
        if not self.running:
            return None
        times = [0.0 if plan.backlog else plan.next for plan in self.plans.values()
                 if not plan.busy and self.leads(plan.schedule.queue)]
        return min(times) if times else None

    def _submit(self, plan: Plan, tick: float, now: float, *, catch_up: bool) -> None:
        schedule = plan.schedule
        job_id = tick_id(schedule.name, tick)
        body: Body = {"queue": schedule.queue, "payload": schedule.payload,
                      "id": job_id, "if_exists": "return", "keep_id": True}
        if schedule.max_attempts:
            body["max_attempts"] = schedule.max_attempts
        plan.busy = True

        def answered(answer: Body | CkptdError) -> None:
            plan.busy = False
            if not isinstance(answer, dict):  # refused: the store failed; again next turn
                if plan.error != str(answer):
                    log.warning("schedule %s: cannot submit the tick of %s (trying again): %s",
                                schedule.name, utc_iso(tick), answer)
                plan.error = str(answer)
                return
            plan.error = None
            if catch_up:
                plan.backlog.popleft()
            else:
                plan.next = next_tick(schedule, tick)
            if answer.get("created"):
                plan.submitted += 1
                log.info("schedule tick submitted", extra={"fields": {
                    "schedule": schedule.name, "queue": schedule.queue, "id": job_id,
                    "tick": utc_iso(tick), "catch_up": catch_up}})
            else:
                plan.existing += 1
            if plan.last is None or tick > plan.last:
                plan.last, plan.last_id = tick, job_id
                self._write_record(plan, now)

        self.submit(body, now, answered)

    def run_now(self, name: str, now: float, by: str,
                reply: Reply) -> None:
        """Submit one job of schedule ``name`` now, besides its ticks (an operator's "run
        now"): its id is ``NAME.now-<time>``, and its plan and record are left as they are.
        ``reply`` gets the submit's answer."""
        plan = self.plans.get(name)
        if plan is None:
            known = ", ".join(sorted(self.plans)) or "none"
            reply(ConfigError(f"no schedule {name!r} runs in this daemon (schedules: {known})"))
            return
        schedule = plan.schedule
        stamp = tick_id(schedule.name, now).split(".", 1)[1]
        body: Body = {"queue": schedule.queue, "payload": schedule.payload,
                      "id": f"{schedule.name}.now-{stamp}", "if_exists": "return"}
        if schedule.max_attempts:
            body["max_attempts"] = schedule.max_attempts
        log.info("schedule run now", extra={"fields": {"schedule": name, "by": by,
                                                       "id": body["id"]}})
        self.submit(body, now, reply)

    def _write_record(self, plan: Plan, now: float) -> None:
        """Say which tick was the last submitted (after its job is durable: a crash before
        this only makes the next daemon find that job already there)."""
        schedule = plan.schedule
        assert plan.last is not None
        record = {"schedule": schedule.name, "last": utc_iso(plan.last),
                  "last_id": plan.last_id, "written": utc_iso(now)}
        try:
            self.store.write_control(schedule.queue, record_name(schedule),
                                     (json.dumps(record) + "\n").encode())
        except CkptdError as exc:
            log.warning("cannot write the record of schedule %s: %s", schedule.name, exc)

    def view(self, now: float) -> list[ScheduleRow]:
        """What status and ``ckptd schedules`` show."""
        out: list[ScheduleRow] = []
        for name, plan in sorted(self.plans.items()):
            schedule = plan.schedule
            out.append({"name": name, "queue": schedule.queue, "when": schedule.describe(),
                        "catch_up": schedule.catch_up,
                        "next": utc_iso(plan.backlog[0] if plan.backlog else plan.next),
                        "next_in_s": round(max(0.0, (plan.backlog[0] if plan.backlog
                                                     else plan.next) - now), 3),
                        "last": utc_iso(plan.last) if plan.last is not None else None,
                        "last_id": plan.last_id, "backlog": len(plan.backlog),
                        "submitted": plan.submitted, "existing": plan.existing,
                        "error": plan.error})
        return out


def store_view(settings_schedules: Mapping[str, ScheduleSettings], store: Store, now: float
               ) -> list[ScheduleRow]:
    """``ckptd schedules`` without a daemon: the records in the store, the next ticks."""
    out: list[ScheduleRow] = []
    for name, schedule in sorted(settings_schedules.items()):
        check_cron(schedule)
        record = read_record(store, schedule) or {}
        nxt = next_tick(schedule, now)
        out.append({"name": name, "queue": schedule.queue, "when": schedule.describe(),
                    "catch_up": schedule.catch_up, "next": utc_iso(nxt),
                    "next_in_s": round(nxt - now, 3), "last": record.get("last"),
                    "last_id": record.get("last_id"), "backlog": 0, "submitted": None,
                    "existing": None, "error": None})
    return out
