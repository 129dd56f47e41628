"""The dispatch gate on a fake clock: pause, max_running and rate (daemon/controls/gate.py).

First the gate alone (what it lets through, read from settings and control files), then the
engine that asks it (tests/harness.py): what a queue may have claimed across several workers,
a restart, a change at run time. The real-process tests of the same controls
(tests/integration/test_pause.py, test_dispatch_limits.py) prove the wiring: the watcher,
the CLI, a kill -9.
"""

from __future__ import annotations

from ckptd.core.config import LiveSettings, QueueSettings, Settings
from ckptd.core.queue_controls import LIMITS_FILE, PAUSED_FILE, Rate, parse_rate
from ckptd.core.states import State
from ckptd.daemon.controls.control_files import QueueControls
from ckptd.daemon.controls.gate import Gate, TokenBucket
from ckptd.store.bucket import BucketStore
from ckptd.testing import FakeClock
from tests.harness import Harness, MakeHarness

Q, OTHER = "supplier", "other"


def gate_with(clock: FakeClock | None = None, **queue: object
              ) -> tuple[Gate, QueueControls, BucketStore]:
    settings = Settings(queues={Q: QueueSettings(**queue)}) if queue else Settings()  # type: ignore[arg-type]
    gate = Gate(LiveSettings(settings))
    store = BucketStore(f"memory://gate-{id(gate)}")
    return gate, QueueControls(store, gate, clock or FakeClock(1000.0)), store


# -- pause -----------------------------------------------------------------------------------


def test_a_paused_file_closes_its_queue_only_and_its_removal_opens_it() -> None:
    gate, controls, _ = gate_with()
    assert gate.allows(Q, 0, 1000.0)
    controls.load(Q, {PAUSED_FILE: b"maintenance of the supplier API\n"})
    assert not gate.allows(Q, 0, 1000.0)
    assert gate.allows(OTHER, 0, 1000.0), "another queue goes on"
    assert gate.view(Q, 0)["paused"]["reason"] == "maintenance of the supplier API"
    controls.load(Q, {})  # the file is gone
    assert gate.allows(Q, 0, 1000.0)
    assert gate.view(Q, 0)["paused"] is None


def test_pause_and_resume_write_the_file_and_act_at_once() -> None:
    gate, controls, store = gate_with()
    controls.pause(Q, "by the CLI")
    assert store.read_control(Q, PAUSED_FILE) == b"by the CLI\n"
    assert not gate.allows(Q, 0, 1000.0)
    controls.resume(Q)
    assert store.read_control(Q, PAUSED_FILE) is None and gate.allows(Q, 0, 1000.0)


# -- max_running -----------------------------------------------------------------------------


def test_max_running_lets_a_job_through_below_the_limit_only() -> None:
    gate, _, _ = gate_with(max_running=3)
    assert [gate.allows(Q, running, 1000.0) for running in range(5)] == \
        [True, True, True, False, False]
    assert gate.allows(OTHER, 100, 1000.0), "a queue without limits has none"


def test_a_limits_file_wins_over_the_config_while_it_exists() -> None:
    gate, controls, _ = gate_with(max_running=3)
    controls.load(Q, {LIMITS_FILE: b'{"max_running": 1}'})
    assert gate.allows(Q, 0, 1000.0) and not gate.allows(Q, 1, 1000.0)
    assert gate.limits(Q).max_running == 1
    controls.load(Q, {LIMITS_FILE: b"not json"})  # a broken file keeps what was in force
    assert gate.limits(Q).max_running == 1 and "error" in gate.view(Q, 0)["limits"]
    controls.load(Q, {})
    assert gate.limits(Q).max_running == 3 and gate.allows(Q, 2, 1000.0)


# -- rate --------------------------------------------------------------------------------------


def claims_over(gate: Gate, clock: FakeClock, seconds: float, step: float = 0.001
                ) -> list[float]:
    """Ask the gate every ``step`` seconds for ``seconds`` (a queue that always has work) and
    return the times it let a claim through."""
    times = []
    end = clock() + seconds
    while clock() < end:
        now = clock()
        if gate.allows(Q, 0, now):
            gate.took(Q, now)
            times.append(now)
        clock.advance(step)
    return times


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    return [sum(1 for t in times if start + s <= t < start + s + 1) for s in range(seconds)]


def test_a_rate_lets_through_that_many_a_second_after_a_burst_of_a_tenth_of_it() -> None:
    clock = FakeClock(1000.0)
    gate, _, _ = gate_with(clock, rate=parse_rate("50/s", "rate"))
    times = claims_over(gate, clock, 10.0)
    burst = Rate(50, 1, "50/s").burst
    assert burst == 5.0
    assert 500 <= len(times) <= 500 + burst + 1, f"{len(times)} claims in 10 s at 50/s"
    assert max(per_second(times, 1000.0, 10)) <= 50 + burst + 1
    assert min(per_second(times, 1000.0, 10)) >= 49, "the rate is used, not only respected"
    assert gate.throttled[Q] > 0, "the turns it held back are counted"


def test_a_restart_starts_with_one_burst_not_a_saved_up_second() -> None:
    clock = FakeClock(1000.0)
    gate, _, _ = gate_with(clock, rate=parse_rate("50/s", "rate"))
    claims_over(gate, clock, 3.0)
    restarted, _, _ = gate_with(clock, rate=parse_rate("50/s", "rate"))
    start = clock()
    times = claims_over(restarted, clock, 4.0)
    assert max(per_second(times, start, 4)) <= 50 * 1.1 + 1
    assert len([t for t in times if t < start + 0.0099]) == 5, "one burst at once, then 50/s"


