"""The process and async pools with real daemons and workers: children recycled after N jobs
or over a memory limit, a child killed mid-job failing only its own attempt, and an event
loop holding many jobs in flight. (How much faster CPU-bound work runs in processes than in
threads is measured by bench/pools.py, not asserted here.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import Processes, job_files

Q = "p"


def test_max_jobs_per_child_recycles_the_children(procs: Processes, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    procs.worker(daemon, Q, "pid", concurrency=2,
                 extra=["--pool", "process", "--max-jobs-per-child", "5"],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        ids = client.submit_many(Q, [{"sleep": 0.01}] * 20)
        client.wait_many(Q, ids, timeout=120)
    done = job_files(daemon.root, Q, "done")
    assert set(done) == set(ids) and all(done[i]["attempts"] == 1 for i in ids)
    pids = [r[4] for r in records(log, "pid")]
    assert len(pids) == 20
    per_child = {p: pids.count(p) for p in set(pids)}
    assert len(per_child) >= 4, f"20 jobs ran in {len(per_child)} child(ren): {per_child}"
    assert max(per_child.values()) <= 5, per_child
    assert str(os.getpid()) not in per_child


def test_max_memory_per_child_recycles_a_child_that_grew(procs: Processes,
                                                        tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    worker = procs.worker(daemon, Q, "hoard",
                          extra=["--pool", "process", "--max-memory-per-child", "64MiB"],
                          env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        for _ in range(3):  # each keeps 64 MiB for good: over the limit after its job
            job_id = client.submit(Q, {"mib": 64})
            assert client.wait(Q, job_id, timeout=60) == "done"
            assert client.result(Q, job_id) == {"held_mib": 64}, "a fresh child each time"
    pids = [r[4] for r in records(log, "pid")]
    assert len(set(pids)) == 3, pids
    assert "over --max-memory-per-child" in worker.log()


def test_a_child_killed_mid_job_fails_only_its_attempt(procs: Processes,
                                                      tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon(backoff_base="0.1s")
    procs.worker(daemon, Q, "pid", concurrency=2, extra=["--pool", "process"],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        ids = client.submit_many(Q, [{"sleep": 1.5}] * 4)
        wait_for(lambda: len(records(log, "pid")) >= 2, timeout=30,
                 message="two jobs to run")
        victim = records(log, "pid")[0]
        os.kill(int(victim[4]), signal.SIGKILL)
        client.wait_many(Q, ids, timeout=120)
    done = job_files(daemon.root, Q, "done")
    assert set(done) == set(ids), "every job ended in done/"
    killed = done[victim[2]]
    assert killed["attempts"] == 2, "the killed attempt failed and was retried"
    assert killed["history"][0]["outcome"] == "error"
    assert "killed by SIGKILL" in killed["history"][0]["error"]
    others = [done[i] for i in ids if i != victim[2]]
    assert all(job["attempts"] == 1 for job in others), "the other jobs were not disturbed"
    pids = {r[4] for r in records(log, "pid")}
    assert len(pids) == 3, "the dead child was replaced, the other one kept"


def test_an_async_worker_holds_a_hundred_jobs_in_flight(procs: Processes,
                                                       tmp_path: Path) -> None:
    """200 jobs that each await asyncio.sleep(0.5), concurrency 100, one worker: < 3 s."""
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    procs.worker(daemon, Q, "async_nap", concurrency=100, env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=30) as client:
        ids = client.submit_many(Q, [{"sleep": 0.5}] * 200)
        client.wait_many(Q, ids, timeout=120)
    assert set(job_files(daemon.root, Q, "done")) == set(ids)
    starts = sorted(float(r[4]) for r in records(log, "start"))
    ends = sorted(float(r[4]) for r in records(log, "end"))
    assert len(starts) == len(ends) == 200
    took = ends[-1] - starts[0]
    assert took < 3.0, f"200 jobs of 0.5 s took {took:.2f}s with 100 in flight"
    in_flight = max(sum(1 for s in starts if s <= t) - sum(1 for e in ends if e <= t)
                    for t in starts)
    assert in_flight >= 50, f"at most {in_flight} jobs were in flight at once"


def test_an_async_handler_runs_in_a_child_process_too(procs: Processes, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    procs.worker(daemon, Q, "async_steps", extra=["--pool", "process"],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"steps": 3, "sleep": 0.01})
        assert client.wait(Q, job_id, timeout=60) == "done"
        assert client.result(Q, job_id) == {"steps": 3}
    assert [r[4] for r in records(log, "step", job_id)] == ["0", "1", "2"]
