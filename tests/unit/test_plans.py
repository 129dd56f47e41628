"""The planners of the operators' actions (:mod:`ckptd.store.plans`,
:mod:`ckptd.store.control_plans`): pure functions, so
each rule is checked here with no store and no daemon. The store commands and the daemon
both carry out these plans; tests/store/test_admin.py and the engine's tests run them."""

from __future__ import annotations

import json

import pytest

from ckptd.core.config import QueueSettings, Settings
from ckptd.core.errors import (
    ConfigError,
    InvalidInput,
    InvalidName,
    JobNotFound,
    TransitionError,
)
from ckptd.core.jobs import Job, new_job
from ckptd.core.states import State
from ckptd.store.base import Delete, Move, PutBlob, PutCheckpoint, PutNew
from ckptd.store.control_plans import (
    ControlChange,
    pause_reason,
    plan_limit,
    plan_pause,
    plan_resume,
)
from ckptd.store.plans import (
    PURGE_SLICE,
    Attachments,
    Attempt,
    cannot_move,
    plan_cancel,
    plan_move,
    plan_purge,
    plan_retry,
    purge_slices,
)

NOW = 1_700_000_000.0
SETTINGS = Settings(max_attempts=3, queues={"slow": QueueSettings(max_attempts=7)})


def _job(queue: str = "q", job_id: str = "j1", **fields: object) -> Job:
    job = new_job(queue, job_id, {"n": 1}, NOW - 100, max_attempts=3)
    job.update(fields)
    return job


def _file(data: bytes | None) -> Job:
    assert data is not None
    found: Job = json.loads(data)
    return found


# -- retry -----------------------------------------------------------------------------------

def test_a_retry_moves_the_failed_file_to_pending_with_fresh_attempts() -> None:
    job = _job(attempts=3, rev=4, priority=5, key="acme", not_before="2020-01-01T00:00:00Z")
    move = plan_retry(SETTINGS, "q", "j1", job)
    assert (move.src, move.dst) == (State.FAILED, State.PENDING)
    assert (move.priority, move.key) == (5, "acme"), "the pending file's name carries them"
    edited = _file(move.data)
    assert edited["attempts"] == 3, "attempts is the fencing token: never reset"
    assert edited["max_attempts"] == 3 + 3
    assert edited["rev"] == 5 and "not_before" not in edited


def test_a_retry_with_attempts_gives_that_many_and_the_queue_default_otherwise() -> None:
    job = _job("slow", attempts=2)
    assert _file(plan_retry(SETTINGS, "slow", "j1", dict(job)).data)["max_attempts"] == 2 + 7
    assert _file(plan_retry(SETTINGS, "slow", "j1", dict(job), attempts=1).data)[
        "max_attempts"] == 3


@pytest.mark.parametrize(("found", "error", "words"), [
    (None, JobNotFound, "no such job"),
    ("pending", TransitionError, "still to run"),
    ("done", TransitionError, "only failed jobs"),
])
def test_a_retry_of_a_job_that_is_not_failed_is_refused(found: str | None,
                                                        error: type[Exception],
                                                        words: str) -> None:
    with pytest.raises(error, match=words):
        plan_retry(SETTINGS, "q", "j1", None, found=found)


# -- cancel ----------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [State.PENDING, State.WAITING])
def test_a_cancel_removes_a_pending_or_waiting_file_by_its_name(state: State) -> None:
    plan = plan_cancel("q", "j1", state, now=NOW, by="ann", priority=2, key="k")
    assert plan.was is state and plan.edit is None
    assert plan.remove == Delete("q", state, "j1", priority=2, key="k")


