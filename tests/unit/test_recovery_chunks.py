"""Recovery from listings in chunks (the engine's side), with priorities in file names:
the order comes from the names alone, files of the previous version still run, ids known
before their chunk arrives are not counted twice, and a rescan of a big queue finds what
the index missed."""

from __future__ import annotations

import json
import time

from ckptd.core.ids import new_id
from ckptd.core.states import State
from ckptd.daemon.engine.indexing import (
    RUN_FIRST,
    ListedPending,
    RunCutter,
    list_ended,
    list_pending,
)
from ckptd.daemon.watch.pending_diff import Snapshot, compare
from ckptd.store.packed_ids import IdRun
from tests.unit.test_engine import Harness

Q = "q"


def plant(h: Harness, name: str, body: dict[str, object], state: str = "pending") -> None:
    h.store.fs.pipe_file(f"{h.store.prefix}/{Q}/{state}/{name}", json.dumps(body).encode())


def test_the_names_order_a_recovered_queue_without_reading_a_file() -> None:
    h = Harness()
    ids = sorted(new_id() for _ in range(6))
    plant(h, f"{ids[4]}.json", {"payload": 4})
    plant(h, f"{ids[1]},p-5.json", {"payload": 1})  # hand-written, urgent by its name
    plant(h, f"{ids[0]}.json", {"payload": 0})
    plant(h, f"{ids[3]},p2.json", {"payload": 3})
    plant(h, f"{ids[2]}.json", {"payload": 2, "priority": -9})  # the previous version's
    h.now = time.time() + 5  # hand-written files are taken once a moment old
    h.engine.recover(h.now)
    index = h.engine.queues[Q]
    assert len(index.pending) == 5 and index.ready.levels() == {-5: 1, 0: 3, 2: 1}
    assert list(index.ready) == [ids[1], ids[0], ids[2], ids[4], ids[3]]
    h.hello(slots=10)
    sent = h.dispatch()
    assert [b["id"] for b in sent] == [ids[1], ids[0], ids[2], ids[4], ids[3]]
    # The claimed files say the priority their names carried (the name decides).
    assert h.file(State.CLAIMED, ids[1])["priority"] == -5
    assert "priority" not in h.file(State.CLAIMED, ids[2])
    assert h.store.ids(Q, State.PENDING) == []


def test_a_retry_keeps_the_priority_in_the_name() -> None:
    h = Harness()
    identity = h.hello()
    job_id = h.submit(priority=-3)
    assert h.store.pending_names(Q) == [f"{job_id},p-3.json"]
    body = h.dispatch()[0]
    h.answer(identity, "failed", {"queue": Q, "id": job_id, "attempt": body["attempt"],
                                  "error": "no"})
    assert h.store.pending_names(Q) == [f"{job_id},p-3.json"]


def test_ids_known_before_their_chunk_are_not_counted_twice() -> None:
    h = Harness()
    ids = sorted(new_id() for _ in range(10))
    indexing = h.engine.indexing
    index = indexing.begin(Q, [], h.now, 5.0)
    h.engine.pending_appeared(Q, ids[3])  # a watcher event before the listing got there
    added = indexing.pending(ListedPending(Q, 0, IdRun.runs_of(ids, 0.0)), h.now)
    assert added == 9 and len(index.pending) == 10
    assert index.recovering == {"pending": 9, "done": 0, "failed": 0}


def test_claimed_jobs_listed_in_pending_too_are_resolved_while_filed() -> None:
    """Each claimed job whose pending copy a listing finds is resolved by the two-state rule,
    which ends its lease when the pending copy wins: the claimed jobs change while they are
    gone through (a daemon of a shared root crashed with 'dictionary changed size')."""
    h = Harness()
    ids = sorted(new_id() for _ in range(4))
    for job_id in ids[:3]:
        body = {"id": job_id, "queue": Q, "payload": 1, "created": "2026-12-06T00:00:00Z",
                "attempts": 1, "max_attempts": 3}
        plant(h, f"{job_id}.json", {**body, "rev": 1}, "claimed")
        plant(h, f"{job_id}.json", {**body, "rev": 2})  # newer: a --root retry's copy
    indexing = h.engine.indexing
    index = indexing.begin(Q, ids[:3], h.now, 5.0)
    assert set(index.claimed) == set(ids[:3])
    indexing.pending(ListedPending(Q, 0, IdRun.runs_of(ids, 0.0)), h.now)
    assert not index.claimed, "the pending copies won: no lease left"
    assert all(job_id in index.pending for job_id in ids)
    assert h.store.ids(Q, State.CLAIMED) == []


