"""The worker's bookkeeping, without processes: time limits and cancels (deadlines, what is
due), what the daemon has not confirmed yet, how answers read, which pool a handler gets."""

from __future__ import annotations

from typing import Any

import pytest

from ckptd import Cancelled, TimeLimit
from ckptd.core.errors import CkptdError, ProtocolError
from ckptd.wire import protocol
from ckptd.wire.messages import JobMessage, Saved
from ckptd.worker import reports
from ckptd.worker.job import Job, StopFlags
from ckptd.worker.limits import HARD, SOFT, Limits
from ckptd.worker.pools.base import choose_pool
from ckptd.worker.running import Attempt, Running
from ckptd.worker.unconfirmed import Unconfirmed


def attempt(job_id: str = "a", limit: float | None = None, number: int = 1) -> Attempt:
    return Attempt(JobMessage(queue="q", id=job_id, attempt=number), time_limit=limit)


def test_a_time_limit_asks_at_the_limit_and_stops_by_force_a_grace_later() -> None:
    limits = Limits(grace=2.0)
    a = attempt(limit=10.0)
    assert limits.due([a], 5.0) == [], "not started yet"
    limits.started(a, 100.0)
    assert limits.next_deadline([a]) == 110.0
    assert limits.due([a], 109.9) == []
    assert limits.due([a], 110.0) == [(a, SOFT)]
    assert isinstance(a.flags.stop, TimeLimit) and "10s" in a.flags.stop.reason
    assert limits.due([a], 111.0) == [], "asked once"
    assert limits.next_deadline([a]) == 112.0
    assert limits.due([a], 112.0) == [(a, HARD)]
    assert limits.due([a], 200.0) == [] and limits.next_deadline([a]) is None


def test_a_cancel_asks_now_and_stops_by_force_a_grace_later() -> None:
    limits = Limits(grace=1.0)
    a = attempt(limit=60.0)
    limits.started(a, 0.0)
    limits.cancelled(a, 5.0, "ann")
    assert a.flags.cancelled and isinstance(a.flags.stop, Cancelled)
    assert "by ann" in a.flags.stop.reason
    assert limits.due([a], 5.0) == [(a, SOFT)]
    assert limits.due([a], 6.0) == [(a, HARD)]


def test_a_cancel_wins_over_a_time_limit_and_not_the_other_way() -> None:
    flags = StopFlags()
    flags.ask(TimeLimit("late"))
    flags.ask(Cancelled("stop"))
    flags.ask(TimeLimit("later"))
    assert isinstance(flags.stop, Cancelled) and flags.cancelled
    with pytest.raises(Cancelled):
        flags.check()
    flags.check()  # once only


def test_the_job_s_own_limit_wins_over_the_worker_s() -> None:
    limits = Limits(grace=1.0, default_limit=30.0)
    assert limits.limit_of(JobMessage(queue="q", id="a", attempt=1, time_limit=2)) == 2.0
    assert limits.limit_of(JobMessage(queue="q", id="a", attempt=1)) == 30.0
    assert Limits(grace=1.0).limit_of(JobMessage(queue="q", id="a", attempt=1)) is None
    with pytest.raises(ProtocolError):  # a limit that is not a number never comes this far
        protocol.DAEMON_MESSAGES.tolerant(b"job", {"queue": "q", "id": "a", "attempt": 1,
                                                   "time_limit": True})


def test_checkpoint_and_progress_raise_the_stop_asked_of_the_attempt() -> None:
    job = Job("a", "q", 1, None)
    job.checkpoint(1)  # no worker: kept locally
    job._flags.ask(Cancelled("cancelled by ann"))
    assert job.cancelled
    with pytest.raises(Cancelled, match="ann"):
        job.progress(1)
    job.checkpoint(2)  # raised once: a handler that caught it may save its state
    assert job.state == 2


def test_an_attempt_ends_once() -> None:
    running = Running()
    a = attempt()
    assert running.add(a) and not running.add(attempt())  # the same attempt again
    assert running.refs() == [["q", "a", 1]]
    assert running.end(a) and not running.end(a)
    assert running.refs() == []


