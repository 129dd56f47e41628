"""The leader lease protocol on an in-process object store, with a clock the test moves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fsspec
import pytest

from ckptd.core.errors import StoreError
from ckptd.daemon.cluster.lease import LeaderLease
from ckptd.store.objects import EmulatedObjects


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LosesAnswers(EmulatedObjects):
    """Writes go through, but the next ``lose`` answers are lost (as a reset connection)."""

    lose = 0
    path = ""

    def put(self, name: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        etag = super().put(name, data, create=create, if_match=if_match)
        if self.lose:
            self.lose -= 1
            raise StoreError("connection reset after the write")
        return etag


@pytest.fixture
def objects() -> Iterator[LosesAnswers]:
    fs = fsspec.filesystem("memory")
    folder = f"/lease-{uuid.uuid4().hex}"
    found = LosesAnswers(fs, folder)
    found.path = "leader.json"
    yield found
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


def lease(objects: LosesAnswers, name: str, clock: Clock) -> LeaderLease:
    return LeaderLease(objects, objects.path, name, duration=4.0, clock=clock)


def test_one_holder_and_a_standby_that_waits_a_whole_lease(objects: LosesAnswers) -> None:
    clock = Clock()
    a, b = lease(objects, "a", clock), lease(objects, "b", clock)
    assert a.try_acquire() and a.held()
    assert not b.try_acquire() and b.holder is not None and b.holder["holder"] == "a"
    clock.now += 3.0
    assert not a.held(), "the holder stops writing after 3/4 of its lease"
    assert not b.try_acquire(), "the standby has not seen the record unchanged for a lease"
    clock.now += 1.0
    assert b.try_acquire() and b.held()
    assert not a.renew() and not a.held(), "the old holder's renewal must fail"


def test_a_renewal_whose_answer_was_lost_is_recognised_as_ours(objects: LosesAnswers) -> None:
    clock = Clock()
    a, b = lease(objects, "a", clock), lease(objects, "b", clock)
    assert a.try_acquire()
    assert not b.try_acquire()
    objects.lose = 1
    with pytest.raises(StoreError):
        a.renew()  # the write landed with an ETag ``a`` never saw
    clock.now += 1.0
    assert a.renew(), "the next renewal finds its own token and goes on"
    objects.lose = 1
    with pytest.raises(StoreError):
        a.renew()
    clock.now += 3.5
    assert not a.held()
    assert a.try_acquire(), "its own lapsed lease is taken back at once, not after a lease"
    assert not b.try_acquire() and b.holder is not None and b.holder["holder"] == "a"


def test_another_daemons_record_is_never_taken_early(objects: LosesAnswers) -> None:
    clock = Clock()
    a, b = lease(objects, "a", clock), lease(objects, "b", clock)
    assert a.try_acquire()
    for _ in range(10):  # a keeps renewing: b never takes over
        clock.now += 1.0
        assert a.renew()
        assert not b.try_acquire()
    a.release()
    assert b.try_acquire(), "a lease given back is free at once"
