"""A big folder of a bucket is listed in key ranges split as pages come back full: every
name once, whatever the names look like, on a real S3 server (SeaweedFS), through both
clients."""

from __future__ import annotations

import random

import pytest

from ckptd.core.ids import new_id
from ckptd.core.states import State
from ckptd.store.base import PutNew
from ckptd.store.s3.backend import S3Store
from ckptd.store.s3.split_listing import split_points
from tests.s3server import SeaweedServer, s3_server  # noqa: F401  (a fixture)


def test_split_points_lie_between_and_in_order() -> None:
    for low, high in (("20261205T010000.000000Z-aa.json", None), ("a", "b"),
                      ("20261205T010000.0Z", "20261205T013000.0Z"), ("job-1", "job-9"),
                      ("abc", "abd")):
        points = split_points(low, high, 16)
        assert points == sorted(points) and len(set(points)) == len(points)
        assert all(p > low and (high is None or p < high) for p in points)
    assert split_points("a", "a,", 16) == [] or all("a" < p < "a," for p in
                                                   split_points("a", "a,", 16))


def test_split_points_never_hold_a_slash() -> None:
    """A "/" in a split key ends a folder to S3, and obstore refuses a key with "//" in it
    (it did, in a full run: 'contained empty path segment'). Between ids of one hour, and
    between any names of the characters job files use."""
    pairs = [("a", "b"), ("4Faz", "4Fb"), ("20261205T010000.0Z", "20261205T013000.0Z"),
             ("20261205T010000.000000Z-aa.json", None)]
    chars = "".join(chr(c) for c in range(0x2B, 0x7C) if chr(c) != "/")
    rand = random.Random(7)
    for _ in range(3000):
        a, b = ("".join(rand.choice(chars) for _ in range(rand.randint(1, 10)))
                for _ in range(2))
        if a != b:
            pairs.append((min(a, b), max(a, b)))
    for low, high in pairs:
        points = split_points(low, high, 16)
        assert not [p for p in points if "/" in p], (low, high)
        assert points == sorted(points) and all(p > low and (high is None or p < high)
                                                for p in points)
    assert len(split_points("a", "b", 16)) == 15  # and the split still splits


@pytest.mark.parametrize("client", ["obstore", "s3fs"])
def test_every_name_comes_once(s3_server: SeaweedServer, client: str) -> None:  # noqa: F811
    options = s3_server.storage_options()
    if client == "s3fs":
        options["s3_client"] = "s3fs"
    store = S3Store(s3_server.url(), storage_options=options)
    try:
        ids = [new_id() for _ in range(2600)] + [f"order-{n}" for n in range(300)]
        ops = [PutNew("q", job_id, b"{}", check_other_states=False,
                      priority=-5 if n % 97 == 0 else 0) for n, job_id in enumerate(ids)]
        for start in range(0, len(ops), 500):
            assert store.apply(ops[start:start + 500]) == [None] * len(ops[start:start + 500])
        before = store.request_stats().get("requests", 0)
        chunks = list(store.listing_chunks("q", State.PENDING, 700))
        names = [name for chunk in chunks for name in chunk]
        assert len(names) == len(ids) and sorted(names) == sorted(store.pending_names("q"))
        assert all(len(chunk) <= 700 for chunk in chunks)
        assert store.request_stats()["requests"] - before > 3  # split into ranges
    finally:
        store.close()
