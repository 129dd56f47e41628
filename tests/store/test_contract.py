"""The store contract: every promise of ckptd.store.base.Store, held against every backend."""

from __future__ import annotations

import threading
import time

import pytest

from ckptd.core.errors import InvalidName, JobExists, JobNotFound
from ckptd.core.states import State
from ckptd.store.base import (
    Delete,
    DeleteCheckpoint,
    Foreign,
    Move,
    PutBlob,
    PutCheckpoint,
    PutNew,
    Store,
)
from tests.store.conftest import Backend

P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED
Q = "price"


def job(job_id: str, marker: str = "v0") -> bytes:
    return f'{{"id": "{job_id}", "marker": "{marker}"}}\n'.encode()


def where(store: Store, job_id: str, queue: str = Q) -> list[State]:
    return store.find(queue, job_id)


# -- put_new -------------------------------------------------------------------------------


def test_put_new_creates_a_pending_job(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    assert store.read(Q, P, "a") == job("a")
    assert store.ids(Q, P) == ["a"]
    assert store.exists(Q, P, "a") and not store.exists(Q, C, "a")
    assert where(store, "a") == [P]
    assert store.count(Q, P) == 1 and store.count(Q, C) == 0


def test_put_new_is_create_only(store: Store) -> None:
    store.put_new(Q, "a", job("a", "first"))
    with pytest.raises(JobExists) as info:
        store.put_new(Q, "a", job("a", "second"))
    assert info.value.state == "pending" and info.value.job_id == "a"
    assert store.read(Q, P, "a") == job("a", "first")


@pytest.mark.parametrize("state", [C, D, F])
def test_put_new_refuses_an_id_in_another_state(backend: Backend, state: State) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, state)
    with pytest.raises(JobExists) as info:
        store.put_new(Q, "a", job("a", "again"))
    assert info.value.state == state.value
    assert where(store, "a") == [state], "the refused copy is not left in pending/"
    assert store.read(Q, state, "a") == job("a")
    # Generated ids skip the check (they cannot collide); the store then takes the id.
    store.put_new(Q, "a", job("a", "generated"), check_other_states=False)
    assert sorted(where(store, "a")) == sorted([P, state])


def test_put_new_from_many_threads_creates_once(store: Store) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def submit(n: int) -> None:
        barrier.wait()
        try:
            store.put_new(Q, "same", job("same", f"t{n}"))
            outcomes.append(f"t{n}")
        except JobExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "exists"]
    assert len(winners) == 1 and len(outcomes) == 8
    assert store.read(Q, P, "same") == job("same", winners[0])


# -- listing and reading -------------------------------------------------------------------


def test_ids_are_sorted(store: Store) -> None:
    names = ["m", "b", "z", "a-2", "a-10", "a.1", "A"]
    for name in names:
        store.put_new(Q, name, job(name))
    assert store.ids(Q, P) == sorted(names)
    assert store.count(Q, P) == len(names)


def test_nothing_there_is_empty_not_an_error(store: Store) -> None:
    assert store.queues() == []
    assert store.ids("nosuch", P) == []
    assert store.count("nosuch", P) == 0
    assert store.find("nosuch", "a") == []
    assert store.leftovers("nosuch", time.time()) == []
    assert store.foreign("nosuch") == []
    assert store.quarantined("nosuch") == []
    assert store.blob_ids("nosuch") == [] and store.checkpoint_ids("nosuch") == []
    assert store.read_checkpoint("nosuch", "a") is None
    store.put_new(Q, "a", job("a"))
    assert store.ids(Q, D) == [] and store.ids("other", P) == []


def test_read_of_an_absent_job(store: Store) -> None:
    with pytest.raises(JobNotFound, match="'a' is not in price/pending/"):
        store.read(Q, P, "a")
    store.put_new(Q, "a", job("a"))
    with pytest.raises(JobNotFound, match="not in price/claimed/"):
        store.read(Q, C, "a")
    with pytest.raises(JobNotFound):
        store.mtime(Q, C, "a")


def test_mtime(store: Store) -> None:
    before = time.time()
    store.put_new(Q, "a", job("a"))
    after = time.time()
    created = store.mtime(Q, P, "a")
    assert before - 2 <= created <= after + 2
    store.move(Q, "a", P, C)
    assert store.mtime(Q, C, "a") >= created - 0.01


