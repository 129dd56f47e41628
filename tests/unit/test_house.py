"""The seams mended when the modules moved into parts (issue "the house"): one edit of a job
file for both ways of cancelling, status reads that change nothing, flows that write through
the transaction and reduce from memory, answers apart from failures, the state machine asked
where moves are made, and store capabilities declared, not probed."""

from __future__ import annotations

from typing import Any

import pytest

from ckptd.core import batches
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import (
    CkptdError,
    JobExists,
    JobNotFound,
    MalformedJob,
    NotLeader,
    RemoteError,
    Standby,
    StoreError,
    TakingOver,
    TransitionError,
    remote_error,
)
from ckptd.core.states import State
from ckptd.daemon.engine.index import Txn
from ckptd.daemon.engine.store_guard import StoreGuard
from ckptd.store.admin import StoreAdmin
from ckptd.store.base import Move, PutManifest
from ckptd.store.bucket import BucketStore
from ckptd.store.local.backend import LocalStore
from tests.harness import Harness


def _claimed(h: Harness, count: int) -> list[str]:
    ids = [h.submit() for _ in range(count)]
    h.hello(slots=count)
    assert len(h.dispatch()) == count
    return ids


def test_cancel_through_the_store_and_through_the_daemon_write_the_same_fields(
        harness: Harness) -> None:
    h = harness
    by_daemon, by_root = _claimed(h, 2)
    h.now += 3
    h.operators.cancel("q", by_daemon, h.now, h.replies.append, by="ann@vm1 (--connect)")
    h.commit()
    assert h.replies[-1] == {"was": "claimed"}
    StoreAdmin(h.store, h.settings, clock=lambda: h.now).cancel("q", by_root)
    one, two = h.file(State.FAILED, by_daemon), h.file(State.FAILED, by_root)
    assert set(one) == set(two), "the same fields, whichever way the job was cancelled"
    for job in (one, two):
        assert job["attempts"] == 1 and job["finished_at"]
        assert job["last_error"]["type"] == "Cancelled" and job["last_error"]["by"]
        [entry] = job["history"]
        assert entry["outcome"] == "cancelled" and entry["attempt"] == 1
        assert entry["claimed"] and entry["ended"]
        assert set(entry) == set(one["history"][0])
    assert one["last_error"]["by"] == "ann@vm1 (--connect)"
    assert "--root" in two["last_error"]["by"]


def test_reading_status_twice_gives_the_same_ready_order(harness: Harness) -> None:
    h = harness
    ids = [h.submit() for _ in range(6)]
    for job_id in ids[:3]:  # stale ids at the head of the ready line
        h.operators.cancel("q", job_id, h.now, h.replies.append)
    h.commit()
    index = h.engine.queues["q"]
    before = list(index.ready)
    first = h.operators.status("q", h.now)
    second = h.operators.status("q", h.now)
    assert list(index.ready) == before, "a status read changed the ready line"
    assert first["queues"]["q"]["pending"] == second["queues"]["q"]["pending"] == 3
    assert first["queues"]["q"]["oldest_pending_age_s"] is not None


