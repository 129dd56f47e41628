"""The engine with a fake clock and the memory store: leases, retries, fencing, credits."""

from __future__ import annotations

import json

import pytest

from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.daemon.engine.engine import backoff_delay
from tests.harness import Harness, worker_message

__all__ = ["Harness"]  # tests that import it from here still find it (tests/harness.py)


def test_a_job_goes_pending_claimed_done_with_its_result(harness: Harness) -> None:
    h = harness
    job_id = h.submit(payload={"sku": "A"})
    w = h.hello()
    [job] = h.dispatch()
    assert job["id"] == job_id and job["attempt"] == 1 and job["payload"] == {"sku": "A"}
    assert h.where(job_id) == [State.CLAIMED]
    h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "result": 42})
    done = h.file(State.DONE, job_id)
    assert h.where(job_id) == [State.DONE]
    assert done["result"] == 42 and done["attempts"] == 1 and done["worker"] == "w"
    assert done["history"][0]["outcome"] == "done"


def test_credits_bound_what_a_worker_is_sent(harness: Harness) -> None:
    h = harness
    ids = [h.submit() for _ in range(5)]
    h.hello(slots=2)
    sent = h.dispatch()
    assert [j["id"] for j in sent] == ids[:2], "FIFO, and only as many as the free slots"
    assert h.dispatch() == []


def test_a_lost_lease_retries_with_backoff_and_fences_the_old_attempt(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    h.tick(10.5)  # lease (10 s) runs out without a heartbeat
    pending = h.file(State.PENDING, job_id)
    assert pending["attempts"] == 1 and pending["last_error"]["type"] == "LeaseExpired"
    assert h.dispatch() == [], "not before the backoff delay"
    h.tick(backoff_delay(1, h.settings, lambda: 0.5) + 0.01)
    w2 = h.hello("w2")
    [job] = h.dispatch()
    assert job["attempt"] == 2
    # The first worker answers late: its attempt number no longer matches.
    h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "result": "stale"})
    assert h.engine.counters["stale_answers"] == 1 and h.where(job_id) == [State.CLAIMED]
    h.answer(w2, "done", {"queue": "q", "id": job_id, "attempt": 2, "result": "fresh"})
    assert h.file(State.DONE, job_id)["result"] == "fresh"


def test_heartbeats_keep_a_lease(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    for _ in range(5):
        h.tick(8)
        h.answer(w, "heartbeat", {"jobs": [["q", job_id, 1]]})
    assert h.where(job_id) == [State.CLAIMED]
    h.tick(10.5)
    assert h.where(job_id) == [State.PENDING]


def test_attempts_run_out_into_failed_with_the_error(harness: Harness) -> None:
    h = harness
    job_id = h.submit(max_attempts=2)
    w = h.hello()
    for attempt in (1, 2):
        h.tick(120)
        [job] = h.dispatch()
        assert job["attempt"] == attempt
        h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": attempt,
                               "error": f"boom {attempt}", "type": "ValueError",
                               "traceback": "Traceback...", "retry": True})
    failed = h.file(State.FAILED, job_id)
    assert failed["attempts"] == 2 and failed["last_error"]["message"] == "boom 2"
    assert [e["outcome"] for e in failed["history"]] == ["error", "error"]
    assert h.engine.queues["q"].failed == 1


def test_fail_for_good_and_retry_with_a_delay(harness: Harness) -> None:
    h = harness
    a, b = h.submit(), h.submit()
    w = h.hello(slots=2)
    h.dispatch()
    h.answer(w, "failed", {"queue": "q", "id": a, "attempt": 1, "error": "no", "retry": False})
    h.answer(w, "failed", {"queue": "q", "id": b, "attempt": 1, "error": "later",
                           "retry": True, "delay": 30})
    assert h.where(a) == [State.FAILED]
    assert h.where(b) == [State.PENDING]
    h.tick(29)
    assert h.dispatch() == []
    h.tick(1.5)
    assert [j["id"] for j in h.dispatch()] == [b]


def test_not_before_is_respected(harness: Harness) -> None:
    h = harness
    job_id = h.submit(delay=5)
    h.hello()
    assert h.dispatch() == []
    h.tick(5.1)
    assert [j["id"] for j in h.dispatch()] == [job_id]