def test_the_token_bucket_says_when_its_next_token_comes() -> None:
    bucket = TokenBucket(parse_rate("10/s", "rate"), 1000.0)
    assert bucket.ready(1000.0)
    bucket.take(1000.0)  # burst of 1 at 10/s: empty now
    assert not bucket.ready(1000.05)
    assert abs(bucket.next_at() - 1000.1) < 1e-9
    assert bucket.ready(1000.1)


# -- the engine asks the gate ------------------------------------------------------------------


def fill(h: Harness, count: int, queue: str = Q) -> list[str]:
    return [h.submit(queue) for _ in range(count)]


def claimed(h: Harness, queue: str = Q) -> int:
    return len(h.store.ids(queue, State.CLAIMED))


def test_max_running_bounds_claims_over_every_worker_and_a_restart(
        make_harness: MakeHarness) -> None:
    """Moved here from tests/integration/test_dispatch_limits.py (the real-process test
    keeps the restart by kill -9): three workers of four slots, max_running 3."""
    h = make_harness(queues={Q: QueueSettings(max_running=3)})
    fill(h, 30)
    workers = [h.hello(f"w{n}", slots=4, queues=(Q,)) for n in range(3)]
    sent = h.dispatch()
    assert len(sent) == 3 and claimed(h) == 3, "three claimed, over twelve free slots"
    assert h.dispatch() == []
    h.finish(workers[0], sent[0])
    assert len(h.dispatch()) == 1, "one ends, one more is claimed"
    after = h.restart()  # kill -9: the claimed jobs are adopted from claimed/
    for n in range(3):
        after.hello(f"w{n}", slots=4, queues=(Q,))
    assert after.dispatch() == [], "a restart does not open the limit"
    assert claimed(after) == 3


def test_a_rate_holds_the_dispatch_rate_and_a_restart_adds_one_burst(
        make_harness: MakeHarness) -> None:
    """Moved here from tests/integration/test_dispatch_limits.py (which keeps a shorter
    real-process run): 50/s over ten seconds of a queue with plenty of work and workers that
    answer at once; then a restart."""
    h = make_harness(queues={Q: QueueSettings(rate=parse_rate("50/s", "rate"))})
    fill(h, 800)
    w = h.hello("w", slots=64, queues=(Q,))
    start = h.now
    times = []
    for _ in range(1000):  # ten seconds in turns of 10 ms
        for job in h.dispatch():
            times.append(h.now)
            h.finish(w, job)
        h.tick(0.01)
    counts = per_second(times, start, 10)
    assert 495 <= sum(counts) <= 506 and max(counts) <= 56, counts
    after = h.restart()
    w = after.hello("w", slots=64, queues=(Q,))
    start, times = after.now, []
    for _ in range(300):
        for job in after.dispatch():
            times.append(after.now)
            after.finish(w, job)
        after.tick(0.01)
    assert max(per_second(times, start, 3)) <= 50 * 1.1 + 1, "at most the rate plus a burst"


def test_a_limit_set_at_run_time_holds_in_its_file_and_its_reset_lifts_it(
        make_harness: MakeHarness) -> None:
    """Moved here from tests/integration/test_dispatch_limits.py (the real-process test keeps
    the CLI and the watcher)."""
    h = make_harness()
    answer = h.engine.controls.limit(Q, {"max_running": 2}, reset=False)
    assert answer["limits"]["max_running"] == 2
    assert h.store.read_control(Q, LIMITS_FILE) is not None
    fill(h, 10)
    h.hello("w", slots=6, queues=(Q,))
    assert len(h.dispatch()) == 2, "six slots, two claimed"
    after = h.restart()
    after.hello("w", slots=6, queues=(Q,))
    assert after.dispatch() == [] and claimed(after) == 2, "the file holds across a restart"
    after.engine.controls.limit(Q, {}, reset=True)
    assert len(after.dispatch()) == 6 and claimed(after) == 8, "the reset lifts it at once"


def test_a_paused_queue_gets_no_claims_takes_submits_and_resumes_at_once(
        make_harness: MakeHarness) -> None:
    """Moved here from tests/integration/test_pause.py (the real-process test keeps the file
    by hand, the CLI and the kill -9)."""
    h = make_harness()
    fill(h, 5)
    fill(h, 5, OTHER)
    h.engine.controls.pause(Q, "maintenance")
    h.hello("w", slots=20, queues=(Q, OTHER))
    sent = h.dispatch()
    assert {job["queue"] for job in sent} == {OTHER} and len(sent) == 5
    late = h.submit(Q)  # submits are still accepted
    h.tick(3600)
    assert h.dispatch() == [] and claimed(h) == 0, "an hour later: still nothing claimed"
    after = h.restart()  # kill -9 while paused
    after.hello("w", slots=20, queues=(Q, OTHER))
    assert after.dispatch() == [], "paused after the restart too"
    assert after.operators.status(Q, after.now)["queues"][Q]["paused"]["reason"] == "maintenance"
    after.engine.controls.resume(Q)
    sent = after.dispatch()
    assert len(sent) == 6 and late in {job["id"] for job in sent}, "claimed in the same turn"