def test_a_cancel_of_a_claimed_job_fails_its_attempt_for_good() -> None:
    plan = plan_cancel("q", "j1", State.CLAIMED, now=NOW, by="ann@vm1 (--root)",
                       attempt=Attempt(2, NOW - 5, "w1"))
    assert plan.was is State.CLAIMED and plan.remove is None
    move = plan.ended(_job(attempts=1, rev=3))
    assert (move.src, move.dst) == (State.CLAIMED, State.FAILED)
    edited = _file(move.data)
    assert edited["attempts"] == 2 and edited["finished_at"]
    assert edited["last_error"]["type"] == "Cancelled"
    assert edited["last_error"]["by"] == "ann@vm1 (--root)"
    assert edited["last_error"]["worker"] == "w1"
    assert edited["history"][-1]["outcome"] == "cancelled"
    assert edited["rev"] == 4


@pytest.mark.parametrize(("state", "error", "words"), [
    (None, JobNotFound, "no job 'j1' in queue 'q'"),
    (State.DONE, TransitionError, "already done; use 'ckptd purge q done'"),
    (State.FAILED, TransitionError, "already failed"),
    (State.CLAIMED, TransitionError, "already claimed"),  # its attempt is ending already
])
def test_a_cancel_of_an_ended_or_missing_job_is_refused(state: State | None,
                                                        error: type[Exception],
                                                        words: str) -> None:
    with pytest.raises(error, match=words):
        plan_cancel("q", "j1", state, now=NOW, by="ann")


# -- purge -----------------------------------------------------------------------------------

def test_a_purge_removes_every_job_found_without_older_than() -> None:
    found: list[tuple[str, float | None]] = [("a", None), ("b", None)]
    assert plan_purge("q", State.DONE, found, older_than=None, now=NOW) == [
        Delete("q", State.DONE, "a"), Delete("q", State.DONE, "b")]


def test_a_purge_with_older_than_keeps_the_younger_and_the_unseen() -> None:
    found = [("old", NOW - 100), ("edge", NOW - 60), ("young", NOW - 59), ("gone", None)]
    doomed = plan_purge("q", State.FAILED, found, older_than=60, now=NOW)
    assert [op.job_id for op in doomed] == ["old", "edge"]


@pytest.mark.parametrize("state", [State.PENDING, State.CLAIMED, State.WAITING])
def test_a_purge_of_an_open_state_is_refused_before_anything(state: State) -> None:
    with pytest.raises(TransitionError, match="only done or failed jobs can be purged"):
        plan_purge("q", state, [], older_than=None, now=NOW)


def test_a_purge_goes_a_slice_at_a_time() -> None:
    ids = [f"j{i}" for i in range(2 * PURGE_SLICE + 1)]
    slices = list(purge_slices(ids))
    assert [len(s) for s in slices] == [PURGE_SLICE, PURGE_SLICE, 1]
    assert [i for s in slices for i in s] == ids


# -- move ------------------------------------------------------------------------------------

def test_a_pending_job_moves_with_its_blob_and_checkpoint_then_leaves() -> None:
    job = _job(payload=None, payload_ref="blobs/j1.payload", priority=4)
    plan = plan_move(SETTINGS, "q", "j1", "slow", State.PENDING, job, now=NOW, by="ann",
                     attachments=Attachments(payload=b"[1]", checkpoint=b"{}"),
                     priority=4, key="")
    blob, checkpoint, create = plan.create
    assert blob == PutBlob("slow", "j1", "payload", b"[1]")
    assert checkpoint == PutCheckpoint("slow", "j1", b"{}")
    assert isinstance(create, PutNew) and create.queue == "slow" and create.priority == 4
    assert create.check_other_states, "nobody looked in the other queue: the create does"
    edited = _file(create.data)
    assert edited["queue"] == "slow" and edited["moves"][-1]["by"] == "ann"
    assert edited["max_attempts"] == 3, "a pending job keeps its attempts"
    assert plan.remove == Delete("q", State.PENDING, "j1", priority=4, key="")
    assert plan.was is State.PENDING


def test_a_failed_job_moves_with_the_other_queues_attempts() -> None:
    plan = plan_move(SETTINGS, "q", "j1", "slow", State.FAILED, _job(attempts=3), now=NOW,
                     by="ann", target_looked=True)
    [create] = plan.create
    assert isinstance(create, PutNew) and not create.check_other_states
    assert _file(create.data)["max_attempts"] == 3 + 7


