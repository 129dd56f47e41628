"""A pending file's name carries its priority (``<id>,p-5.json``), in every backend: the
store reads, moves, lists, counts and finds such files, and calls other forms foreign."""

from __future__ import annotations

import pytest

from ckptd.core.states import State
from ckptd.store import Store
from ckptd.store.base import Delete, Move, PutNew
from ckptd.store.file_names import ids_by_priority, pending_name, split_pending_name
from tests.store.conftest import Backend

Q = "q"


def test_the_name_says_the_priority() -> None:
    assert pending_name("job-1", -5) == "job-1,p-5.json" and pending_name("job-1") == "job-1.json"
    assert split_pending_name("job-1,p-5.json") == ("job-1", -5)
    assert split_pending_name("a.b,p12.json") == ("a.b", 12)
    assert split_pending_name("job-1.json") == ("job-1", 0)
    for other in ("job-1,p0.json", "job-1,p+3.json", "job-1,p03.json", "job-1,p.json",
                  "job-1,q3.json", ",p3.json", "job-1,p3", "job-1,p99999999.json"):
        assert split_pending_name(other) is None, other
    assert ids_by_priority(["a.json", "b,p-1.json", "c,p0.json", "d.txt"]) == \
        {0: ["a"], -1: ["b"]}
    assert ids_by_priority(["a.json", "b.json"]) == {0: ["a", "b"]}


def test_a_pending_job_with_a_priority(backend: Backend) -> None:
    store = backend.store
    assert store.apply([PutNew(Q, "urgent", b'{"payload": 1}', priority=-5),
                        PutNew(Q, "plain", b'{"payload": 2}')]) == [None, None]
    assert backend.exists(f"{Q}/pending/urgent,p-5.json")
    assert store.read(Q, State.PENDING, "urgent", -5) == b'{"payload": 1}'
    assert store.exists(Q, State.PENDING, "urgent", -5)
    assert not store.exists(Q, State.PENDING, "urgent")
    assert store.mtime(Q, State.PENDING, "urgent", -5) > 0
    assert store.ids(Q, State.PENDING) == ["plain", "urgent"]
    assert sorted(store.pending_names(Q)) == ["plain.json", "urgent,p-5.json"]
    assert store.count(Q, State.PENDING) == 2
    assert store.foreign(Q) == []
    chunks = list(store.listing_chunks(Q, State.PENDING, 1))
    assert sorted(n for chunk in chunks for n in chunk) == ["plain.json", "urgent,p-5.json"]
    assert store.pending_priority(Q, "urgent") == -5 and store.pending_priority(Q, "plain") == 0
    assert store.pending_priority(Q, "nobody") is None
    assert store.find(Q, "urgent") == [State.PENDING]  # looked for under its names
    assert store.find(Q, "urgent", -5) == [State.PENDING]
    assert store.describe(Q, State.PENDING, "urgent", -5).endswith("/q/pending/urgent,p-5.json")


def test_moves_and_deletes_name_the_pending_side(store: Store, backend: Backend) -> None:
    store.put_new(Q, "j", b'{"payload": 1}')
    assert store.apply([Move(Q, "j", State.PENDING, State.CLAIMED)]) == [None]
    assert backend.exists(f"{Q}/claimed/j.json")
    assert store.apply([Move(Q, "j", State.CLAIMED, State.PENDING, b'{"payload": 2}',
                             priority=3)]) == [None]
    assert backend.exists(f"{Q}/pending/j,p3.json") and not backend.exists(f"{Q}/claimed/j.json")
    assert store.apply([Move(Q, "j", State.PENDING, State.CLAIMED, priority=3)]) == [None]
    assert store.read(Q, State.CLAIMED, "j") == b'{"payload": 2}'
    store.apply([Move(Q, "j", State.CLAIMED, State.PENDING, priority=-1)])
    assert store.apply([Delete(Q, State.PENDING, "j", priority=-1)]) == [None]
    assert store.ids(Q, State.PENDING) == [] and store.find(Q, "j") == []


@pytest.mark.parametrize("name", ["x,p0.json", "x,p+3.json", "x,p03.json"])
def test_other_forms_are_not_job_files(backend: Backend, name: str) -> None:
    backend.put(f"{Q}/pending/{name}", b"{}")
    backend.put(f"{Q}/pending/ok.json", b"{}")
    assert backend.store.ids(Q, State.PENDING) == ["ok"]
    assert [f.name for f in backend.store.foreign(Q)] == [name]
