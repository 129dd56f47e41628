"""Who is alive, as a daemon's membership view says, across a pause of the reader itself."""

from __future__ import annotations

import uuid

import fsspec

from ckptd.daemon.cluster.membership import MEMBERS, Membership
from ckptd.store.objects import EmulatedObjects

LEASE = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def look(view: Membership, objects: EmulatedObjects) -> None:
    listed = objects.tagged(MEMBERS)
    view.observe(listed, listed.get(view.path))


def test_a_reader_paused_longer_than_a_lease_keeps_its_peers_until_it_looks() -> None:
    """A daemon stopped (SIGSTOP) for more than a lease took every other daemon for dead at
    once on waking, before it had looked, and said it was the lone, active daemon."""
    objects = EmulatedObjects(fsspec.filesystem("memory"), f"/members-{uuid.uuid4().hex}")
    clock = Clock()
    a = Membership(objects, "a", LEASE, clock=clock)
    b = Membership(objects, "b", LEASE, clock=clock)
    b.publish({})
    look(a, objects)
    assert set(a.alive()) == {"b"}
    clock.now += 2 * LEASE  # a is paused; b renews meanwhile
    b.publish({})
    assert set(a.alive()) == {"b"}, "a has not looked since its pause: its verdict stands"
    look(a, objects)
    assert set(a.alive()) == {"b"}, "b renewed during the pause"
    clock.now += LEASE / 2  # b stops renewing from now on
    look(a, objects)
    assert set(a.alive()) == {"b"}
    clock.now += LEASE
    look(a, objects)
    assert a.alive() == {}, "unchanged for a whole lease between two looks: dead"