@pytest.mark.parametrize(("to", "state", "error", "words"), [
    ("q", State.PENDING, TransitionError, "in queue 'q' already"),
    ("slow", None, JobNotFound, "no job 'j1'"),
    ("slow", State.CLAIMED, TransitionError, "only pending and failed"),
    ("slow", State.DONE, TransitionError, "only pending and failed"),
])
def test_a_move_is_refused_to_its_own_queue_and_from_other_states(
        to: str, state: State | None, error: type[Exception], words: str) -> None:
    refusal = cannot_move("q", "j1", to, state)
    assert isinstance(refusal, error) and words in str(refusal)
    if state is not None:
        with pytest.raises(error, match=words):
            plan_move(SETTINGS, "q", "j1", to, state, _job(), now=NOW, by="ann")


def test_a_move_plans_nothing_for_a_movable_job() -> None:
    assert cannot_move("q", "j1", "slow", State.PENDING) is None
    assert cannot_move("q", "j1", "slow", State.FAILED) is None


def test_the_move_ops_are_store_ops() -> None:
    plan = plan_move(SETTINGS, "q", "j1", "slow", State.PENDING, _job(), now=NOW, by="ann")
    assert all(isinstance(op, (PutBlob, PutCheckpoint, PutNew)) for op in plan.create)
    assert not any(isinstance(op, Move) for op in plan.create)


# -- controls (ckptd.store.control_plans) ----------------------------------------------------

WHERE = "memory://x/q/limits.json"


def test_a_pause_writes_the_reason_and_a_resume_removes_the_file() -> None:
    assert plan_pause("q", "  deploy  ") == ControlChange("q", "paused", b"deploy\n")
    assert plan_pause("q", "") == ControlChange("q", "paused", b"")
    assert plan_resume("q") == ControlChange("q", "paused", None)


def test_a_pause_reason_is_shown_trimmed() -> None:
    assert pause_reason(b"  why\n") == "why"
    assert len(pause_reason(b"x" * 2000)) == 500


def test_a_bad_queue_name_is_refused_before_any_control_file() -> None:
    for plan in (lambda: plan_pause("../q", ""), lambda: plan_resume("../q"),
                 lambda: plan_limit("../q", {"max_running": 1}, False, None, WHERE)):
        with pytest.raises(InvalidName):
            plan()


def test_a_limit_changes_the_file_as_found() -> None:
    change = plan_limit("q", {"max_running": 2}, False, b'{"rate": "5/s"}', WHERE)
    assert change is not None and change.name == "limits.json"
    assert change.data is not None
    assert json.loads(change.data) == {"max_running": 2, "rate": "5/s"}


def test_a_limit_reset_removes_the_file_and_no_change_writes_nothing() -> None:
    assert plan_limit("q", {"max_running": 2}, True, None, WHERE) == ControlChange(
        "q", "limits.json", None)
    assert plan_limit("q", {}, False, b"{}", WHERE) is None


def test_weight_is_a_limit_of_keys_only() -> None:
    with pytest.raises(ConfigError, match="weight is a limit of keys"):
        plan_limit("q", {"weight": 2}, False, None, WHERE)
    change = plan_limit("q", {"weight": 2}, False, None, WHERE, key="acme")
    assert change is not None and change.name == "key_limits.json"
    assert change.data is not None and json.loads(change.data) == {"acme": {"weight": 2}}


def test_a_key_limit_reset_of_the_last_entry_removes_the_file() -> None:
    change = plan_limit("q", {}, True, b'{"acme": {"weight": 2}}', WHERE, key="acme")
    assert change == ControlChange("q", "key_limits.json", None)


def test_a_look_at_a_bad_key_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid key"):
        plan_limit("q", {}, False, None, WHERE, key="a\n")
    assert plan_limit("q", {}, False, None, WHERE, key="*") is None
