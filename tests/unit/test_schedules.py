"""Schedules on a fake clock: the ticks (core/schedule_settings.py, daemon/controls/
schedules.py), then the engine submitting them (tests/harness.py): one job per tick, what a
restart after an outage catches up. The real-process tests (tests/integration/
test_schedules.py) keep the kill -9 at a tick and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ckptd.core.errors import ConfigError
from ckptd.core.schedule_settings import ScheduleSettings, parse_schedule, tick_id
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.controls.schedules import check_cron, next_tick
from tests.harness import Harness, MakeHarness

Q = "ticks"
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC).timestamp()  # a Monday, noon UTC


def every(seconds: float, name: str = "beat", catch_up: str = "last") -> ScheduleSettings:
    return ScheduleSettings(name=name, queue=Q, every=seconds, catch_up=catch_up,
                            payload={"kind": name})


def utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- the ticks -------------------------------------------------------------------------------


def test_every_ticks_on_multiples_of_its_period_strictly_after() -> None:
    beat = every(30)
    assert next_tick(beat, T0) == T0 + 30, "a tick at 'after' itself is not after it"
    assert next_tick(beat, T0 + 0.001) == T0 + 30
    assert next_tick(beat, T0 + 29.999) == T0 + 30
    assert next_tick(every(3600), T0 + 1) == T0 + 3600, "every daemon agrees: epoch multiples"


def test_cron_ticks_in_the_schedule_s_time_zone_across_a_dst_change() -> None:
    daily = ScheduleSettings(name="daily", queue=Q, cron="0 6 * * *", timezone="Europe/Berlin")
    assert utc(next_tick(daily, T0)) == "2026-03-03 05:00:00", "06:00 in Berlin, winter"
    # Berlin moves to summer time on 29 March 2026: 06:00 is then 04:00 UTC.
    march_28 = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()
    assert utc(next_tick(daily, march_28)) == "2026-03-29 04:00:00"
    assert utc(next_tick(ScheduleSettings(name="u", queue=Q, cron="*/15 * * * *"), T0)) == \
        "2026-03-02 12:15:00"


def test_a_tick_s_id_is_the_schedule_and_the_utc_time() -> None:
    assert tick_id("daily-prices", T0) == "daily-prices.20260302T120000Z"


@pytest.mark.parametrize(("table", "message"), [
    ({"queue": Q}, "needs cron"),
    ({"queue": Q, "cron": "0 6 * * *", "every": "1h"}, "one of the two"),
    ({"every": "1h"}, "needs queue"),
    ({"queue": Q, "every": "0.5s"}, "shorter than 1s"),
    ({"queue": Q, "cron": "0 6 * *"}, "five fields"),
    ({"queue": Q, "every": "1h", "timezone": "Mars/Olympus"}, "unknown timezone"),
    ({"queue": Q, "every": "1h", "catch_up": "some"}, "invalid catch_up"),
    ({"queue": Q, "every": "1h", "max_attempts": 0}, "invalid max_attempts"),
    ({"queue": Q, "every": "1h", "when": "now"}, "unknown setting"),
])
def test_a_wrong_schedule_table_names_the_key_and_the_file(table: dict[str, object],
                                                           message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_schedule("nightly", table, "/etc/ckptd/ckptd.toml")
    assert "/etc/ckptd/ckptd.toml" in str(caught.value)


def test_a_cron_expression_cronsim_refuses_names_the_schedule() -> None:
    wrong = ScheduleSettings(name="nightly", queue=Q, cron="61 * * * *", source="ckptd.toml")
    with pytest.raises(ConfigError, match=r"\[schedules.nightly\] of ckptd.toml"):
        check_cron(wrong)


# -- the engine submits them -------------------------------------------------------------------


def scheduled(h: Harness, name: str = "beat") -> list[str]:
    """The ids of the schedule's jobs, in every state."""
    found = []
    for state in (State.PENDING, State.CLAIMED, State.DONE, State.FAILED):
        found += [i for i in h.store.ids(Q, state) if i.startswith(f"{name}.")]
    return sorted(found)


def test_every_tick_is_submitted_once_however_often_the_loop_turns(
        make_harness: MakeHarness) -> None:
    h = make_harness(schedules={"beat": every(60)})
    start = h.now
    for _ in range(1500):  # five minutes in turns of 200 ms
        h.tick(0.2)
    ticks = [next_tick(every(60), start)]
    while next_tick(every(60), ticks[-1]) <= h.now:
        ticks.append(next_tick(every(60), ticks[-1]))
    assert scheduled(h) == [tick_id("beat", t) for t in ticks]
    assert len(ticks) == 5
    job = h.file(State.PENDING, tick_id("beat", ticks[0]), queue=Q)
    assert job["payload"] == {"kind": "beat"}
    record = json.loads(h.store.read_control(Q, "schedules/beat.json") or b"{}")
    assert record["last_id"] == tick_id("beat", ticks[-1])
    view = h.engine.scheduler.view(h.now)[0]
    assert view["submitted"] == 5 and view["existing"] == 0 and view["backlog"] == 0


@pytest.mark.parametrize(("catch_up", "expected"), [("last", 1), ("all", 5), ("none", 0)])
def test_ticks_missed_while_no_daemon_ran_are_caught_up_as_the_schedule_says(
        make_harness: MakeHarness, catch_up: str, expected: int) -> None:
    """Moved here from tests/integration/test_schedules.py (which keeps "last" and "none"
    through a kill -9): five ticks missed while the daemon was down."""
    h = make_harness(schedules={"beat": every(60, catch_up=catch_up)})
    for _ in range(130):  # two ticks while it runs
        h.tick(1.0)
    before = scheduled(h)
    assert len(before) == 2
    h.now += 300  # down for five minutes: five ticks missed
    down_until = h.now
    after = h.restart()
    for _ in range(expected + 2):  # one tick's submit in flight at a time
        after.tick(0)
    caught = sorted(set(scheduled(after)) - set(before))
    assert len(caught) == expected, caught
    if catch_up == "last":
        assert caught == [tick_id("beat", down_until - down_until % 60)], "the latest missed"
    for _ in range(60):
        after.tick(1.0)
    assert len(set(scheduled(after)) - set(before)) == expected + 1, "then tick by tick"


def test_a_tick_whose_job_exists_is_not_made_again(make_harness: MakeHarness) -> None:
    """A daemon killed after a tick's job was written and before its record: the next one
    submits the same id, finds it and counts it as existing, never a second job."""
    h = make_harness(schedules={"beat": every(60, catch_up="all")})
    for _ in range(61):
        h.tick(1.0)
    [first] = scheduled(h)
    tick = h.engine.scheduler.plans["beat"].last
    assert tick is not None
    # The record still names the tick before: the job of this one was written, the record
    # not yet.
    h.store.write_control(Q, "schedules/beat.json",
                          json.dumps({"last": utc_iso(tick - 60)}).encode())
    after = h.restart()
    for _ in range(3):
        after.tick(0)
    assert scheduled(after) == [first]
    assert after.engine.scheduler.view(after.now)[0]["existing"] >= 1


def test_a_schedule_s_job_runs_like_any_other(make_harness: MakeHarness) -> None:
    h = make_harness(schedules={"beat": every(60)})
    w = h.hello(queues=(Q,))
    h.tick(61)
    [job] = h.dispatch()
    assert job["id"].startswith("beat.") and job["payload"] == {"kind": "beat"}
    h.finish(w, job, result="ok")
    assert h.file(State.DONE, job["id"], queue=Q)["result"] == "ok"