def test_queues(backend: Backend) -> None:
    store = backend.store
    for queue in ("zeta", "alpha", "mid"):
        store.put_new(queue, "a", job("a"))
    backend.put("not a queue/pending/x.json", b"{}")
    backend.put(".hidden/pending/x.json", b"{}")
    backend.put("nostates/blobs/x.payload", b"{}")  # no state folder: not a queue
    assert store.queues() == ["alpha", "mid", "zeta"]


# -- move ----------------------------------------------------------------------------------


def test_move_without_data_keeps_the_bytes(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    assert where(store, "a") == [C]
    assert store.read(Q, C, "a") == job("a")


def test_move_with_data_rewrites(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    store.move(Q, "a", C, D, job("a", "finished"))
    assert where(store, "a") == [D]
    assert store.read(Q, D, "a") == job("a", "finished")
    store.move(Q, "a", D, P, job("a", "again"))  # the store does not police transitions
    assert where(store, "a") == [P]


def test_move_in_place_with_data_rewrites_and_keeps_the_job(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    store.move(Q, "a", C, C, job("a", "heartbeat"))
    assert where(store, "a") == [C]
    assert store.read(Q, C, "a") == job("a", "heartbeat")
    store.move(Q, "a", C, C)
    assert store.read(Q, C, "a") == job("a", "heartbeat")


@pytest.mark.parametrize("data", [None, b'{"new": 1}\n'])
def test_move_of_a_missing_job_raises_and_changes_nothing(backend: Backend,
                                                          data: bytes | None) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    store.put_new(Q, "b", job("b"))
    store.move(Q, "b", P, D)
    before = backend.snapshot()
    with pytest.raises(JobNotFound, match="'missing' is not in price/claimed/"):
        store.move(Q, "missing", C, D, data)
    with pytest.raises(JobNotFound):
        store.move(Q, "a", C, D, data)  # it is pending, not claimed
    assert backend.snapshot() == before


def test_repeating_a_completed_move_changes_nothing(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    store.move(Q, "a", C, D, job("a", "done"))
    before = backend.snapshot()
    for data in (None, job("a", "done")):
        with pytest.raises(JobNotFound):
            store.move(Q, "a", C, D, data)
    assert backend.snapshot() == before


# -- delete --------------------------------------------------------------------------------


def test_delete_removes_the_job_its_checkpoint_and_blobs(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    store.put_new(Q, "b", job("b"))
    for job_id in ("a", "b"):
        store.put_checkpoint(Q, job_id, b'{"step": 1}')
        store.put_blob(Q, job_id, "payload", b"[1, 2]")
        store.put_blob(Q, job_id, "result", b"[3]")
    store.delete(Q, P, "a")
    assert where(store, "a") == []
    assert store.read_checkpoint(Q, "a") is None
    for kind in ("payload", "result"):
        with pytest.raises(JobNotFound):
            store.read_blob(Q, "a", kind)
    assert store.read_checkpoint(Q, "b") == b'{"step": 1}'  # the neighbour is untouched
    assert store.read_blob(Q, "b", "payload") == b"[1, 2]"
    store.delete(Q, P, "a")  # idempotent
    store.delete(Q, D, "never-existed")
    store.delete("nosuch", D, "x")


def test_delete_without_attachments_keeps_them(store: Store) -> None:
    store.put_new(Q, "a", job("a"))
    store.put_checkpoint(Q, "a", b"cp")
    store.put_blob(Q, "a", "payload", b"big")
    assert store.apply([Delete(Q, P, "a", attachments=False)]) == [None]
    assert where(store, "a") == []
    assert store.read_checkpoint(Q, "a") == b"cp"
    assert store.read_blob(Q, "a", "payload") == b"big"


# -- checkpoints and blobs -----------------------------------------------------------------


def test_checkpoints(store: Store) -> None:
    assert store.read_checkpoint(Q, "a") is None
    store.put_checkpoint(Q, "a", b'{"done": 10}')
    assert store.read_checkpoint(Q, "a") == b'{"done": 10}'
    store.put_checkpoint(Q, "a", b'{"done": 20}')  # replaces
    store.put_checkpoint(Q, "a", b'{"done": 20}')  # idempotent
    assert store.read_checkpoint(Q, "a") == b'{"done": 20}'
    store.put_checkpoint(Q, "b", b"{}")
    assert store.checkpoint_ids(Q) == ["a", "b"]
    store.delete_checkpoint(Q, "a")
    store.delete_checkpoint(Q, "a")  # idempotent
    assert store.read_checkpoint(Q, "a") is None
    assert store.checkpoint_ids(Q) == ["b"]
    assert store.ids(Q, P) == [], "a checkpoint is not a job"


def test_blobs(store: Store) -> None:
    with pytest.raises(JobNotFound, match="blob a.payload"):
        store.read_blob(Q, "a", "payload")
    big = bytes(range(256)) * 4096
    store.put_blob(Q, "a", "payload", big)
    store.put_blob(Q, "a", "result", b"r1")
    store.put_blob(Q, "a", "result", b"r2")  # replaces
    store.put_blob(Q, "b", "payload", b"p")
    assert store.read_blob(Q, "a", "payload") == big
    assert store.read_blob(Q, "a", "result") == b"r2"
    assert store.blob_ids(Q) == [("a", "payload"), ("a", "result"), ("b", "payload")]
    for bad in ("payloads", "../x", ""):
        with pytest.raises(InvalidName):
            store.put_blob(Q, "a", bad, b"x")
        with pytest.raises(InvalidName):
            store.read_blob(Q, "a", bad)


# -- groups of operations ------------------------------------------------------------------


def test_apply_reports_each_op_and_one_failure_stops_nothing(store: Store) -> None:
    store.put_new(Q, "old", job("old"))
    store.put_new(Q, "gone", job("gone"))
    ops = [
        PutNew(Q, "n1", job("n1")),
        PutNew(Q, "old", job("old", "dup")),  # fails: exists
        Move(Q, "missing", C, D, job("missing")),  # fails: not claimed
        PutNew("../x", "n2", job("n2")),  # fails: bad queue name
        Move(Q, "old", P, C),
        PutNew(Q, "n2", job("n2")),
        Delete(Q, P, "gone"),
        PutCheckpoint(Q, "n1", b"cp"),
        PutBlob(Q, "n1", "payload", b"blob"),
        PutBlob(Q, "n1", "bogus", b"blob"),  # fails: bad kind
        DeleteCheckpoint(Q, "nothing"),
        Move(Q, "n2", P, C, job("n2", "claimed")),
    ]
    outcomes = store.apply(ops)
    assert len(outcomes) == len(ops)
    kinds = [type(o).__name__ if o is not None else None for o in outcomes]
    assert kinds == [None, "JobExists", "JobNotFound", "InvalidName", None, None, None, None,
                     None, "InvalidName", None, None]
    assert store.ids(Q, P) == ["n1"]
    assert store.ids(Q, C) == ["n2", "old"]
    assert store.read(Q, C, "old") == job("old")
    assert store.read(Q, C, "n2") == job("n2", "claimed")
    assert store.read_checkpoint(Q, "n1") == b"cp"
    assert store.read_blob(Q, "n1", "payload") == b"blob"
    assert where(store, "gone") == []


def test_apply_of_nothing(store: Store) -> None:
    assert store.apply([]) == []


def test_a_big_group(store: Store) -> None:
    ids = [f"j{n:04d}" for n in range(300)]
    assert store.apply([PutNew(Q, i, job(i)) for i in ids]) == [None] * 300
    assert store.apply([Move(Q, i, P, C) for i in ids[:200]]) == [None] * 200
    assert store.apply([Move(Q, i, C, D, job(i, "done")) for i in ids[:100]]) == [None] * 100
    assert (store.count(Q, P), store.count(Q, C), store.count(Q, D)) == (100, 100, 100)
    assert store.read(Q, D, "j0050") == job("j0050", "done")


# -- maintenance ---------------------------------------------------------------------------


def test_leftovers(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    assert store.leftovers(Q, time.time()) == [], "a successful write leaves nothing in tmp/"
    backend.put(f"{Q}/tmp/a.123.0", b"half")
    backend.put(f"{Q}/tmp/b.123.1", b"half")
    now = time.time()
    found = store.leftovers(Q, now + 3600)
    assert [f.name for f in found] == ["a.123.0", "b.123.1"]
    assert all(3590 <= f.age <= 3610 and f.queue == Q for f in found)
    store.remove_leftover(Q, "a.123.0")
    store.remove_leftover(Q, "a.123.0")  # idempotent
    assert [f.name for f in store.leftovers(Q, now)] == ["b.123.1"]
    assert store.read(Q, P, "a") == job("a")
    for bad in ("../pending/a.json", "..", "x/y"):
        with pytest.raises(InvalidName):
            store.remove_leftover(Q, bad)
    assert store.exists(Q, P, "a")


def test_foreign_files_are_listed_and_never_counted(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    backend.put(f"{Q}/pending/notes.txt", b"hello")
    backend.put(f"{Q}/pending/.hidden.json", b"{}")
    backend.put(f"{Q}/failed/bad name.json", b"{}")
    assert store.ids(Q, P) == ["a"] and store.ids(Q, F) == []
    assert store.count(Q, P) == 1 and store.count(Q, F) == 0
    assert sorted(store.foreign(Q), key=repr) == [
        Foreign(Q, "failed", "bad name.json"),
        Foreign(Q, "pending", ".hidden.json"),
        Foreign(Q, "pending", "notes.txt"),
    ]


def test_quarantine(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    backend.put(f"{Q}/pending/b.json", b"{not json")
    where_to = store.quarantine(Q, "pending", "b.json", "not valid JSON")
    assert where_to.endswith("/quarantine/b.json")
    assert not store.exists(Q, P, "b")
    assert backend.get(f"{Q}/quarantine/b.json") == b"{not json"
    assert backend.get(f"{Q}/quarantine/b.json.reason.txt") == b"not valid JSON\n"
    assert store.quarantined(Q) == ["b.json"]
    # The same name again does not overwrite the first.
    backend.put(f"{Q}/pending/b.json", b"second")
    second = store.quarantine(Q, "pending", "b.json", "again")
    assert second != where_to and len(store.quarantined(Q)) == 2
    assert backend.get(f"{Q}/quarantine/b.json") == b"{not json"
    # A file that is already gone is not an error.
    store.quarantine(Q, "pending", "gone.json", "whatever")
    assert store.ids(Q, P) == ["a"] and store.read(Q, P, "a") == job("a")


@pytest.mark.parametrize(("folder", "name"), [
    ("pending", "../../x"), ("pending", ".."), ("pending", "a/b"), ("pending", "a\0b"),
    ("..", "a.json"), ("../other", "a.json"), ("/etc", "passwd"), ("pending/..", "a.json"),
])
def test_quarantine_refuses_paths_out_of_the_queue(backend: Backend, folder: str,
                                                   name: str) -> None:
    backend.store.put_new(Q, "a", job("a"))
    before = backend.snapshot()
    with pytest.raises(InvalidName):
        backend.store.quarantine(Q, folder, name, "no")
    assert backend.snapshot() == before


def test_find_sees_a_job_in_two_states(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    backend.put(f"{Q}/done/a.json", job("a", "copy"))
    assert where(store, "a") == [P, D]
    assert store.find(Q, "zzz") == []


# -- names ---------------------------------------------------------------------------------

HOSTILE = ["../x", "..", "/abs", "a/b", "", ".hidden", "x" * 300, "a\0b", "\u0430"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_names_are_refused_everywhere(backend: Backend, bad: str) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    before = backend.snapshot()
    calls = [
        lambda: store.put_new(bad, "a", job("a")),
        lambda: store.put_new(Q, bad, job("a")),
        lambda: store.read(bad, P, "a"),
        lambda: store.read(Q, P, bad),
        lambda: store.ids(bad, P),
        lambda: store.count(bad, P),
        lambda: store.exists(Q, P, bad),
        lambda: store.mtime(Q, P, bad),
        lambda: store.move(Q, bad, P, C),
        lambda: store.move(bad, "a", P, C),
        lambda: store.delete(Q, P, bad),
        lambda: store.put_checkpoint(Q, bad, b"x"),
        lambda: store.read_checkpoint(Q, bad),
        lambda: store.delete_checkpoint(Q, bad),
        lambda: store.put_blob(Q, bad, "payload", b"x"),
        lambda: store.read_blob(Q, bad, "payload"),
        lambda: store.leftovers(bad, 0.0),
        lambda: store.foreign(bad),
        lambda: store.quarantined(bad),
        lambda: store.ensure_queue(bad),
    ]
    for n, call in enumerate(calls):
        with pytest.raises(InvalidName):
            call()
            pytest.fail(f"call #{n} accepted {bad!r}")
    assert backend.snapshot() == before


def test_a_job_file_lives_in_its_state_folder(backend: Backend) -> None:
    store = backend.store
    store.put_new(Q, "a", job("a"))
    assert backend.get(f"{Q}/pending/a.json") == job("a")
    for src, dst in [(P, C), (C, F), (F, P), (P, C), (C, D)]:
        store.move(Q, "a", src, dst)
        assert backend.exists(f"{Q}/{dst.value}/a.json")
        assert not backend.exists(f"{Q}/{src.value}/a.json")
    assert store.describe(Q, D, "a").endswith("/price/done/a.json")