def test_unconfirmed_answers_are_kept_until_confirmed_and_sent_again() -> None:
    kept = Unconfirmed()
    seen: list[Saved] = []
    kept.add_checkpoint({"queue": "q", "id": "a", "attempt": 1, "seq": 1, "state": 1},
                        seen.append, now=0.0)
    kept.add_answer(b"done", {"queue": "q", "id": "b", "attempt": 2, "result": 1}, now=1.0)
    assert [k for k, _ in kept.everything(now=2.0)] == [b"checkpoint", b"done"]
    assert kept.overdue(now=10.0, after=15.0) == []
    assert len(kept.overdue(now=17.0, after=15.0)) == 2
    assert kept.answer_refs() == [["q", "b", 2]]
    kept.confirm_checkpoint(Saved(queue="q", id="a", seq=1, ok=True))
    assert seen == [Saved(queue="q", id="a", seq=1, ok=True)]
    assert kept.confirm_answer("q", "b", 2) and not kept.confirm_answer("q", "b", 2)
    assert kept.everything(now=20.0) == []


def test_an_answer_forgets_the_checkpoints_of_its_attempt() -> None:
    kept = Unconfirmed()
    kept.add_checkpoint({"queue": "q", "id": "a", "attempt": 1, "seq": 3, "state": 1},
                        lambda reply: None, now=0.0)
    kept.add_answer(b"failed", {"queue": "q", "id": "a", "attempt": 1, "error": "x"}, now=0.0)
    assert [k for k, _ in kept.everything(now=1.0)] == [b"failed"]


def test_answers_say_how_the_attempt_ended() -> None:
    body = JobMessage(queue="q", id="a", attempt=1)
    assert reports.done(body, {"x": 1}) == (b"done", {"queue": "q", "id": "a", "attempt": 1,
                                                       "result": {"x": 1}})
    kind, failed = reports.done(body, {1, 2})
    assert kind == b"failed" and failed["type"] == "Fail" and not failed["retry"]
    _, limit = reports.failed(body, TimeLimit("over 1s"))
    assert limit["type"] == "TimeLimit" and limit["retry"] and limit["error"] == "over 1s"
    _, cancel = reports.failed(body, Cancelled("by ann"))
    assert cancel["type"] == "Cancelled" and not cancel["retry"]
    _, error = reports.failed(body, KeyError("items"))
    assert error["error"] == "KeyError: 'items'", "the type is in the message"
    _, back = reports.given_back(body, "stopping")
    assert back["given_back"] and back["delay"] == 0.0


async def _async_handler(job: Any) -> None:
    return None


def _plain_handler(job: Any) -> None:
    return None


def test_the_pool_follows_the_handler_unless_told() -> None:
    assert choose_pool(None, _plain_handler) == "thread"
    assert choose_pool(None, _async_handler) == "async"
    assert choose_pool("process", _async_handler) == "process"
    with pytest.raises(CkptdError, match="async def"):
        choose_pool("async", _plain_handler)
    with pytest.raises(CkptdError, match="--pool async"):
        choose_pool("thread", _async_handler)


def test_explain_says_how_long_an_attempt_may_run_and_who_cancelled_a_job() -> None:
    from ckptd.core.explain import explain

    job = {"id": "a", "queue": "q", "created": "2026-11-27T19:00:00.000000Z", "attempts": 0,
           "max_attempts": 3, "payload": None}
    own = explain({"state": "claimed", "job": {**job, "time_limit": 120}, "lease": {}}, 0.0)
    assert any("may run for 2m" in line and "its own time limit" in line for line in own), own
    queue = explain({"state": "claimed", "job": job, "lease": {"time_limit_s": 30.0}}, 0.0)
    assert any("its queue's time limit" in line for line in queue), queue
    cancelled = {**job, "attempts": 1, "finished_at": "2026-11-27T19:01:00.000000Z",
                 "last_error": {"type": "Cancelled", "by": "ann@vm (client)", "attempt": 1,
                                "at": "2026-11-27T19:01:00.000000Z", "message": "cancelled"}}
    said = " ".join(explain({"state": "failed", "job": cancelled}, 0.0))
    assert "cancelled by ann@vm (client) at 2026-11-27T19:01:00.000000Z" in said, said