def test_checkpoints_are_fenced_and_given_to_the_next_attempt(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    sent = h.answer(w, "checkpoint", {"queue": "q", "id": job_id, "attempt": 1, "seq": 1,
                                      "state": {"row": 7}})
    assert (w, b"saved", {"queue": "q", "id": job_id, "seq": 1, "ok": True,
                          "error": None}) in sent
    h.tick(10.5)
    h.tick(10)
    w2 = h.hello("w2")
    [job] = h.dispatch()
    assert job["attempt"] == 2 and job["state"] == {"row": 7}
    # The old attempt may not overwrite the checkpoint any more.
    sent = h.answer(w, "checkpoint", {"queue": "q", "id": job_id, "attempt": 1, "seq": 2,
                                      "state": {"row": 1}})
    [(to, _, refused)] = [m for m in sent if m[1] == b"saved"]
    assert to == w and refused["ok"] is False and "lease lost" in refused["error"]
    assert json.loads(h.store.read_checkpoint("q", job_id))["state"] == {"row": 7}
    h.answer(w2, "done", {"queue": "q", "id": job_id, "attempt": 2, "result": None})
    assert h.store.read_checkpoint("q", job_id) is None


def test_submitting_an_existing_id_never_makes_a_second_job(harness: Harness) -> None:
    h = harness
    h.submit(id="order-1")
    with pytest.raises(CkptdError, match="already exists"):
        h.submit(id="order-1")
    h.engine.submit({"queue": "q", "id": "order-1", "if_exists": "return"}, h.now,
                    h.replies.append)
    h.commit()
    assert h.replies[-1] == {"id": "order-1", "created": False, "state": "pending"}
    assert h.store.ids("q", State.PENDING) == ["order-1"]


def test_recovery_gives_claimed_jobs_a_short_lease_until_a_worker_names_them(
        harness: Harness) -> None:
    h = harness
    named, lost = h.submit(), h.submit()
    h.hello(slots=2)
    h.dispatch()
    # A new daemon: the claimed jobs wait for a worker to say it still runs them, for two
    # heartbeats and a second, not a whole lease (which would stall a lost one for 10 s).
    h.now += 100  # the old daemon is gone: only the clock moves
    after = h.restart()
    again, now = after.engine, after.now
    grace = 2 * h.settings.heartbeat + 1.0
    for job_id in (named, lost):
        lease = again.queues["q"].claimed[job_id]
        assert lease.attempt == 1 and lease.deadline == now + grace < now + h.settings.lease
    after.now += 1
    again.workers_part.hello(b"w", worker_message(
        "hello", {"worker": "w", "queues": ["q"], "slots": 2, "running": [["q", named, 1]]}),
        after.now)
    after.tick(grace - 1 + 0.1)
    assert named in again.queues["q"].claimed, "the job a worker named keeps running"
    assert lost not in again.queues["q"].claimed, "the job nobody named comes back"
    assert h.where(lost) == [State.PENDING] and h.where(named) == [State.CLAIMED]
    assert again.queues["q"].claimed[named].deadline >= now + 1 + h.settings.lease


def test_backoff_grows_and_is_capped() -> None:
    s = Settings(backoff_base=1.0, backoff_cap=10.0, backoff_jitter=0.0)
    assert [backoff_delay(n, s, lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == \
        [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    jittered = Settings(backoff_base=1.0, backoff_cap=10.0, backoff_jitter=0.5)
    assert backoff_delay(3, jittered, lambda: 1.0) == 2.0


def test_short_jobs_earn_a_worker_credits_beyond_its_slots_and_long_ones_none(
        harness: Harness) -> None:
    from ckptd.daemon.engine.results import PREFETCH_MAX, extra_credits

    assert extra_credits(0.0001, 1) > 1 and extra_credits(0.0001, 1) <= PREFETCH_MAX
    assert extra_credits(0.01, 1) == 0 and extra_credits(5.0, 8) == 0
    h = harness
    ids = [h.submit() for _ in range(40)]
    w = h.hello(slots=1)
    worker = h.engine.workers["w"]
    [first] = h.dispatch()
    assert first["id"] == ids[0] and worker.extra == 0, "nothing is known of a new worker"
    index = h.engine.queues["q"]
    for _ in range(5):  # answers a fraction of a millisecond apart: very short jobs
        for job_id in list(index.claimed):
            h.now += 0.0002
            h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1})
        h.dispatch()
    assert worker.extra > 0
    assert 1 < len(index.claimed) <= 1 + worker.extra, "more than its one slot, within the grant"
    # Long jobs: the grant goes back to nothing.
    for job_id in list(h.engine.queues["q"].claimed):
        h.now += 2.0
        h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1})
    assert worker.extra == 0


def test_the_grant_follows_what_handlers_took_not_the_gaps_a_slow_disk_makes(
        harness: Harness) -> None:
    """Answers far apart (each round waits on a journaled disk's flush) with handlers that
    took 50 us: the worker is starved, not slow, so it gets credits to cover the flushes;
    the slower the flushes, the more (within PREFETCH_MAX)."""
    from ckptd.daemon.engine.results import PREFETCH_MAX, extra_credits

    assert extra_credits(0.0005, 1, refill=0.002) < extra_credits(0.0005, 1, refill=0.01)
    assert extra_credits(0.0005, 2) > extra_credits(0.0005, 1), "each slot needs its own"
    assert extra_credits(0.00001, 1, refill=1.0) == PREFETCH_MAX
    h = harness
    ids = [h.submit() for _ in range(200)]
    w = h.hello(slots=1)
    worker = h.engine.workers["w"]
    index = h.engine.queues["q"]
    h.dispatch()
    for _ in range(5):
        for job_id in list(index.claimed):
            h.now += 0.02  # 20 ms between answers: the gaps alone would say "long jobs"
            h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "took": 0.00005})
        h.dispatch()
    assert worker.extra > 2, "short handlers earn credits whatever the gaps between answers"
    for job_id in list(index.claimed):  # handlers now take 1 s: the grant goes
        h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "took": 1.0})
    assert worker.extra == 0 and len(ids) == 200
