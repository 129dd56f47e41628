"""fsync batch, overlapped (daemon/engine/group_commit.py): a group becomes visible only
after a flush made its data durable, is answered only after a flush made its renames
durable, in the order the loop made the groups (claims excepted: made and answered at
once); a failed flush answers every group it covered with the error and leaves nothing
half visible. On a real local store, with flushes held back at will (the flushing thread
waits on a gate)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, StoreError
from ckptd.core.states import State
from ckptd.daemon.engine.group_commit import GroupCommit
from ckptd.daemon.engine.index import Txn
from ckptd.store.base import Move, Outcome, PutNew
from ckptd.store.local.backend import LocalStore
from tests.helpers import wait_for


class GatedStore(LocalStore):
    """A local store whose flushes wait for the test to let each one go (and may fail)."""

    def __init__(self, root: str) -> None:
        super().__init__(root, FsyncMode.BATCH)
        self.gate = threading.Semaphore(0)
        self.flushes = 0
        self.fail_next = False

    def flush(self) -> None:
        assert self.gate.acquire(timeout=30), "the test never let the flush go"
        self.flushes += 1
        if self.fail_next:
            self.fail_next = False
            raise StoreError("flush failed (injected)")
        super().flush()


class Harness:
    def __init__(self, root: Path) -> None:
        self.store = GatedStore(str(root))
        self.woken = threading.Event()
        self.in_flight: set[tuple[str, str]] = set()
        self.appeared: list[str] = []
        self.group = GroupCommit(self.store, self.woken.set, lambda txn, o: o,
                                 lambda seconds: None, self.in_flight,
                                 lambda queue, job_id: self.appeared.append(job_id))
        self.answered: list[tuple[str, Outcome]] = []

    def txn(self, *ops: PutNew | Move) -> Txn:
        txn = Txn()
        for op in ops:
            txn.add(op, lambda outcome, name=op.job_id: self.answered.append((name, outcome)))
        return txn

    def let_one_flush_go(self) -> list[tuple[Txn, list[Outcome]]]:
        """Let the running flush end, wait for its end to reach the loop's side, and run
        the callbacks of what it made durable."""
        self.woken.clear()
        self.store.gate.release()
        wait_for(self.woken.is_set, timeout=30, message="the flush to end")
        ended = self.group.take_ended()
        for txn, outcomes in ended:
            for callback, outcome in zip(txn.callbacks, outcomes):
                if callback is not None:
                    callback(outcome)
        self.group.landed(ended)
        return ended

    def visible(self, state: State = State.PENDING) -> set[str]:
        folder = os.path.join(self.store.root, "q", state.value)
        return {n[:-5] for n in os.listdir(folder)} if os.path.isdir(folder) else set()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = Harness(tmp_path / "store")
    yield made
    for _ in range(8):
        made.store.gate.release()  # nothing waits for a flush any more
    made.group.close()
    made.store.close()


def put(job_id: str) -> PutNew:
    return PutNew("q", job_id, b'{"id": "%s"}\n' % job_id.encode())


def test_a_new_job_is_visible_after_one_flush_and_answered_after_the_next(
        harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    assert harness.visible() == set(), "its data is not durable yet: not in sight"
    harness.let_one_flush_go()
    assert harness.visible() == {"a1"}, "its data is durable: renamed into place"
    assert harness.answered == [], "its rename is not durable yet: not answered"
    harness.let_one_flush_go()
    assert harness.answered == [("a1", None)]


def test_one_flush_serves_the_data_of_one_group_and_the_names_of_another(
        harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))  # its data's flush runs ...
    harness.group.run(harness.txn(put("b1"), put("b2")))  # ... while these are staged
    harness.group.run(harness.txn(put("c1")))
    harness.let_one_flush_go()  # a's data: a1 goes into place
    assert harness.visible() == {"a1"} and harness.answered == []
    harness.let_one_flush_go()  # one flush: a's names, and b's and c's data
    assert harness.answered == [("a1", None)]
    assert harness.visible() == {"a1", "b1", "b2", "c1"}
    harness.let_one_flush_go()  # b's and c's names
    assert harness.answered == [("a1", None), ("b1", None), ("b2", None), ("c1", None)]
    assert harness.store.flushes == 3, "three groups, each flushed twice, in three flushes"


def test_a_claim_is_made_at_once_and_other_groups_without_data_after_one_flush(
        harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    claimed = harness.group.run(harness.txn(Move("q", "a1", State.PENDING, State.CLAIMED)))
    assert harness.visible(State.CLAIMED) == {"a1"}
    assert [(txn.ops[0].job_id, outcomes) for txn, outcomes in claimed] == [("a1", [None])], \
        "a claim waits for no flush: its job goes out in the same turn"
    harness.group.run(harness.txn(Move("q", "a1", State.CLAIMED, State.PENDING)))  # back
    assert harness.visible() == {"a1"}, "a rename needs no data flush first"
    assert harness.answered == [("a1", None)], "but it is answered after a flush"
    harness.let_one_flush_go()
    assert harness.answered == [("a1", None), ("a1", None)]


def test_a_turn_s_claims_go_at_once_and_its_other_ops_wait_for_their_flushes(
        harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1"), put("a2")))
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    claimed = harness.group.run(harness.txn(Move("q", "a1", State.PENDING, State.CLAIMED),
                                            put("b1"),
                                            Move("q", "a2", State.PENDING, State.CLAIMED)))
    assert [[op.job_id for op in txn.ops] for txn, _ in claimed] == [["a1", "a2"]]
    assert harness.visible(State.CLAIMED) == {"a1", "a2"}
    assert harness.visible() == set(), "b1's data is not durable yet"
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    assert harness.answered[-1] == ("b1", None) and harness.visible() == {"b1"}


def test_claims_wait_behind_a_claim_that_writes_data(harness: Harness) -> None:
    """A hand-written file is claimed with new data, which waits for a flush: the claims
    after it, in its turn and in the turns until it is through, wait with it, so that jobs
    reach the workers in the order they were claimed."""
    harness.group.run(harness.txn(put("a1"), put("a2"), put("a3")))
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    completed = Move("q", "a1", State.PENDING, State.CLAIMED, data=b'{"id": "a1"}\n')
    assert harness.group.run(harness.txn(
        completed, Move("q", "a2", State.PENDING, State.CLAIMED))) == []
    assert harness.group.run(harness.txn(Move("q", "a3", State.PENDING, State.CLAIMED))) == []
    harness.let_one_flush_go()  # the data of a1's group
    harness.let_one_flush_go()  # its names; a3's group is published meanwhile
    harness.let_one_flush_go()
    assert [name for name, _ in harness.answered[3:]] == ["a1", "a2", "a3"]
    assert harness.visible(State.CLAIMED) == {"a1", "a2", "a3"}
    assert harness.group.run(harness.txn(Move("q", "a3", State.CLAIMED, State.PENDING))) == []
    harness.let_one_flush_go()
    claimed = harness.group.run(harness.txn(Move("q", "a3", State.PENDING, State.CLAIMED)))
    assert [(txn.ops[0].job_id, outcomes) for txn, outcomes in claimed] == [("a3", [None])], \
        "nothing held back any more: a claim goes at once again"


def test_a_failed_flush_answers_what_it_covered_with_the_error(harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    harness.store.fail_next = True
    harness.let_one_flush_go()
    assert len(harness.answered) == 1 and isinstance(harness.answered[0][1], CkptdError)
    assert harness.visible() == set(), "nothing whose data may not be durable is in sight"
    assert os.listdir(os.path.join(harness.store.root, "q", "tmp")) == [], \
        "its staged file is removed"
    harness.group.run(harness.txn(put("a1")))  # asked again: goes through
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    assert harness.answered[-1] == ("a1", None) and harness.visible() == {"a1"}


def test_a_refused_op_is_answered_with_its_own_error_only(harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    harness.group.run(harness.txn(put("a1"), put("b1")))  # a1 exists: refused
    harness.let_one_flush_go()
    harness.let_one_flush_go()
    outcomes = dict(harness.answered[1:])
    assert isinstance(outcomes["a1"], CkptdError) and outcomes["b1"] is None


def test_a_stop_drains_what_is_in_flight(harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    for _ in range(4):
        harness.store.gate.release()
    ended = harness.group.drain(timeout=30)
    assert [txn.ops[0].job_id for txn, _ in ended] == ["a1"]
    assert len(harness.group) == 0 and harness.visible() == {"a1"}


def test_the_watcher_leaves_a_job_in_flight_to_its_group(harness: Harness) -> None:
    harness.group.run(harness.txn(put("a1")))
    assert harness.in_flight == {("q", "a1")}, "from its staging on"
    harness.let_one_flush_go()
    assert harness.visible() == {"a1"} and harness.in_flight == {("q", "a1")}, \
        "in sight, but not applied yet: the watcher leaves it alone"
    harness.let_one_flush_go()
    assert harness.in_flight == set() and harness.appeared == ["a1"], \
        "announced as the watcher would, once its callbacks ran"
