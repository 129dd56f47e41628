"""The daemon's side of answers delivered at least once, with a fake clock: every answer is
confirmed (ack) once its move is durable, a stale one at once, one whose move is in flight
not at all; a checkpoint already saved is confirmed without being written again; a stopping
worker's attempt given back goes to pending at once without costing an attempt; a cancel is
sent to the worker that runs the job; the job message carries its time limit."""

from __future__ import annotations

from typing import Any

from ckptd.core.config import QueueSettings
from ckptd.core.states import State
from ckptd.store.base import PutCheckpoint
from tests.harness import Harness, MakeHarness, handler, worker_message


def _sent(messages: list[tuple[bytes, bytes, dict[str, Any]]], kind: bytes
          ) -> list[dict[str, Any]]:
    return [body for _, k, body in messages if k == kind]


def _answer(h: Harness, identity: bytes, kind: str, body: dict[str, Any]
            ) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    worker = h.engine.workers_part.worker_for(identity, h.now)
    handler(h.engine, kind)(worker, worker_message(kind, body), h.now, identity)
    return h.commit()


def test_done_is_confirmed_after_its_move_and_again_when_it_comes_twice(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    answer = {"queue": "q", "id": job_id, "attempt": 1, "result": 1}
    sent = _answer(h, w, "done", answer)
    assert h.where(job_id) == [State.DONE]
    assert _sent(sent, b"ack") == [{"queue": "q", "id": job_id, "attempt": 1, "stale": False}]
    again = _answer(h, w, "done", answer)  # sent again after a reconnect
    assert _sent(again, b"ack") == [{"queue": "q", "id": job_id, "attempt": 1, "stale": True}]
    assert h.engine.counters["stale_answers"] == 1, "counted as stale, as before"


def test_an_answer_whose_move_is_in_flight_is_not_confirmed_twice(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    answer = worker_message("done", {"queue": "q", "id": job_id, "attempt": 1, "result": 1})
    worker = h.engine.workers_part.worker_for(w, h.now)
    h.engine.answers.done(worker, answer, h.now, w)  # accepted: its move waits for the commit
    h.engine.answers.done(worker, answer, h.now, w)  # the same answer again, before the commit
    sent = h.commit()
    assert len(_sent(sent, b"ack")) == 1 and not _sent(sent, b"ack")[0]["stale"]


def test_failed_is_confirmed_and_an_unknown_sender_gets_its_confirmation(
        make_harness: MakeHarness) -> None:
    h = make_harness(max_attempts=3)
    job_id = h.submit()
    h.hello()
    h.dispatch()
    stranger = b"after-a-restart"  # no hello yet: answers still count, and are confirmed
    sent = _answer(h, stranger, "failed", {"queue": "q", "id": job_id, "attempt": 1,
                                           "error": "boom", "retry": True})
    assert h.where(job_id) == [State.PENDING]
    assert [(i, k) for i, k, _ in sent if k == b"ack"] == [(stranger, b"ack")]


def test_a_checkpoint_already_saved_is_confirmed_without_writing_it_again(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    body = worker_message("checkpoint", {"queue": "q", "id": job_id, "attempt": 1, "seq": 1,
                                         "state": {"n": 1}})
    worker = h.engine.workers_part.worker_for(w, h.now)
    h.engine.answers.checkpoint(worker, body, h.now)
    assert any(isinstance(op, PutCheckpoint) for op in h.engine.txn.ops)
    assert _sent(h.commit(), b"saved")[0]["ok"]
    h.engine.answers.checkpoint(worker, body, h.now)  # sent again after a reconnect
    assert not h.engine.txn.ops, "nothing is written again"
    assert _sent(h.commit(), b"saved") == [{"queue": "q", "id": job_id, "seq": 1, "ok": True,
                                             "error": None}]


def test_a_given_back_attempt_is_pending_at_once_without_costing_an_attempt(
        make_harness: MakeHarness) -> None:
    h = make_harness(max_attempts=1)
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    sent = _answer(h, w, "failed", {"queue": "q", "id": job_id, "attempt": 1,
                                    "error": "the worker stopped", "type": "GivenBack",
                                    "retry": True, "delay": 0.0, "given_back": True})
    assert h.where(job_id) == [State.PENDING], "back although it was its only attempt"
    pending = h.file(State.PENDING, job_id)
    assert pending["attempts"] == 1 and pending["max_attempts"] == 2
    assert pending["history"][-1]["outcome"] == "given back"
    assert _sent(sent, b"ack")
    h.tick(0.001)
    [job] = h.dispatch()
    assert job["attempt"] == 2, "dispatched again at once, as the next attempt"


def test_cancelling_a_claimed_job_tells_its_worker(harness: Harness) -> None:
    h = harness
    job_id = h.submit()
    w = h.hello()
    h.dispatch()
    h.operators.cancel("q", job_id, h.now, h.replies.append, by="ann@host (client)")
    sent = h.commit()
    assert h.where(job_id) == [State.FAILED]
    assert [(i, k, b) for i, k, b in sent if k == b"cancel"] == [
        (w, b"cancel", {"queue": "q", "id": job_id, "attempt": 1, "by": "ann@host (client)"})]
    error = h.file(State.FAILED, job_id)["last_error"]
    assert error["type"] == "Cancelled" and error["by"] == "ann@host (client)"


def test_the_job_message_carries_the_job_s_or_the_queue_s_time_limit(
        make_harness: MakeHarness) -> None:
    h = make_harness(time_limit=30.0, queues={"slow": QueueSettings(time_limit=600.0)})
    own = h.submit(time_limit=2.5)
    plain = h.submit()
    slow = h.submit("slow")
    h.hello(slots=3, queues=("q", "slow"))
    limits = {job["id"]: job.get("time_limit") for job in h.dispatch()}
    assert limits == {own: 2.5, plain: 30.0, slow: 600.0}
