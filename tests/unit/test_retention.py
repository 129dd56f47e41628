"""Retention on a fake clock (daemon/controls/retention.py): which finished jobs go, when,
and where archived ones go; then the engine folding a sweep into its counts. The
real-process tests (tests/integration/test_retention.py) keep one flow of jobs through a
daemon, with the metrics.

A job's end is when its file last changed; the store below reports the ends the test sets
(as ``ls -l`` would show them after that much time), since a file's change time cannot be
set back on a real disk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ckptd.core.config import QueueSettings
from ckptd.core.states import State
from ckptd.daemon.controls.retention import due_for_removal
from ckptd.store.bucket import BucketStore
from tests.harness import Harness, MakeHarness
from tests.helpers import wait_for

DAY = 86400.0
NOW = time.time()


class EndedAt(BucketStore):
    """A memory store whose listing shows the end times the test gives its jobs."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.ended: dict[str, float] = {}

    def mtime(self, queue: str, state: State, job_id: str) -> float:
        return self.ended.get(job_id, super().mtime(queue, state, job_id))


def finished_jobs(h: Harness, ages: dict[str, float], state: State = State.DONE) -> None:
    """Jobs ``name`` that ended ``ages[name]`` seconds before now, in ``state``."""
    store = h.store
    assert isinstance(store, EndedAt)
    w = h.hello(slots=len(ages))
    for name in ages:
        h.submit(id=name, max_attempts=1)
    for job in h.dispatch():
        if state is State.DONE:
            h.finish(w, job)
        else:
            h.answer(w, "failed", {"queue": "q", "id": job["id"], "attempt": 1,
                                   "error": "no", "retry": False})
    for name, age in ages.items():
        store.ended[name] = h.now - age


def sweep(h: Harness) -> None:
    """A turn that starts a sweep, the sweep, and the turn that folds it into the index."""
    sweeper = h.engine.sweeper
    before = dict(sweeper.last_sweep)
    h.tick()
    wait_for(lambda: sweeper.last_sweep != before or sweeper.next_at > h.now + 0.05,
             timeout=10, message="the sweep to end")
    wait_for(lambda: sweeper._thread is None or not sweeper._thread.is_alive(), timeout=10)
    h.tick()


@pytest.fixture
def timed(make_harness: MakeHarness) -> Iterator[Any]:
    """make_harness with an :class:`EndedAt` store and a clock at today's time."""
    from ckptd.testing import FakeClock

    def make(**settings: Any) -> Harness:
        return make_harness(store=EndedAt(f"memory://retention-{id(settings)}-{time.time()}"),
                            clock=FakeClock(NOW), **settings)
    yield make


# -- which jobs go -----------------------------------------------------------------------------


def pairs(**ages: float) -> list[tuple[str, float]]:
    """(id, ended) oldest first, from ages in seconds before NOW."""
    return sorted(((name, NOW - age) for name, age in ages.items()), key=lambda p: p[1])


def test_jobs_older_than_keep_go_and_younger_ones_stay() -> None:
    listing = pairs(old=8 * DAY, edge=7 * DAY, young=DAY)
    assert [i for i, _ in due_for_removal(listing, 7 * DAY, None, NOW)] == ["old"]


def test_keep_last_keeps_the_newest_whatever_their_age() -> None:
    listing = pairs(a=50, b=40, c=30, d=20, e=10)
    assert [i for i, _ in due_for_removal(listing, 0, 2, NOW)] == ["a", "b", "c"]
    assert due_for_removal(listing, 0, 10, NOW) == []


def test_age_and_keep_last_together_remove_either_s_jobs_once() -> None:
    listing = pairs(a=9 * DAY, b=8 * DAY, c=DAY, d=60, e=10)
    doomed = [i for i, _ in due_for_removal(listing, 7 * DAY, 2, NOW)]
    assert sorted(doomed) == ["a", "b", "c"] and len(doomed) == len(set(doomed))


def test_keep_zero_keeps_forever() -> None:
    assert due_for_removal(pairs(a=1000 * DAY), 0, None, NOW) == []


# -- the sweep ---------------------------------------------------------------------------------


def test_done_and_failed_jobs_go_by_their_own_keep(timed: Any) -> None:
    h = timed(keep_done=7 * DAY, keep_failed=30 * DAY, retention_interval=60.0)
    finished_jobs(h, {"done-old": 8 * DAY, "done-young": 6 * DAY})
    finished_jobs(h, {"failed-old": 31 * DAY, "failed-young": 8 * DAY}, State.FAILED)
    sweep(h)
    assert h.store.ids("q", State.DONE) == ["done-young"]
    assert h.store.ids("q", State.FAILED) == ["failed-young"]
    view = h.engine.sweeper.view("q")
    assert view["removed_done"] == 1 and view["removed_failed"] == 1
    status = h.operators.status("q", h.now)["queues"]["q"]
    assert status["done"] == 1 and status["failed"] == 1, "the index counts what is left"


def test_archive_moves_jobs_under_the_day_they_ended(timed: Any) -> None:
    h = timed(keep_done=DAY, archive=True, retention_interval=60.0)
    finished_jobs(h, {"old": 2 * DAY, "young": 60})
    ended = h.store.ended["old"]
    sweep(h)
    day = time.strftime("%Y-%m-%d", time.gmtime(ended))
    assert h.store.ids("q", State.DONE) == ["young"]
    assert h.store.fs.exists(h.store._key("q", f"archive/{day}", "old.json"))
    assert h.engine.sweeper.view("q")["archived_done"] == 1


def test_a_queue_s_own_keys_win_and_open_jobs_are_never_touched(timed: Any) -> None:
    h = timed(keep_done=DAY, queues={"q": QueueSettings(keep_done=0.0, keep_last=1)})
    finished_jobs(h, {"a": 3 * DAY, "b": 2 * DAY, "c": 10})
    pending = h.submit(id="still-pending")
    h.store.ended[pending] = h.now - 100 * DAY
    sweep(h)
    assert h.store.ids("q", State.DONE) == ["c"], "keep_last = 1 of the queue, not 1 day"
    assert h.where(pending) == [State.PENDING]


def test_a_sweep_runs_once_per_interval(timed: Any) -> None:
    h = timed(keep_done=DAY, retention_interval=3600.0)
    finished_jobs(h, {"first": 2 * DAY})
    sweep(h)
    assert h.store.ids("q", State.DONE) == []
    finished_jobs(h, {"second": 2 * DAY})
    h.tick(1800)  # half an interval later: no sweep
    assert h.engine.sweeper._thread is None or not h.engine.sweeper._thread.is_alive()
    assert h.store.ids("q", State.DONE) == ["second"]
    h.clock.advance(1800)
    sweep(h)
    assert h.store.ids("q", State.DONE) == []


def test_a_daemon_that_does_not_lead_removes_nothing(timed: Any) -> None:
    h = timed(keep_done=DAY, retention_interval=60.0)
    finished_jobs(h, {"a": 2 * DAY, "b": 3 * DAY})
    leading = False
    h.engine.sweeper.may_write = lambda: leading  # a bucket's standby, or a lost lease
    sweep(h)
    assert h.store.ids("q", State.DONE) == ["a", "b"]
    leading = True
    h.tick(60)
    sweep(h)
    assert h.store.ids("q", State.DONE) == []
