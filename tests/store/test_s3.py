"""The S3 store on a real SeaweedFS: what each operation costs in requests, conditional
writes, the fence, deadlines and retries (through the fault proxy), errors that say what
to do, the settings that reach obstore, and the fallback to s3fs."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ckptd.core.errors import NotLeader, StoreError, StoreUnavailable
from ckptd.core.states import State
from ckptd.store.base import DeleteCheckpoint, Move, PutCheckpoint, PutNew
from ckptd.store.objects import Conflict
from ckptd.store.s3.backend import S3Store
from ckptd.store.s3.obstore_client import HttpStatus
from ckptd.store.s3.options import NotHonoured, obstore_setup
from ckptd.store.s3.requests import ATTEMPTS
from tests.bucket.faultproxy import FaultProxy
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, SeaweedServer

P, C, D = State.PENDING, State.CLAIMED, State.DONE
Q = "price"


def job(job_id: str, marker: str = "v0") -> bytes:
    return f'{{"id": "{job_id}", "marker": "{marker}"}}\n'.encode()


@pytest.fixture
def open_s3(s3_server: SeaweedServer) -> Iterator[Callable[..., S3Store]]:
    """Factory of S3 stores on the session's server (a prefix each), closed at the end."""
    made: list[S3Store] = []

    def make(url: str | None = None, timeout: float = 10.0, **options: Any) -> S3Store:
        store = S3Store(url or s3_server.url(),
                        storage_options={**s3_server.storage_options(), **options},
                        timeout=timeout)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    """Factory of fault proxies, stopped at the end."""
    made: list[FaultProxy] = []

    def make(upstream: str, **rates: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **rates).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def requests_of(store: S3Store, action: Callable[[], object]) -> int:
    """How many requests ``action`` made to the server."""
    before = store.request_stats().get("requests", 0)
    action()
    return store.request_stats().get("requests", 0) - before


# -- what each operation costs --------------------------------------------------------------


