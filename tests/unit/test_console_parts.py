"""The console's pure parts: the job filter, password hashes and CSRF tokens, the
autoscaling figures, bulk actions a slice per turn, moving a job between queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd.codec import encode_job
from ckptd.core.errors import ConfigError, TransitionError
from ckptd.core.job_filter import JobFilter, make_filter, parse_where
from ckptd.core.jobs import new_job
from ckptd.core.states import State
from ckptd.daemon.engine.bulk import SLICE
from ckptd.daemon.engine.figures import build_snapshot
from ckptd.daemon.engine.queue_moves import move_job
from ckptd.daemon.telemetry.autoscale import scale_of
from ckptd.daemon.telemetry.console_auth import Sessions, User, Users, check_secret, set_user
from ckptd.store.base import Move, PutNew
from ckptd.store.plans import PURGE_SLICE
from tests.harness import worker_message
from tests.unit.test_engine import Harness


def test_the_filter_takes_payload_fields_errors_and_times() -> None:
    job = {"id": "j", "payload": {"sku": "A-1", "qty": 3, "order": {"country": "NL"}},
           "created": "2026-11-27T10:00:00Z", "finished_at": "2026-11-27T12:00:00Z",
           "last_error": {"type": "TimeoutError", "message": "supplier 3 timed out"}}
    now = 1_796_000_000.0
    assert make_filter(["sku=A-1", "qty=3", "order.country=NL"], now=now).matches(job)
    assert not make_filter(["qty=4"], now=now).matches(job)
    assert not make_filter(["qty=3.5"], now=now).matches(job)
    assert not make_filter(["missing=1"], now=now).matches(job)
    assert make_filter(error="TimeoutError", now=now).matches(job)
    assert make_filter(error="timed OUT", now=now).matches(job)
    assert not make_filter(error="ValueError", now=now).matches(job)
    assert make_filter(since="2026-11-27T11:00:00Z", until="2026-11-27T13:00:00Z",
                       now=now).matches(job)
    assert not make_filter(since="2026-11-27T12:30:00Z", now=now).matches(job)
    assert JobFilter().empty and not JobFilter().needs_file
    late = make_filter(until="2026-11-27T11:00:00Z", now=now)
    assert not late.id_may_match("20261128T000000.000000Z-aaaa")  # created after: no read
    assert late.id_may_match("my-own-id")  # an id of its own tells nothing
    for bad in (["nofield"], ["=3"], ["a..b=1"]):
        with pytest.raises(ConfigError):
            parse_where(bad)
    with pytest.raises(ConfigError):
        make_filter(since="yesterday-ish", now=now)


def test_passwords_tokens_and_csrf(tmp_path: Path) -> None:
    path = tmp_path / "users"
    set_user(str(path), "alice", "operator", "correct horse")
    set_user(str(path), "bob", "read-only", "battery staple")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "correct horse" not in path.read_text()
    users = Users(str(path))
    assert users.check("alice", "correct horse") == User("alice", "operator")
    assert users.check("alice", "wrong") is None and users.check("eve", "x") is None
    assert users.check("bob", "battery staple") == User("bob", "read-only")
    set_user(str(path), "bob", "read-only", None)  # removed: the file is read again
    assert users.check("bob", "battery staple") is None
    assert not check_secret("x", "md5$abc") and not check_secret("x", "garbage")
    sessions = Sessions()
    token = sessions.start(User("alice", "operator"), 0.0)
    assert sessions.get(token, 1.0) == User("alice", "operator")
    assert sessions.get(token, 13 * 3600.0) is None  # expired
    assert sessions.csrf_ok("cookie-a", sessions.csrf("cookie-a"))
    assert not sessions.csrf_ok("cookie-b", sessions.csrf("cookie-a"))
    assert not sessions.csrf_ok("cookie-a", "") and not Sessions().csrf_ok(
        "cookie-a", sessions.csrf("cookie-a"))  # another daemon's key


def test_autoscaling_figures_follow_backlog_slots_and_cycle_time() -> None:
    h = Harness()
    w = h.hello(slots=4)
    ids = [h.submit() for _ in range(3)]
    h.dispatch()
    for job_id in ids:
        h.tick(2.0)
        h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "result": None})
    for _ in range(100):
        h.submit()
    snap = build_snapshot(h.engine, h.now, started_at=h.now, drops={})
    [q] = snap.queues
    scale = scale_of(q, 60.0)
    claimed = q.counts["claimed"]
    assert scale.backlog == q.counts["pending"] + claimed and scale.slots == 4
    assert scale.per_slot == pytest.approx(scale.backlog / 4)
    cycle = q.figures["cycle_mean_s"]
    assert cycle is not None and cycle > 0
    assert scale.needed == max(1, -(-int(scale.backlog * cycle * 1000) // int(60 * 4 * 1000)))
    assert scale_of(q, 1e9).needed == 1  # a long target: one worker does it
    h.engine.workers_part.hello(
        w, worker_message("hello", {"worker": "w", "queues": ["q"], "slots": 0}),
        h.now)  # it drains
    snap = build_snapshot(h.engine, h.now, started_at=h.now, drops={})
    assert snap.worker_list[0]["draining"] and snap.queues[0].figures["slots"] == 0


def failed_jobs(h: Harness, count: int) -> list[str]:
    ids = [f"f{n:05d}" for n in range(count)]
    ops = []
    for job_id in ids:
        job = new_job("q", job_id, {"n": 1}, h.now, max_attempts=1)
        job["attempts"] = 1
        ops.append(PutNew("q", job_id, encode_job(job)))
    h.store.apply(ops)
    h.store.apply([Move("q", i, State.PENDING, State.FAILED) for i in ids])
    h.engine.recover(h.now)
    return ids


def test_a_bulk_retry_runs_a_slice_per_turn_and_answers_once() -> None:
    h = Harness()
    ids = failed_jobs(h, SLICE * 3 + 10)
    answers: list[object] = []
    h.operators.retry("q", None, None, answers.append)
    turns = 0
    while h.operators.busy or h.engine.txn.ops:
        h.operators.tick(h.now)
        queued = len(h.engine.txn.ops)
        assert queued <= SLICE  # never more than a slice of moves in one turn
        h.commit()
        turns += 1
        assert turns < 100
    assert turns >= 4 and len(answers) == 1
    assert isinstance(answers[0], dict) and sorted(answers[0]["ids"]) == ids
    assert len(h.store.ids("q", State.PENDING)) == len(ids)
    assert h.engine.index.queue("q").failed == 0


def test_a_purge_refuses_an_open_state_first_and_counts_every_slice(harness: Harness
                                                                    ) -> None:
    h = harness
    ids = failed_jobs(h, PURGE_SLICE * 2 + 5)
    answers: list[object] = []
    h.operators.purge("nosuch", State.PENDING, None, h.now, answers.append)
    assert isinstance(answers[-1], TransitionError), "the state is refused before the queue"
    h.operators.purge("q", State.FAILED, None, h.now, answers.append)
    turns = 0
    while h.operators.busy or h.engine.txn.ops:
        h.operators.tick(h.now)
        h.commit()
        turns += 1
        assert turns < 100
    assert answers[-1] == {"count": len(ids)}
    assert h.store.ids("q", State.FAILED) == []


def test_moving_a_job_to_another_queue() -> None:
    h = Harness()
    job_id = h.submit(payload={"sku": "A"})
    answers: list[object] = []
    move_job(h.engine, "q", job_id, "slow", answers.append, now=h.now, by="test")
    h.commit()
    h.commit()
    assert answers == [{"queue": "slow", "id": job_id, "was": "pending"}]
    assert h.where(job_id) == [] and h.where(job_id, "slow") == [State.PENDING]
    moved = h.file(State.PENDING, job_id, "slow")
    assert moved["queue"] == "slow" and moved["moves"][0]["from"] == "q"
    assert job_id in h.engine.index.queue("slow").pending
    assert job_id not in h.engine.index.queue("q").pending
    move_job(h.engine, "slow", job_id, "slow", answers.append, now=h.now, by="test")
    assert isinstance(answers[-1], TransitionError)


def test_figures_the_dashboard_got_wrong() -> None:
    h = Harness()
    h.store.apply([PutNew("q", "hand-1", b'{"payload": {}}\n')])  # dropped in by hand
    h.engine.pending_appeared("q", "hand-1")
    snap = build_snapshot(h.engine, h.now + 5, started_at=h.now, drops={})
    assert snap.queues[0].figures["oldest_pending_age_s"] is not None  # not "-"
    worker = h.hello(slots=2)
    info = h.engine.workers["w"]
    info.extra = 70  # credits granted beyond its slots (prefetch)
    info.credits = 72
    snap = build_snapshot(h.engine, h.now, started_at=h.now, drops={})
    [row] = snap.worker_list
    assert (row["slots"], row["free"], row["credits"]) == (2, 2, 72)  # not "72/8"
    assert worker == b"w"
