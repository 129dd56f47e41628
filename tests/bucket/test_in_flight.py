"""Many requests in flight from one daemon on a bucket; its loop waits on none of them.

The pure parts first: a round's ops split into groups (a job's ops together and in their
order), and a resent submit that joins the create in flight. Then a real daemon behind a
proxy that holds every request to the bucket: it keeps answering ``ping`` while a group is
held (the loop never waits on the store), and a ``submit_many`` sent twice with the same
ids, as a client resends one, makes each job once and answers both with the same ids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from ckptd.core.errors import JobExists, StoreUnavailable
from ckptd.core.states import State
from ckptd.daemon.engine.creating import Creating
from ckptd.daemon.engine.groups import split
from ckptd.daemon.engine.index import Txn
from ckptd.store.base import Move, Op, PutCheckpoint, PutNew
from tests.bucket.faultproxy import FaultProxy
from tests.bucket.helpers import where_jobs_are
from tests.helpers import wait_for
from tests.procs import Processes
from tests.s3server import SeaweedServer

Q = "work"
SETTINGS = {"heartbeat": "0.5s", "lease": "30s", "poll_interval": "0.3s",
            "rescan_interval": "3s", "leader_lease": "10s"}


# -- the pure parts ----------------------------------------------------------------------------


def test_a_round_is_split_into_groups_that_keep_each_jobs_ops_together() -> None:
    txn = Txn()
    order: list[Op] = []
    for n in range(40):
        job = f"j{n % 20}"  # 20 jobs, two ops each, interleaved
        op: Op = (PutNew(Q, job, b"{}") if n < 20 else
                  Move(Q, job, State.PENDING, State.CLAIMED))
        txn.add(op, None)
        order.append(op)
    parts = split(txn, 8)
    assert [len({op.job_id for op in part.ops}) for part in parts] == [8, 8, 4]
    for part in parts:
        for job in {op.job_id for op in part.ops}:
            mine = [op for op in part.ops if op.job_id == job]
            assert mine == [op for op in order if op.job_id == job]  # all of them, in order
    assert split(txn, 40) == [txn]
    small = Txn()
    small.add(PutCheckpoint(Q, "a", b"{}"), None)
    assert split(small, 8) == [small]


def test_a_resent_submit_joins_the_create_in_flight() -> None:
    creating = Creating()
    answers: list[Any] = []
    assert not creating.join(Q, "a", "return", answers.append)  # nothing in flight
    creating.begin(Q, "a")
    assert creating.join(Q, "a", "return", answers.append)
    assert creating.join(Q, "a", "error", answers.append)
    assert answers == [], "no answer before the store answered"
    creating.end(Q, "a", None)
    assert answers[0] == {"id": "a", "created": False, "state": "pending"}
    assert isinstance(answers[1], JobExists)
    creating.begin(Q, "b")
    assert creating.join(Q, "b", "return", answers.append)
    creating.end(Q, "b", StoreUnavailable("the bucket did not answer"))
    assert isinstance(answers[2], StoreUnavailable), "a failed create made nothing"
    assert not creating.join(Q, "b", "return", answers.append)  # over


# -- a real daemon behind a proxy that holds its requests -------------------------------------


@pytest.fixture
def held(procs: Processes, s3_server: SeaweedServer
         ) -> Any:
    """A daemon whose bucket requests go through a proxy (no delay yet), leading ``Q``."""
    proxy = FaultProxy(s3_server.endpoint).start()
    daemon = procs.daemon(root=s3_server.url(), env={**s3_server.env(),
                                                    "CKPTD_S3_ENDPOINT_URL": proxy.endpoint},
                          **SETTINGS)
    client = daemon.client(timeout=60)
    client.submit(Q, {"warm": True})
    client.close()
    try:
        yield proxy, daemon
    finally:
        proxy.stop()


def pings_while(daemon: Any, busy: Callable[[], bool]) -> int:
    """Ping the daemon until ``busy()`` is false; return how many pings it answered."""
    client = daemon.client(timeout=5)
    answered = 0
    try:
        while busy():
            client.ping()
            answered += 1
    finally:
        client.close()
    return answered


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    return thread, result


@pytest.mark.slow
def test_the_loop_answers_while_a_group_is_held(held: Any) -> None:
    proxy, daemon = held
    proxy.delay_s = 1.0
    proxy.rates["delay"] = 1.0  # every request to the bucket waits a second
    client = daemon.client(timeout=60)
    try:
        before = proxy.counts["requests"]
        thread, result = in_thread(lambda: client.submit_many(Q, [{"n": n}
                                                                 for n in range(50)]))
        wait_for(lambda: proxy.counts["requests"] > before, timeout=30,
                 message="the group's first request at the proxy")
        answered = pings_while(daemon, thread.is_alive)
        thread.join()
    finally:
        client.close()
    assert len(result[0]) == 50
    # Each request is held a second; a loop that waited for its group would have answered
    # at most one ping meanwhile.
    assert answered >= 5, f"{answered} ping(s) answered while the group was held"


@pytest.mark.slow
def test_a_resent_submit_many_makes_each_job_once(held: Any,
                                                  s3_server: SeaweedServer) -> None:
    proxy, daemon = held
    proxy.delay_s = 0.02
    proxy.rates["delay"] = 1.0  # a real region's latency
    ids = [f"order-{n}" for n in range(300)]
    payloads = [{"n": n} for n in range(300)]
    first, resent = daemon.client(timeout=120), daemon.client(timeout=120)
    try:
        one, got_one = in_thread(lambda: first.submit_many(Q, payloads, ids=ids))
        wait_for(lambda: proxy.counts["requests"] > 0, timeout=30)
        two, got_two = in_thread(lambda: resent.submit_many(Q, payloads, ids=ids))
        answered = pings_while(daemon, lambda: one.is_alive() or two.is_alive())
        one.join()
        two.join()
    finally:
        first.close()
        resent.close()
    assert got_one[0] == ids and got_two[0] == ids
    url = daemon.root
    where = where_jobs_are(s3_server, url, Q)
    assert all(where[i] == ["pending"] for i in ids), "each job made once, pending"
    assert answered >= 1