def test_requests_per_operation(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()
    assert store.client == "obstore"
    store.conditional_writes()  # probed once, before the first create
    assert requests_of(store, lambda: store.put_new(Q, "a", job("a"),
                                                    check_other_states=False)) == 1
    # A claim: a copy and a delete; the pending file the daemon wrote is remembered.
    assert store.read(Q, P, "a") == job("a")
    assert requests_of(store, lambda: store.move(Q, "a", P, C)) == 2
    # Done, from the daemon that holds the lease: no look first.
    done = Move(Q, "a", C, D, job("a", "done"), src_known=True)
    assert requests_of(store, lambda: store.apply([done])) == 2
    assert store.find(Q, "a") == [D] and store.read(Q, D, "a") == job("a", "done")
    # Anybody else's move with new bytes looks first.
    store.put_new(Q, "b", job("b"), check_other_states=False)
    store.move(Q, "b", P, C)
    assert requests_of(store, lambda: store.move(Q, "b", C, D, job("b", "done"))) == 3
    # A group: one copy (or PUT) per job, and the old copies deleted in one request.
    ids = [f"g{n}" for n in range(10)]
    store.apply([PutNew(Q, i, job(i), check_other_states=False) for i in ids])
    assert requests_of(store, lambda: store.apply([Move(Q, i, P, C) for i in ids])) == 11
    assert requests_of(store, lambda: store.apply(
        [Move(Q, i, C, D, job(i, "done"), src_known=True) for i in ids])) == 11
    assert store.ids(Q, D) == sorted(["a", "b", *ids]) and store.ids(Q, C) == []
    assert store.ids(Q, P) == []


def test_a_known_move_repeated_ends_the_same(open_s3: Callable[..., S3Store]) -> None:
    """Kept and applied again after a lost answer, the move still succeeds (the one that
    looks first would stop at "not found")."""
    store = open_s3()
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    done = Move(Q, "a", C, D, job("a", "done"), src_known=True)
    assert store.apply([done]) == [None]
    assert store.apply([done]) == [None]
    assert store.find(Q, "a") == [D] and store.read(Q, D, "a") == job("a", "done")


def test_deletes_wait_for_the_later_ops_of_their_job(open_s3: Callable[..., S3Store]) -> None:
    """An old copy's delete goes to the group's end only when no later op of the same job
    could write that key again."""
    store = open_s3()
    store.put_new(Q, "a", job("a"))
    store.put_new(Q, "b", job("b"))
    store.move(Q, "b", P, C)
    outcomes = store.apply([Move(Q, "a", P, C), Move(Q, "a", C, P, job("a", "back")),
                            PutCheckpoint(Q, "b", b'{"at": 1}'), DeleteCheckpoint(Q, "b"),
                            PutCheckpoint(Q, "b", b'{"at": 2}')])
    assert outcomes == [None] * 5
    assert store.find(Q, "a") == [P] and store.read(Q, P, "a") == job("a", "back")
    assert store.read_checkpoint(Q, "b") == b'{"at": 2}'


def test_a_server_without_bulk_delete(open_s3: Callable[..., S3Store],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_s3()

    async def refuse(keys: Any) -> None:
        raise HttpStatus(501, b"<Error><Code>NotImplemented</Code></Error>")

    monkeypatch.setattr(store.req, "_delete_many", refuse)
    ids = ["a", "b", "c"]
    store.apply([PutNew(Q, i, job(i)) for i in ids])
    assert store.apply([Move(Q, i, P, C) for i in ids]) == [None] * 3
    assert store.req.bulk_deletes is False
    assert store.ids(Q, C) == ids and store.ids(Q, P) == []


def test_listing_after_a_key(open_s3: Callable[..., S3Store],
                             s3_server: SeaweedServer) -> None:
    store = open_s3()
    for name in ("a", "b", "c"):
        store.put_new(Q, name, job(name))
    client = s3_server.client()  # a key deeper down is not a job of pending/
    client.put_object(Bucket=s3_server.bucket, Key=f"{store.base}/{Q}/pending/sub/x.json",
                      Body=b"{}")
    client.close()
    assert store.ids_after(Q, P, "a") == ["b", "c"]
    assert store.ids_after(Q, P, None) == ["a", "b", "c"]
    assert store.ids_after(Q, P, "c") == []


# -- conditional writes and the fence --------------------------------------------------------


def test_conditional_writes_of_the_control_area(open_s3: Callable[..., S3Store]) -> None:
    objects = open_s3().control_objects()
    assert objects.shared is True
    etag = objects.put("leader.json", b"1", create=True)
    with pytest.raises(Conflict):
        objects.put("leader.json", b"2", create=True)
    with pytest.raises(Conflict):
        objects.put("leader.json", b"2", if_match='"0"')
    renewed = objects.put("leader.json", b"2", if_match=etag)
    assert objects.get("leader.json") == (b"2", renewed)
    assert objects.names("lead") == ["leader.json"] and objects.names("x") == []
    objects.delete("leader.json", if_match=etag)  # not ours any more: it stays
    assert objects.get("leader.json") == (b"2", renewed)
    objects.delete("leader.json", if_match=renewed)
    assert objects.get("leader.json") is None
    objects.delete("leader.json", if_match=renewed)  # absent is fine


def test_the_fence_refuses_writes_to_a_queue_not_led(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()

    def fence(queue: str) -> None:
        if queue == "other":
            raise NotLeader("not the leader of other")

    assert store.set_fence(fence) is True
    store.apply([PutNew("other", "a", job("a"))])  # create-only: never fenced (see below)
    outcomes = store.apply([Move("other", "a", P, State.CLAIMED),
                            PutCheckpoint("other", "a", b'{"at": 1}'),
                            PutNew(Q, "a", job("a"))])
    assert isinstance(outcomes[0], NotLeader) and isinstance(outcomes[1], NotLeader)
    assert outcomes[2] is None
    assert store.request_stats()["fenced"] == 2
    store.set_fence(None)
    assert store.find("other", "a") == [P] and store.find(Q, "a") == [P]
    assert store.read_checkpoint("other", "a") is None


def test_a_create_only_write_is_not_fenced(open_s3: Callable[..., S3Store]) -> None:
    """Creating a job is safe from any writer (the server refuses it when the key exists):
    a pipeline hands jobs over into a queue another daemon leads this way."""
    store = open_s3()

    def fence(queue: str) -> None:
        raise NotLeader(f"not the leader of {queue}")

    store.set_fence(fence)
    assert store.apply([PutNew("other", "a", job("a"), check_other_states=False)]) == [None]
    outcome = store.apply([PutNew("other", "a", job("b"), check_other_states=False)])[0]
    assert outcome is not None and outcome.code == "exists"
    store.set_fence(None)
    assert store.find("other", "a") == [P]


# -- deadlines, retries, errors ----------------------------------------------------------------


def test_a_silent_server_costs_the_deadline(open_s3: Callable[..., S3Store],
                                            proxies: Callable[..., FaultProxy],
                                            s3_server: SeaweedServer) -> None:
    proxy = proxies(s3_server.endpoint, delay=1.0, delay_s=4.0)
    store = open_s3(timeout=1.0, endpoint_url=proxy.endpoint)
    with pytest.raises(StoreUnavailable, match="did not answer within 1s"):
        store.read(Q, P, "a")
    result = store.apply([PutNew(Q, "a", job("a"), check_other_states=False)])
    assert isinstance(result[0], StoreUnavailable)
    assert store.request_stats()["timeouts"] >= 2  # the read, the create (its probe first)


def test_throttling_and_resets_are_tried_again_and_counted(
        open_s3: Callable[..., S3Store], proxies: Callable[..., FaultProxy],
        s3_server: SeaweedServer) -> None:
    proxy = proxies(s3_server.endpoint, slowdown=1.0)
    store = open_s3(endpoint_url=proxy.endpoint)
    with pytest.raises(StoreUnavailable, match="SlowDown"):
        store.read(Q, P, "a")
    stats = Counter(store.request_stats())
    assert stats["requests"] == ATTEMPTS and stats["retries"] == ATTEMPTS - 1
    # Some of each fault, one op at a time (the proxy's faults are drawn in a fixed order).
    proxy.rates.update(slowdown=0.06, error=0.06, reset=0.06)
    before = store.request_stats()["retries"]
    ids = [f"j{n:02d}" for n in range(40)]
    for job_id in ids:
        store.put_new(Q, job_id, job(job_id), check_other_states=False)
    proxy.rates.update(slowdown=0, error=0, reset=0)
    assert store.ids(Q, P) == ids
    faults = proxy.counts["slowdown"] + proxy.counts["error"] + proxy.counts["reset"]
    assert faults > ATTEMPTS and proxy.counts["reset"] > 0
    assert store.request_stats()["retries"] - before == faults - ATTEMPTS


def test_errors_say_what_to_do(open_s3: Callable[..., S3Store], s3_server: SeaweedServer,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    missing = open_s3(url="s3://no-such-bucket-ckptd/p")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-ckptd' does not exist"):
        missing.read(Q, P, "a")
    with pytest.raises(StoreError, match="refused the credentials"):
        open_s3(secret="wrong").read(Q, P, "a")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    nobody = S3Store(s3_server.url(), storage_options={"endpoint_url": s3_server.endpoint})
    try:
        with pytest.raises(StoreError, match="no AWS credentials"):
            nobody.read(Q, P, "a")
    finally:
        nobody.close()


# -- the settings ------------------------------------------------------------------------------


def test_s3fs_style_options_map_onto_obstore() -> None:
    setup = obstore_setup("jobs", {"key": "k", "secret": "s", "token": "t",
                                   "client_kwargs": {"region_name": "eu-west-1",
                                                     "endpoint_url": "http://minio.lan:9000"},
                                   "config_kwargs": {"s3": {"addressing_style": "virtual"},
                                                     "retries": {"max_attempts": 9}},
                                   "use_listings_cache": False, "conditional_put": "etag"},
                          timeout=8.0, concurrency=16)
    # virtual-hosted: the bucket is in the host name (obstore takes the endpoint as it is)
    assert setup.config == {"access_key_id": "k", "secret_access_key": "s",
                            "session_token": "t", "region": "eu-west-1",
                            "endpoint": "http://jobs.minio.lan:9000",
                            "aws_endpoint_url_s3": "http://jobs.minio.lan:9000",
                            "virtual_hosted_style_request": True, "conditional_put": "etag"}
    assert setup.client_options["allow_http"] is True
    assert setup.client_options["pool_max_idle_per_host"] == "24"
    assert setup.credentials is None
    with pytest.raises(NotHonoured, match="client_kwargs proxies"):
        obstore_setup("jobs", {"client_kwargs": {"proxies": {}}}, timeout=8.0,
                      concurrency=16)


def test_a_profile_gives_credentials_and_region(open_s3: Callable[..., S3Store],
                                                s3_server: SeaweedServer, tmp_path: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    credentials.write_text(f"[ckptd]\naws_access_key_id = {ACCESS_KEY}\n"
                           f"aws_secret_access_key = {SECRET_KEY}\n")
    config.write_text(f"[profile ckptd]\nregion = {REGION}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    store = S3Store(s3_server.url(), storage_options={"profile": "ckptd",
                                                     "endpoint_url": s3_server.endpoint})
    try:
        assert store.client == "obstore"
        store.put_new(Q, "a", job("a"))
        store.forget_prefetched()
        assert store.read(Q, P, "a") == job("a")
    finally:
        store.close()


def test_what_obstore_cannot_honour_goes_through_s3fs(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3(config_kwargs={"proxies": {}})
    assert store.client == "s3fs"
    store.put_new(Q, "a", job("a"))
    store.move(Q, "a", P, C)
    assert store.find(Q, "a") == [C]
    assert open_s3(virtual_hosted_style_request=False).client == "obstore"
    with pytest.raises(ValueError, match="s3_client"):
        open_s3(s3_client="boto")
