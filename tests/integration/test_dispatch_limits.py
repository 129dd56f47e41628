"""max_running and rate with real processes, across a kill -9 of the daemon and at run time.

The rules themselves (how many claims the gate lets through, by the limit, the rate, after a
restart, after a change) are checked on the engine and a fake clock in
tests/unit/test_gate.py; these tests prove the wiring: a config file, a limits file, the
CLI, the watcher and a restart of a real daemon.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ckptd.core.timefmt import parse_iso
from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file, records, wait_for_workers
from tests.procs import REPO, Processes, base_env, job_files

Q = "supplier"


def claimed_now(root: str) -> int:
    try:
        return sum(1 for n in os.listdir(os.path.join(root, Q, "claimed")) if n.endswith(".json"))
    except FileNotFoundError:
        return 0


class Sampler(threading.Thread):
    """Counts the files in claimed/ every 10 ms; keeps the largest count."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.most = 0
        self.samples = 0
        self.at_limit = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            count = claimed_now(self.root)
            self.most = max(self.most, count)
            self.samples += 1
            self.at_limit += count == 3
            time.sleep(0.01)


@pytest.mark.slow
def test_max_running_bounds_claims_over_every_worker_and_a_restart(procs: Processes,
                                                                   tmp_path: Path) -> None:
    env = config_file(tmp_path, f'[queues.{Q}]\nmax_running = 3\n')
    daemon = procs.daemon(env=env, lease="3s")
    for _ in range(3):
        procs.worker(daemon, Q, "sleepy", concurrency=4, env={"SLEEP": "0.1"})
    with daemon.client() as client:
        client.submit_many(Q, [{"n": n} for n in range(120)])
    sampler = Sampler(daemon.root)
    sampler.start()
    try:
        wait_for(lambda: len(job_files(daemon.root, Q, "done")) >= 40, timeout=60,
                 message="40 jobs done")
        daemon.kill()  # jobs stay claimed; the new daemon adopts them and keeps the limit
        daemon.start()
        with daemon.client() as client:
            assert client.status(Q)["queues"][Q]["limits"]["max_running"] == 3
            assert client.wait_many(Q, None, timeout=120)["open"] == 0
    finally:
        sampler.stop.set()
        sampler.join()
    assert sampler.samples > 100
    assert sampler.most <= 3, f"{sampler.most} jobs were claimed at once"
    # The limit was used, not just respected (a loaded machine and the kill and restart
    # take part of the time: a broken limit of 1 or 2 would give 0 here).
    assert sampler.at_limit > sampler.samples / 8


def claim_times(root: str) -> list[float]:
    return sorted(parse_iso(job["history"][0]["claimed"])
                  for job in job_files(root, Q, "done").values())


@pytest.mark.slow
def test_rate_holds_the_dispatch_rate_across_a_restart(procs: Processes, tmp_path: Path
                                                       ) -> None:
    """At most the rate (plus the bucket, a tenth of a second's worth) claimed in any second,
    before and after a kill -9: an upper bound, which a loaded machine cannot make fail.
    That the rate is also used is checked on a fake clock (tests/unit/test_gate.py)."""
    env = config_file(tmp_path, f'[queues.{Q}]\nrate = "50/s"\n')
    daemon = procs.daemon(env=env)
    for _ in range(2):
        procs.worker(daemon, Q, "echo", concurrency=8)
    with daemon.client() as client:
        client.submit_many(Q, [{"n": n} for n in range(400)])
    wait_for(lambda: len(job_files(daemon.root, Q, "done")) >= 150, timeout=60,
             message="150 claims (three seconds at 50/s)")
    daemon.kill()
    restarted = time.time()
    daemon.start()
    wait_for(lambda: len([t for t in claim_times(daemon.root) if t >= restarted]) >= 100,
             timeout=60, message="100 claims after the restart")
    times = claim_times(daemon.root)
    for start in (times[0], restarted):
        for second in range(2):
            count = sum(1 for t in times if start + second <= t < start + second + 1)
            assert count <= 50 * 1.1 + 5, f"{count} claims in second {second} from {start}"


@pytest.mark.slow
def test_limit_changes_at_run_time_and_holds_in_its_file(procs: Processes, tmp_path: Path
                                                         ) -> None:
    """``ckptd limit`` over the control socket writes limits.json and bounds claims at once;
    ``--root limit --reset`` removes it and the watcher lifts the limit. (That the file holds
    across a restart is checked on the engine: tests/unit/test_gate.py.)"""
    daemon = procs.daemon()
    log = tmp_path / "runs"
    procs.worker(daemon, Q, "sleepy", concurrency=6, env={"SLEEP": "0.2",
                                                          "TEST_LOG": str(log)})
    wait_for_workers(daemon)  # the queue exists once its worker is there (or with --create)

    def ckptd(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                              text=True, env=base_env(), cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = ckptd("--connect", daemon.control, "limit", Q, "--max-running", "2")
    assert "max_running 2" in out
    assert (Path(daemon.root) / Q / "limits.json").exists()
    with daemon.client() as client:
        client.submit_many(Q, [{"n": n} for n in range(40)])
    sampler = Sampler(daemon.root)
    sampler.start()
    try:
        wait_for(lambda: len(records(log, "start")) >= 8, timeout=60,
                 message="eight jobs run two at a time")
        assert sampler.most == 2, f"{sampler.most} claimed at once: six slots, limit two"
        ckptd("--root", daemon.root, "limit", Q, "--reset")  # the watcher sees it go
        wait_for(lambda: claimed_now(daemon.root) > 2, timeout=10,
                 message="more claims once the limit is gone")
    finally:
        sampler.stop.set()
        sampler.join()