class CountingStore(BucketStore):
    """A memory bucket that counts lookups and refuses writes outside the daemon's commit."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lookups = 0
        self.committing = False

    def exists(self, queue: str, state: State, job_id: str) -> bool:
        self.lookups += 1
        return super().exists(queue, state, job_id)

    def find(self, queue: str, job_id: str) -> list[State]:
        self.lookups += 1
        return super().find(queue, job_id)

    def apply(self, ops: Any) -> Any:
        if not self.committing:
            raise AssertionError(f"a store write outside the transaction: {ops[:2]}")
        return super().apply(ops)


def test_a_reduce_is_built_from_memory_and_written_through_the_transaction(
        harness: Harness) -> None:
    h = harness
    store = CountingStore(h.store.url + "-counted")
    h.store = store
    h.engine = type(h.engine)(store, h.settings, rand=lambda: 0.5)
    h.guard = StoreGuard(store, h.clock)
    store.committing = True
    admin = StoreAdmin(store, h.settings, clock=lambda: h.now)
    data = b"".join(b"item %d\n" % n for n in range(40))
    batch = admin.submit_file("q", data, fmt="lines", chunk=1, batch="B1", then="sum").batch
    h.engine.recover(h.now)
    commit = h.commit

    def guarded_commit() -> Any:
        store.committing = True
        try:
            return commit()
        finally:
            store.committing = False

    h.commit = guarded_commit  # type: ignore[method-assign]
    store.committing = False
    w = h.hello(slots=40)
    sent = h.dispatch()
    assert len(sent) == 40
    store.lookups = 0
    for job in sent:
        h.answer(w, "done", {"queue": "q", "id": job["id"], "attempt": 1, "result": 1})
    while h.engine.txn.ops:  # the reduce, then its manifest (queued by the reduce's callback)
        h.commit()
    assert store.lookups == 0, "no store lookup per job of the batch"
    store.committing = True
    [reduce_id] = store.ids("sum", State.PENDING)
    assert reduce_id == batches.reduce_id(batch)
    payload = h.file(State.PENDING, reduce_id, queue="sum")["payload"]
    assert payload["done"] == 40 and payload["failed"] == 0
    assert payload["jobs"] == [[batches.job_id(batch, n), "done"] for n in range(40)]
    manifest = batches.Manifest.decode(store.read_manifest("q", batch))
    assert manifest.reduced, "the manifest records that the reduce was submitted"


def test_a_retried_batch_job_is_open_again_and_counted_once() -> None:
    progress = batches.BatchProgress(batches.Manifest("B", "q", 2, "now", then="r"))
    assert progress.record("B.000000", "failed") and not progress.complete
    assert not progress.record("C.000001", "done"), "not a job of the batch"
    assert not progress.record("B.000007", "done"), "beyond the batch's total"
    progress.record("B.000000", None)  # retried
    progress.record("B.000000", "done")
    progress.record("B.000001", "done")
    assert progress.complete and (progress.done, progress.failed) == (2, 0)


def test_answers_are_not_store_failures() -> None:
    for answer in (JobNotFound("x"), JobExists("q", "x"), MalformedJob("x"),
                   TransitionError("x"), NotLeader("x")):
        assert isinstance(answer, CkptdError) and not isinstance(answer, StoreError)
    assert {e.code for e in (JobNotFound("x"), JobExists("q", "x"), Standby("x"),
                             TakingOver("x"))} == {"not_found", "exists", "standby",
                                                   "taking_over"}


def test_a_remote_error_is_an_instance_of_the_class_its_code_names() -> None:
    error = remote_error("not_found", "no job 'x'", 3)
    assert isinstance(error, RemoteError) and isinstance(error, JobNotFound)
    assert str(error) == "no job 'x'" and error.exit_code == 3 and error.kind == "not_found"
    taking = remote_error("taking_over", "wait", 7)
    assert isinstance(taking, TakingOver) and isinstance(taking, Standby)
    exists = remote_error("exists", "already", 4)
    assert isinstance(exists, JobExists) and exists.state is None
    unknown = remote_error("no_such_code", "odd", 1)
    assert type(unknown).__mro__[1:3] == (RemoteError, CkptdError)


def test_the_daemon_transaction_asks_the_state_machine() -> None:
    txn = Txn()
    txn.add(Move("q", "a", State.PENDING, State.CLAIMED))
    txn.add(Move("q", "a", State.PENDING, State.PENDING, b"{}"))  # a rewrite in place
    with pytest.raises(TransitionError, match="pending to done"):
        txn.add(Move("q", "a", State.PENDING, State.DONE))
    with pytest.raises(TransitionError, match="done to pending"):
        txn.add(Move("q", "a", State.DONE, State.PENDING))
    assert len(txn) == 2


def test_store_capabilities_have_stated_defaults(tmp_path: Any) -> None:
    local = LocalStore(str(tmp_path / "root"))
    try:
        local.ensure_queue("q")
        assert local.prefetch("q", ["a"]) == 0
        assert local.request_stats() == {}
        assert local.set_fence(lambda queue: None) is False
        assert local.control_objects() is None
        local.probe_access()
        local.forget_prefetched()
    finally:
        local.close()
    bucket = BucketStore("memory://capabilities")
    objects = bucket.control_objects()
    assert objects is not None and objects.shared is False  # emulated in this process
    etag = objects.put("lease.json", b"1", create=True)
    assert objects.get("lease.json") == (b"1", etag)
    assert objects.names("lease") == ["lease.json"]
    objects.delete("lease.json", if_match=etag)
    assert objects.get("lease.json") is None
    bucket.put_new("q", "b", b'{"id": "b"}', check_other_states=False)
    assert bucket.ids_after("q", State.PENDING, "a") == ["b"]
    assert bucket.ids_after("q", State.PENDING, "b") == []


def test_every_holder_of_the_settings_sees_a_reload(harness: Harness) -> None:
    h = harness
    live = LiveSettings(h.settings)
    store = h.store
    from ckptd.daemon.cluster.bucket_role import BucketRole
    from ckptd.daemon.engine.engine import Engine
    from ckptd.daemon.engine.store_guard import StoreGuard

    engine = Engine(store, live)
    role = BucketRole(store, live, engine, StoreGuard(store, lambda: h.now), name="d",
                      wake=lambda: None, clock=lambda: h.now, endpoints=lambda: {})
    admin = StoreAdmin(store, live)
    live.current = Settings(lease=99.0, heartbeat=1.0, rescan_interval=7.0)
    assert engine.settings.lease == role.settings.lease == admin.settings.lease == 99.0
    assert engine.flows.settings.lease == 99.0 and role.settings.rescan_interval == 7.0


def test_the_manifest_op_keeps_its_batch_as_name() -> None:
    op = PutManifest("q", "B1", b"{}")
    assert op.job_id == "B1"
