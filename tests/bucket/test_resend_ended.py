"""A ``submit_many`` of jobs that have all ended, sent again on a bucket 20 ms away (issue 21).

On a bucket a create of an id that is already done costs five requests (the create-only PUT,
a look in each other folder, the delete of the copy it just made). A client that hears
nothing within half a second sends its request again (then every 2 s, on a fresh
connection); when one pass over the ids took longer than that, each resend redid every
create, every answer went to a connection the client had left, and it never heard one.
Meanwhile a listing that saw a create's short-lived copy in pending/ filed it as a new job
that no worker could claim. Here, a real daemon and workers, and SeaweedFS behind a proxy
that adds 20 ms to every request: the resent request is answered with every id, no job is
made twice, and nothing is left pending, also after a listing that began after the answer.
"""

from __future__ import annotations

from typing import Any

import pytest

from ckptd.core import jobs
from ckptd.core.errors import JobExists
from ckptd.daemon.engine.creating import Creating
from tests.bucket.faultproxy import FaultProxy
from tests.bucket.helpers import prefix_of, where_jobs_are
from tests.helpers import wait_for
from tests.procs import Processes
from tests.s3server import SeaweedServer

Q = "work"
N = 400  # ids in the request: one pass over them takes longer than the client's resends
SETTINGS = {"heartbeat": "0.5s", "lease": "30s", "poll_interval": "0.3s",
            "rescan_interval": "1s", "leader_lease": "10s"}


def test_a_create_that_found_the_job_ended_answers_its_resends() -> None:
    now = [0.0]
    creating = Creating(clock=lambda: now[0])
    creating.begin(Q, "a")
    creating.end(Q, "a", JobExists(Q, "a", "done"))
    assert creating.found_ended(Q, "a") == "done"
    assert (Q, "a") not in creating  # no longer in flight
    now[0] = 1_000.0
    assert creating.found_ended(Q, "a") is None, "kept a while, not for ever"
    creating.begin(Q, "b")
    creating.end(Q, "b", None)  # created: the index answers for it from now on
    assert creating.found_ended(Q, "b") is None
    creating.end(Q, "c", JobExists(Q, "c", "failed"))
    creating.forget(Q, "c")  # purged: a submit of it creates it again
    assert creating.found_ended(Q, "c") is None


def queue_view(client: Any) -> dict[str, Any]:
    view: dict[str, Any] = client.status(Q)["queues"][Q]
    return view


@pytest.mark.slow
def test_a_resent_submit_many_of_ended_jobs_is_answered_once_each(
        procs: Processes, s3_server: SeaweedServer) -> None:
    proxy = FaultProxy(s3_server.endpoint).start()
    try:
        proxy.delay_s = 0.02
        proxy.rates["delay"] = 1.0  # a real region's latency, on every request
        env = {**s3_server.env(), "CKPTD_S3_ENDPOINT_URL": proxy.endpoint}
        daemon = procs.daemon(root=s3_server.url(), env=env, **SETTINGS)
        for _ in range(2):
            procs.worker(daemon, Q, "noop", env=env)
        client = daemon.client(timeout=120)
        ids = [f"order-{n}" for n in range(N)]
        payloads = [{"n": n} for n in range(N)]
        assert client.submit_many(Q, payloads, ids=ids) == ids
        client.wait_many(Q, ids, timeout=300)
        before = queue_view(client)
        assert before["done"] == N and before["pending"] == 0

        # Every job has ended: the same request again, as a client that heard nothing.
        again = daemon.client(timeout=120)
        assert again.submit_many(Q, payloads, ids=ids) == ids, "answered, with every id"
        again.close()

        # A file put in pending/ by hand is found only by a listing: once it has run, a
        # listing that began after the answer has been taken in.
        url = daemon.root
        s3 = s3_server.client()
        data = jobs.encode(jobs.new_job(Q, "marker", {"n": -1}, 1_795_000_000.0,
                                        max_attempts=3))
        s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix_of(url)}/{Q}/pending/marker.json",
                      Body=data)
        s3.close()
        wait_for(lambda: queue_view(client)["done"] == N + 1, timeout=120, interval=0.3,
                 message="the marker job done")
        after = queue_view(client)
        client.close()
    finally:
        proxy.stop()
    where = where_jobs_are(s3_server, url, Q)
    twice = [i for i in ids if where.get(i) != ["done"]]
    assert not twice, f"{len(twice)} job(s) not once in done/: {twice[:5]}"
    assert after["pending"] == 0 and after["claimed"] == 0, (
        f"left pending: {after['pending']}, claimed: {after['claimed']}")
    assert after["submitted"] == before["submitted"] + 1, (
        f"{after['submitted'] - before['submitted'] - 1} job(s) counted as submitted again")