def test_a_run_cutter_hands_small_runs_first() -> None:
    cutter = RunCutter(0.0)
    names = [f"{new_id()}.json" for _ in range(RUN_FIRST + 10)]
    full = cutter.add(names[:RUN_FIRST - 1])
    assert full == {}
    full = cutter.add(names[RUN_FIRST - 1:])
    assert sum(len(r) for r in full[0]) == RUN_FIRST + 11 - 1
    assert cutter.rest() == {}


def test_ended_copies_of_open_jobs_are_found() -> None:
    h = Harness()
    pending, claimed, alone = new_id(), new_id(), new_id()
    for job_id in (pending, claimed, alone):
        plant(h, f"{job_id}.json", {"payload": 1}, "done")
    plant(h, f"{pending}.json", {"payload": 1})
    plant(h, "batch-1.000001.json", {"payload": 1}, "failed")
    runs = list_pending(h.store, Q, 0.0)
    ended = list_ended(h.store, Q, [r for rs in runs.values() for r in rs], [claimed])
    assert set(ended.twice) == {pending, claimed}
    assert ended.counts == {State.DONE: 3, State.FAILED: 1}
    assert ended.batch_ids[State.FAILED] == ["batch-1.000001"]
    assert ended.newest_failed == ["batch-1.000001"]


def test_a_rescan_of_a_big_queue_finds_what_the_index_missed() -> None:
    h = Harness()
    ids = sorted(new_id() for _ in range(20))
    for job_id in ids[:15]:
        plant(h, f"{job_id}.json", {"payload": 1})
    h.engine.recover(h.now)
    index = h.engine.queues[Q]
    h.engine.pending_appeared(Q, "by-hand")  # a loose one, then removed unseen
    missed = ids[15]
    plant(h, f"{missed},p-2.json", {"payload": 1})  # put there unseen
    h.store.fs.rm_file(f"{h.store.prefix}/{Q}/pending/{ids[2]}.json")  # removed unseen
    diff = compare(h.store, Q, Snapshot.of(index), 0.0)
    assert diff.appeared == [(missed, -2)]
    assert sorted(diff.vanished) == sorted([ids[2], "by-hand"])
    assert diff.listed == 15


def test_a_submit_sent_again_while_its_first_is_stored_gets_the_first_ones_outcome() -> None:
    from ckptd.core.errors import CkptdError, JobExists, StoreError

    h = Harness()
    replies: list[object] = []
    body = {"queue": Q, "id": "job-1", "payload": 1, "if_exists": "return"}
    h.engine.submit(dict(body), h.now, replies.append)
    h.engine.submit(dict(body), h.now, replies.append)  # sent again before the first is stored
    assert replies == []  # not "exists" from the reservation alone
    txn, h.engine.txn = h.engine.txn, type(h.engine.txn)()
    for callback in txn.callbacks:
        if callback is not None:
            callback(StoreError("the create failed for good"))
    assert len(replies) == 2 and all(isinstance(r, CkptdError) for r in replies)
    assert "job-1" not in h.engine.queues[Q].pending
    # A create that finds the job pending (an earlier send made it): indexed, and it runs.
    h.engine.submit({**body, "id": "job-2"}, h.now, replies.append)
    txn, h.engine.txn = h.engine.txn, type(h.engine.txn)()
    txn.callbacks[-1](JobExists(Q, "job-2", "pending"))  # type: ignore[misc]
    assert replies[-1] == {"id": "job-2", "created": False, "state": "pending"}
    assert "job-2" in h.engine.queues[Q].pending and list(h.engine.queues[Q].ready) == ["job-2"]
