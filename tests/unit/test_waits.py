"""Work that waits, on a fake clock: the pure rules (core/waits.py) and the engine's waiting
jobs, parks, signals, batches and on_failure jobs over the memory store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ckptd.core import batches, jobs, waits
from ckptd.core.config import QueueSettings
from ckptd.core.errors import InvalidName, JobNotFound
from ckptd.core.states import State
from ckptd.daemon.engine.engine import Engine
from ckptd.store.base import PutNew
from tests.harness import control_request
from tests.unit.test_engine import Harness

# -- the rules -------------------------------------------------------------------------------


def test_refs_are_checked_and_a_bare_id_is_of_the_same_queue() -> None:
    assert waits.check_refs(["a/1", "2", "a/1"], "b") == ["a/1", "b/2"]
    for bad in ([], ["a/../x"], ["a/"], "x/y/z", [f"q/{n}" for n in range(10_001)]):
        with pytest.raises(InvalidName):
            waits.check_refs(bad, "q")
    assert waits.check_rule(None) == "fail"
    with pytest.raises(InvalidName, match="fail, run, ignore"):
        waits.check_rule("skip")


def test_signal_files_and_child_ids() -> None:
    name = waits.signal_file("20261127T1.5Z-ab.c", "approved")
    assert name == "20261127T1.5Z-ab.c.approved.json"
    assert waits.parse_signal_file(name) == ("20261127T1.5Z-ab.c", "approved")
    assert waits.parse_signal_file("x.json") is None
    assert waits.parse_signal_file("x.bad name.json") is None
    with pytest.raises(InvalidName):
        waits.check_signal("with.dot")
    assert waits.child_id("P", "k1") == "P.k1"
    with pytest.raises(InvalidName, match="longer than 128"):
        waits.child_id("P" * 120, "k123456789")


@pytest.mark.parametrize(("rule", "ends", "signals", "now", "expected"), [
    ("fail", {}, set(), 0, waits.WAIT),
    ("fail", {"q/a": "done"}, set(), 0, waits.WAIT),
    ("fail", {"q/a": "done", "q/b": "done"}, set(), 0, waits.Verdict("wake", "parents")),
    ("fail", {"q/a": "failed"}, set(), 0, waits.Verdict("abandon", parent="q/a")),
    ("fail", {"q/b": "removed"}, set(), 0, waits.Verdict("abandon", parent="q/b")),
    ("run", {"q/a": "failed"}, set(), 0, waits.WAIT),
    ("run", {"q/a": "failed", "q/b": "done"}, set(), 0, waits.Verdict("wake", "parents")),
    ("ignore", {"q/a": "failed", "q/b": "failed"}, set(), 0, waits.Verdict("wake", "parents")),
])
def test_parents_decide(rule: str, ends: dict[str, str], signals: set[str], now: float,
                        expected: waits.Verdict) -> None:
    wait = waits.Wait(after=("q/a", "q/b"), rule=rule, ended=dict(ends))
    assert waits.decide(wait, signals, now) == expected


def test_a_park_wakes_at_the_first_of_its_events() -> None:
    wait = waits.Wait(rule="run", signals=("go",), until=100.0, timeout=200.0,
                      children=("q/c",))
    assert waits.decide(wait, set(), 50) == waits.WAIT
    assert waits.decide(wait, {"other"}, 50) == waits.WAIT
    assert waits.decide(wait, {"go"}, 50) == waits.Verdict("wake", "signal")
    assert waits.decide(wait, set(), 100) == waits.Verdict("wake", "until")
    wait.ended["q/c"] = "failed"
    assert waits.decide(wait, set(), 50) == waits.Verdict("wake", "children")
    only_timeout = waits.Wait(signals=("go",), timeout=200.0)
    assert waits.decide(only_timeout, set(), 200) == waits.Verdict("wake", "timeout")
    assert waits.next_time(wait) == 100.0


def test_the_edits_of_a_waiting_file() -> None:
    job: dict[str, Any] = {"id": "x", "queue": "q", "payload": 1, "created": "t", "attempts": 1,
                           "max_attempts": 3, "rev": 4, "after": ["q/a", "q/b"],
                           "on_parent_failure": "ignore"}
    wait = waits.wait_of(job)
    assert wait.after == ("q/a", "q/b") and wait.rule == "ignore"
    wait.ended = {"q/a": "failed", "q/b": "done"}
    woke = waits.woken(dict(job, wait={"since": "t"}), wait, "parents", 10.0, {"go": 1})
    assert "wait" not in woke and woke["rev"] == 5
    assert woke["woken"]["parents"] == {"q/b": "done"}, "ignore leaves the failed one out"
    assert woke["woken"]["signals"] == {"go": 1} and not waits.holds(woke)
    assert waits.holds(job), "a file with parents that was never woken waits first"
    parked = waits.parked(dict(job), attempt=2, claimed_at=5.0, now=9.0, worker="w",
                          wait=waits.Wait(signals=("go",), timeout=99.0))
    assert parked["attempts"] == 2 and parked["max_attempts"] == 4, "a park costs no attempt"
    assert parked["wait"]["signals"] == ["go"] and parked["history"][-1]["outcome"] == "parked"
    gone = waits.abandoned(dict(job), "q/a", "failed", 9.0)
    assert gone["last_error"]["type"] == "ParentFailed" and "q/a" in gone["last_error"]["message"]


def test_a_batch_manifest_says_which_callbacks_are_due() -> None:
    manifest = batches.Manifest("B", "home", 0, "t", sealed=True,
                                callbacks={"then": "r", "on_failure": "f", "on_complete": "c"})
    assert manifest.due(3, 0) == ["then", "on_complete"]
    assert manifest.due(3, 1) == ["on_failure", "on_complete"]
    manifest.fired["on_complete"] = "t"
    again = batches.Manifest.decode(manifest.encode())
    assert again.due(3, 1) == ["on_failure"] and again.sealed is True
    assert batches.member_of("B.000001.k0", {"B"}) == "B"
    assert batches.member_of("B.then", {"B"}) is None, "a callback is not a job of it"
    assert batches.member_of("Bx.1", {"B"}) is None


# -- the engine ------------------------------------------------------------------------------


def turn(h: Harness, seconds: float = 0.0) -> None:
    """One turn of the daemon: timers, then everything the callbacks queued."""
    h.now += seconds
    h.engine.answers.expire_leases(h.now)
    h.engine.index.promote_delayed(h.now)
    h.engine.tick(h.now)
    for _ in range(8):
        if not h.engine.txn.ops:
            break
        h.commit()


def run(h: Harness, w: bytes, queue: str, outcome: str = "done", **extra: Any) -> list[str]:
    """Claim what is ready for ``w`` and answer each with ``outcome``; return the ids."""
    ids = []
    for job in h.dispatch():
        body = {"queue": job["queue"], "id": job["id"], "attempt": job["attempt"], **extra}
        if outcome == "failed":
            body.update(error="boom", retry=False)
        h.answer(w, outcome, body)
        ids.append(job["id"])
        turn(h)
    assert all(j.startswith("") for j in ids) and queue
    return ids


def test_a_diamond_runs_its_join_once_after_both_parents() -> None:
    h = Harness()
    a = h.submit("q")
    b = h.submit("q", after=[f"q/{a}"])
    c = h.submit("q", after=[a])
    d = h.submit("q", after=[f"q/{b}", f"q/{c}"])
    assert h.where(b) == [State.WAITING] and h.where(d) == [State.WAITING]
    assert h.engine.index.queue("q").counts()["waiting"] == 3
    w = h.hello(slots=4)
    assert run(h, w, "q") == [a]
    assert sorted(run(h, w, "q")) == sorted([b, c])
    assert h.where(d) == [State.PENDING]
    [job] = h.dispatch()
    assert job["id"] == d and job["woken"]["parents"] == {f"q/{b}": "done", f"q/{c}": "done"}


def test_an_end_is_written_into_a_job_that_still_waits() -> None:
    h = Harness()
    a, b = h.submit("q"), h.submit("q")
    c = h.submit("q", after=[a, b])
    w = h.hello()
    run(h, w, "q")
    turn(h)
    assert h.file(State.WAITING, c)["wait"]["ended"] == {f"q/{a}": "done"}


def test_a_parent_that_does_not_exist_is_refused_at_submit() -> None:
    h = Harness()
    with pytest.raises(JobNotFound, match="parent q/nope does not exist"):
        h.submit("q", after=["q/nope"])


def test_a_parent_already_done_lets_the_child_run_at_once() -> None:
    h = Harness()
    a = h.submit("q")
    w = h.hello()
    run(h, w, "q")
    b = h.submit("r", after=[f"q/{a}"])
    turn(h)
    assert h.where(b, "r") == [State.PENDING]


@pytest.mark.parametrize("rule", ["fail", "run", "ignore"])
def test_failure_rules(rule: str) -> None:
    h = Harness()
    a, ok = h.submit("q"), h.submit("q")
    child = h.submit("r", after=[f"q/{a}", f"q/{ok}"], on_parent_failure=rule)
    grandchild = h.submit("r", after=[f"r/{child}"])
    w = h.hello(slots=2, queues=("q",))
    job_a, job_ok = h.dispatch()
    h.answer(w, "failed", {"queue": "q", "id": a, "attempt": 1, "error": "x", "retry": False})
    turn(h)
    if rule == "fail":
        failed = h.file(State.FAILED, child, "r")
        assert failed["last_error"]["type"] == "ParentFailed", "failed at once, unrun"
        turn(h)
        assert h.where(grandchild, "r") == [State.FAILED], "and what waited on it too"
        return
    assert h.where(child, "r") == [State.WAITING], "waits for the other parent"
    h.answer(w, "done", {"queue": "q", "id": ok, "attempt": 1})
    turn(h)
    woken = h.file(State.PENDING, child, "r")["woken"]
    expected = {f"q/{ok}": "done"} if rule == "ignore" else {f"q/{a}": "failed",
                                                              f"q/{ok}": "done"}
    assert woken["parents"] == expected


def test_cancelling_a_waiting_job_ends_it_for_its_dependents() -> None:
    h = Harness()
    a = h.submit("q")
    b = h.submit("q", after=[a])
    c = h.submit("q", after=[b], on_parent_failure="run")
    h.operators.cancel("q", b, h.now, h.replies.append)
    h.commit()
    assert h.replies[-1] == {"was": "waiting"} and h.where(b) == []
    turn(h)
    assert h.where(c) == [State.PENDING]
    assert h.file(State.PENDING, c)["woken"]["parents"] == {f"q/{b}": "removed"}


def park(h: Harness, w: bytes, **wait: Any) -> str:
    [job] = h.dispatch()
    h.answer(w, "checkpoint", {"queue": "q", "id": job["id"], "attempt": job["attempt"],
                               "seq": 1, "state": {"step": 3}})
    sent = h.answer(w, "park", {"queue": "q", "id": job["id"], "attempt": job["attempt"],
                                **wait})
    assert [kind for _, kind, _ in sent] == [b"ack"]
    return str(job["id"])


def test_a_park_frees_the_slot_and_a_signal_wakes_it_with_its_data() -> None:
    h = Harness()
    job_id = h.submit("q")
    w = h.hello(slots=1)
    park(h, w, signals=["approved"])
    assert h.where(job_id) == [State.WAITING]
    assert h.engine.index.queue("q").claimed == {} and h.engine.workers["w"].credits == 1
    other = h.submit("q")
    assert [j["id"] for j in h.dispatch()] == [other], "the freed slot takes other work"
    signal = control_request("signal", {"queue": "q", "id": job_id, "name": "approved",
                                        "data": {"by": "ana"}})
    h.engine.graph.request(signal, h.now, h.replies.append)
    h.commit()
    turn(h)
    assert h.replies[-1]["state"] == "waiting"
    assert h.where(job_id) == [State.PENDING]
    assert h.store.signals("q") == [], "the signal file is taken with the wake"
    h.answer(w, "done", {"queue": "q", "id": other, "attempt": 1})
    [job] = h.dispatch()
    assert job["attempt"] == 2 and job["state"] == {"step": 3}, "from its checkpoint"
    assert job["woken"]["signals"] == {"approved": {"by": "ana"}}
    assert h.file(State.CLAIMED, job_id)["max_attempts"] == 4, "the park cost no attempt"


def test_a_signal_sent_before_the_park_is_kept_for_it() -> None:
    h = Harness()
    job_id = h.submit("q")
    w = h.hello()
    signal = control_request("signal", {"queue": "q", "id": job_id, "name": "go"})
    h.engine.graph.request(signal, h.now, h.replies.append)
    h.commit()
    park(h, w, signals=["go"])
    turn(h)
    assert h.where(job_id) == [State.PENDING]


def test_a_timeout_wakes_a_park_with_its_reason() -> None:
    h = Harness()
    job_id = h.submit("q")
    w = h.hello()
    park(h, w, signals=["go"], timeout=30.0)
    turn(h, 29.0)
    assert h.where(job_id) == [State.WAITING]
    assert h.engine.index.next_deadline() == pytest.approx(h.now + 1.0, abs=0.01)
    turn(h, 1.5)
    assert h.file(State.PENDING, job_id)["woken"]["reason"] == "timeout"


def test_a_park_for_children_wakes_when_they_have_ended() -> None:
    h = Harness()
    parent = h.submit("q")
    w = h.hello(queues=("q", "kids"))
    [job] = h.dispatch()
    kids = [h.submit("kids", id=f"{parent}.c{n}") for n in range(2)]
    h.answer(w, "park", {"queue": "q", "id": parent, "attempt": 1,
                         "children": [f"kids/{k}" for k in kids], "children_asked": True})
    turn(h)
    for _ in kids:
        run(h, w, "kids")
    turn(h)
    woken = h.file(State.PENDING, parent)["woken"]
    assert woken["reason"] == "children" and set(woken["children"]) == {f"kids/{k}"
                                                                         for k in kids}


def test_waits_survive_a_restart_rebuilt_from_the_files() -> None:
    h = Harness()
    a, b = h.submit("q"), h.submit("q")
    c = h.submit("q", after=[a, b])
    p = h.submit("p")
    w = h.hello(queues=("q", "p"))
    run(h, w, "q")  # a ends (b is claimed next, and left running)
    turn(h)
    [job_p] = h.dispatch()
    h.answer(w, "park", {"queue": "p", "id": p, "attempt": job_p["attempt"], "signals": ["go"]})
    # kill -9: a new engine on the same store rebuilds its index from the files
    engine = Engine(h.store, h.settings, rand=lambda: 0.5)
    engine.recover(h.now)
    h.engine = engine
    assert engine.index.queue("q").counts()["waiting"] == 1
    assert engine.index.queue("p").waiting == {p}
    signal = control_request("signal", {"queue": "p", "id": p, "name": "go"})
    h.engine.graph.request(signal, h.now, h.replies.append)
    turn(h)
    assert h.where(p, "p") == [State.PENDING]
    w = h.hello(queues=("q",))
    turn(h, 60)  # the claimed b comes back when its lease runs out
    run(h, w, "q")
    turn(h)
    assert h.where(c) == [State.PENDING]


def test_a_parent_a_crash_left_in_claimed_and_done_still_wakes_its_dependents() -> None:
    """kill -9 between a finished job's copy into done/ and the delete of its claimed/ copy:
    the restart keeps done and, since no callback said so, tells the jobs waiting on it."""
    h = Harness()
    c = h.submit("q")
    d = h.submit("q", after=[c])
    h.hello()
    [job] = h.dispatch()
    assert job["id"] == c and h.where(c) == [State.CLAIMED]
    ended = {**h.file(State.CLAIMED, c), "finished_at": "2026-12-07T00:00:00Z"}
    h.store.fs.pipe_file(f"{h.store.prefix}/q/done/{c}.json", json.dumps(ended).encode())
    engine = Engine(h.store, h.settings, rand=lambda: 0.5)
    engine.recover(h.now)
    h.engine = engine
    turn(h)
    assert h.where(c) == [State.DONE]
    assert h.where(d) == [State.PENDING], "the join still waits on a parent that is done"
    assert h.file(State.PENDING, d)["woken"]["parents"] == {f"q/{c}": "done"}


def test_a_file_with_parents_put_into_pending_by_hand_waits_first() -> None:
    h = Harness()
    a = h.submit("q")
    job = jobs.new_job("q", "hand", {"x": 1}, h.now, max_attempts=3)
    job["after"] = [f"q/{a}"]  # as a person would write it: no wait record, never woken
    h.store.apply([PutNew("q", "hand", json.dumps(job).encode())])
    h.engine.pending_appeared("q", "hand")
    w = h.hello(slots=2)
    assert run(h, w, "q") == [a], "the hand-written job was held back, not run"
    assert h.engine.graph.waits.counters["held"] == 1
    turn(h)
    assert h.file(State.PENDING, "hand")["woken"]["reason"] == "parents"


def test_a_batch_calls_back_once_after_its_jobs_and_their_children() -> None:
    h = Harness()
    opened = control_request("batch_open", {"queue": "home", "batch": "B1",
                                            "callbacks": {"then": "cb", "on_failure": "bad"}})
    h.engine.graph.request(opened, h.now, h.replies.append)
    h.commit()
    assert h.replies[-1]["created"] is True
    ids = [h.submit("q", id=f"B1.{n:06d}", batch="B1") for n in range(3)]
    w = h.hello(queues=("q",))
    run(h, w, "q")  # one job ends before the seal: no callback yet
    sealed = control_request("batch_seal", {"queue": "home", "batch": "B1"})
    h.engine.graph.request(sealed, h.now, h.replies.append)
    h.commit()
    turn(h)
    [job] = h.dispatch()
    child = h.submit("q", id=f"{job['id']}.k0", batch="B1")  # spawned while it runs
    h.answer(w, "done", {"queue": "q", "id": job["id"], "attempt": 1})
    turn(h)
    rest = {j["id"] for j in h.dispatch()} | {j["id"] for j in h.dispatch()}
    assert rest == {ids[2], child}
    h.answer(w, "done", {"queue": "q", "id": ids[2], "attempt": 1})
    turn(h)
    assert h.store.ids("cb", State.PENDING) == [], "the spawned child is still open"
    h.answer(w, "done", {"queue": "q", "id": child, "attempt": 1})
    turn(h)
    [made] = h.store.ids("cb", State.PENDING)
    payload = h.file(State.PENDING, made, "cb")["payload"]
    assert made == "B1.then" and payload["total"] == 4 and payload["done"] == 4
    assert {r for r, _ in payload["outcomes"]} == {f"q/{i}" for i in [*ids, child]}
    assert h.store.ids("bad", State.PENDING) == []
    engine = Engine(h.store, h.settings, rand=lambda: 0.5)  # a restart makes nothing again
    engine.recover(h.now)
    h.engine = engine
    turn(h)
    assert h.store.ids("cb", State.PENDING) == ["B1.then"]
    manifest = batches.Manifest.decode(h.store.read_manifest("home", "B1"))
    assert set(manifest.fired) == {"then"}


def test_a_batch_of_100000_puts_its_outcomes_beside_the_callback() -> None:
    h = Harness(blob_threshold=64 * 1024)
    opened = control_request("batch_open", {"queue": "home", "batch": "Big",
                                            "callbacks": {"on_complete": "cb"}})
    h.engine.graph.request(opened, h.now, h.replies.append)
    h.commit()
    tracker = h.engine.flows.tracker
    for n in range(100_000):
        tracker.joined("q", f"Big.{n:06d}")
    tracker.seal("home", "Big", h.now, h.replies.append)
    h.commit()
    for n in range(100_000):
        tracker.ended("q", f"Big.{n:06d}", "done", h.now)
    turn(h)
    job = h.file(State.PENDING, "Big.on_complete", "cb")
    assert job["payload_ref"] == "blobs/Big.on_complete.payload" and job["payload"] is None
    outcomes = json.loads(h.store.read_blob("cb", "Big.on_complete", "payload"))["outcomes"]
    assert len(outcomes) == 100_000


def test_on_failure_makes_one_job_per_failure_with_the_checkpoint() -> None:
    h = Harness(queues={"q": QueueSettings(on_failure="undo")})
    job_id = h.submit("q", max_attempts=1)
    w = h.hello()
    [job] = h.dispatch()
    h.answer(w, "checkpoint", {"queue": "q", "id": job_id, "attempt": 1, "seq": 1,
                               "state": {"reserved": 2}})
    h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": 1, "error": "no stock",
                           "retry": False})
    turn(h)
    [undo] = h.store.ids("undo", State.PENDING)
    payload = h.file(State.PENDING, undo, "undo")["payload"]
    assert undo == f"{job_id}.failure-1" and payload["checkpoint"] == {"reserved": 2}
    assert payload["error"]["message"] == "no stock" and h.where(job_id) == [State.FAILED]
    # the same failure found again (a restart before the move) makes nothing new
    made = h.engine.flows.failing("q", h.file(State.FAILED, job_id), h.now)
    assert made is not None and h.store.apply([made]) != [None]
