"""Priorities on a bucket: the priority is in the pending object's name
(``pending/<id>,p<N>.json``), and the daemon reads pending objects ahead of their claims in
the background. Both must use that name: a read of ``<id>.json`` for a job named
``<id>,p5.json`` finds nothing, and its claim failed. Real daemon, worker and SeaweedFS.

The order is checked where the daemon decides it (its dispatch order, ``ls``): a worker
holds the jobs it was sent (its credits) and runs them as they came."""

from __future__ import annotations

import os
from typing import Any

from ckptd.core.states import State
from tests.bucket.helpers import where_jobs_are
from tests.bucket.test_bucket_daemon import FAST, Q
from tests.helpers import wait_for
from tests.procs import Processes, read_lines
from tests.s3server import SeaweedServer


def _serve(procs: Processes, server: SeaweedServer, url: str) -> Any:
    return procs.daemon(root=url, env=server.env(), **FAST)


def test_jobs_with_priorities_run_most_urgent_first_and_all_end_done(
        procs: Processes, s3_server: SeaweedServer) -> None:
    url = s3_server.url()
    first = _serve(procs, s3_server, url)
    levels = {n: (5 if n % 3 == 0 else -2 if n % 3 == 1 else 0) for n in range(30)}
    with first.client(timeout=30) as client:
        ids = {client.submit(Q, {"n": n}, priority=level): level
               for n, level in levels.items()}
    # A restart: the new daemon learns the priorities from the listing's names alone.
    first.kill()
    second = _serve(procs, s3_server, url)
    with second.client(timeout=30) as client:
        order = [ids[job_id] for state, job_id in client.ls(Q, State.PENDING)]
    assert order == [-2] * 10 + [0] * 10 + [5] * 10, f"the daemon's dispatch order: {order}"
    log = os.path.join(procs.tmp, "runs.log")
    env = {**s3_server.env(), "TEST_LOG": log}
    procs.worker(second, Q, "echo", concurrency=1, env=env)
    wait_for(lambda: len(read_lines(log)) >= len(ids), timeout=120, interval=0.2,
             message="every job run once")
    ran = [line.split()[2] for line in read_lines(log)]
    assert sorted(ran) == sorted(ids), "each job ran, none twice"
    assert ids[ran[0]] == -2, "the first job run is one of the most urgent"
    wait_for(lambda: where_jobs_are(s3_server, url, Q) == {i: ["done"] for i in ids},
             timeout=60, interval=0.5, message="every job in done/, and only there")
