"""Priorities and aging on a fake clock (daemon/controls/priorities.py), then the engine's
dispatch order (tests/harness.py). The real-process tests (tests/integration/
test_priorities.py) keep one run of each through a worker."""

from __future__ import annotations

import pytest

from ckptd.core.config import QueueSettings
from ckptd.core.queue_controls import MAX_PRIORITY
from ckptd.daemon.controls.priorities import ReadyLines, priority_of
from ckptd.testing import FakeClock
from tests.harness import Harness, MakeHarness


def lines(clock: FakeClock, aging: float = 0.0) -> ReadyLines:
    ready = ReadyLines(clock)
    ready.aging = aging
    return ready


def add(ready: ReadyLines, job_id: str, priority: int) -> None:
    ready.note(job_id, priority)
    ready.append(job_id)


def drain(ready: ReadyLines) -> list[str]:
    return [ready.popleft() for _ in range(len(ready))]


def test_lower_runs_first_and_fifo_within_a_priority() -> None:
    ready = lines(FakeClock(100.0))
    for job_id, priority in [("a5", 5), ("b0", 0), ("c-3", -3), ("d5", 5), ("e0", 0),
                             ("f-3", -3)]:
        add(ready, job_id, priority)
    assert list(ready) == ["c-3", "f-3", "b0", "e0", "a5", "d5"], "iteration: dispatch order"
    assert ready.levels() == {-3: 2, 0: 2, 5: 2}
    assert drain(ready) == ["c-3", "f-3", "b0", "e0", "a5", "d5"]
    assert ready.aged == 0 and not ready
    with pytest.raises(IndexError):
        ready.popleft()


def test_a_job_put_back_goes_to_the_head_of_its_own_line() -> None:
    ready = lines(FakeClock(100.0))
    for job_id, priority in [("x", 2), ("y", 2), ("z", 0)]:
        add(ready, job_id, priority)
    assert ready.popleft() == "z"
    assert ready.popleft() == "x"
    ready.appendleft("x")  # its claim did not happen
    assert drain(ready) == ["x", "y"]


def test_aging_lets_a_waiting_job_through_a_flood() -> None:
    """Aging 1 s per level: a priority-5 job behind a flood of priority-0 jobs (two arrive
    for every one dispatched) runs once it has waited 5 s longer than the oldest priority-0
    job still waiting, while the flood goes on. Moved here from the real-process test
    (tests/integration/test_priorities.py), which keeps one flood through a worker."""
    clock = FakeClock(100.0)
    ready = lines(clock, aging=1.0)
    flood = 0

    def arrive(count: int) -> None:
        nonlocal flood
        for _ in range(count):
            add(ready, f"flood-{flood}", 0)
            flood += 1

    arrive(10)
    add(ready, "waiting", 5)
    taken = []
    while "waiting" not in taken:
        clock.advance(0.1)
        arrive(2)
        head_zero = ready.lines[0][0][1]  # when the oldest priority-0 job still waiting came
        taken.append(ready.popleft())
        assert len(taken) < 1000, "starved"
    longer = head_zero - 100.0  # how much longer it waited than the oldest priority-0 job
    assert longer > 5.0, "not before it waited 5 levels longer"
    assert longer <= 5.0 + 0.1 + 1e-9, "and at the first dispatch after that (0.1 s apart)"
    assert clock() - 100.0 < 12.0, "not after the flood"
    assert ready.aged == 1, "the dispatch aging decided is counted"
    assert len(ready) > 0, "the flood still goes on"


def test_without_aging_a_flood_holds_a_less_urgent_job_back() -> None:
    clock = FakeClock(100.0)
    ready = lines(clock, aging=0.0)
    add(ready, "waiting", 5)
    for n in range(1000):
        clock.advance(0.1)
        add(ready, f"flood-{2 * n}", 0)
        add(ready, f"flood-{2 * n + 1}", 0)
        assert ready.popleft() != "waiting"
    assert ready.aged == 0


def test_a_listed_job_put_back_is_the_next_taken() -> None:
    clock = FakeClock(100.0)
    ready = lines(clock)
    ready.add_listed(-1, ["a", "b", "c"])
    clock.advance(1.0)
    add(ready, "later", -1)
    taken = ready.popleft()
    assert taken == "a"
    ready.appendleft(taken)  # its file was not read yet: claimed at the next turn
    assert drain(ready) == ["a", "b", "c", "later"]


def test_listed_jobs_go_into_the_line_their_names_say() -> None:
    ready = lines(FakeClock(100.0))
    add(ready, "known", 3)
    assert ready.add_listed(-1, ["handmade"]) == 1  # pending/handmade,p-1.json
    assert ready.priority("handmade") == -1
    assert drain(ready) == ["handmade", "known"]


@pytest.mark.parametrize(("value", "level"), [
    ({"priority": 3}, 3), ({"priority": -2}, -2), ({}, 0), ({"priority": True}, 0),
    ({"priority": "5"}, 0), ({"priority": 2.5}, 0), ({"priority": MAX_PRIORITY + 1}, 0),
    ({"priority": -MAX_PRIORITY}, -MAX_PRIORITY), (b'{"priority": 4}', 4), (b"not json", 0),
    ([1, 2], 0),
])
def test_a_priority_is_a_whole_number_in_range_anything_else_is_zero(
        value: object, level: int) -> None:
    assert priority_of(value) == level


# -- the engine's dispatch order ---------------------------------------------------------------


def dispatch_one_by_one(h: Harness, w: bytes, count: int) -> list[str]:
    order = []
    for _ in range(count):
        [job] = h.dispatch()
        order.append(job["id"])
        h.now += 0.3  # a job that takes its time: the worker earns no credits beyond its slot
        h.finish(w, job)
    return order


def test_urgent_jobs_go_before_the_rest_fifo_within_a_priority(harness: Harness) -> None:
    """Moved here from tests/integration/test_priorities.py (which keeps a worker's run):
    one slot, so dispatches are the order."""
    h = harness
    normal = [h.submit(priority=5) for _ in range(20)]
    w = h.hello(slots=1)
    first = dispatch_one_by_one(h, w, 3)
    urgent = [h.submit(priority=0) for _ in range(10)]
    assert first == normal[:3], "FIFO within priority 5"
    assert dispatch_one_by_one(h, w, 10) == urgent, "the ten in submit order, nothing between"
    assert dispatch_one_by_one(h, w, 5) == normal[3:8]
    status = h.operators.status("q", h.now)["queues"]["q"]
    assert status["priorities"]["aged"] == 0


def test_the_queue_s_aging_setting_reaches_its_lines(make_harness: MakeHarness) -> None:
    h = make_harness(queues={"q": QueueSettings(priority_aging=0.25)})
    h.submit(priority=5)
    h.submit(priority=0)
    h.tick()
    assert h.engine.queues["q"].ready.aging == 0.25
