"""kill -9 the daemon at random moments while jobs flow; count what was lost and redone.

Producers retry a submit until it is acknowledged (their ids make a retry harmless), so
every job the test submits is eventually "accepted"; the promise is that every accepted job
ends in done/ exactly once as a file, whatever the kills. Executions are counted from the
workers' own log: a job can run more than once (at-least-once), and the duplicates are
printed and bounded by what workers can hold when a kill lands.
"""

from __future__ import annotations

import collections
import os
import random
import sys
import time
from pathlib import Path

import pytest

from ckptd.core.errors import DaemonUnavailable
from ckptd.core.ids import new_id
from tests.helpers import wait_for
from tests.procs import DaemonProcess, Processes, count_files, job_files, read_lines

HERE = os.path.dirname(os.path.abspath(__file__))


def submit_acked(daemon: DaemonProcess, queue: str, ids: list[str]) -> None:
    """Submit a chunk, retrying (same ids) until the daemon acknowledges it."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with daemon.client(timeout=3) as client:
                client.submit_many(queue, [{"i": i} for i in ids], ids=ids)
            return
        except DaemonUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # then the same ids again


def kill_and_restart(daemon: DaemonProcess, rng: random.Random, max_delay: float) -> None:
    time.sleep(rng.uniform(0.0, max_delay))  # the scenario: a kill at a random instant
    daemon.kill()
    daemon.start()


def all_done(daemon: DaemonProcess, queue: str, n: int) -> bool:
    return count_files(daemon.root, queue, "done") >= n


def run_scenario(procs: Processes, daemon: DaemonProcess, log: str, n: int, kills_during: int,
                 kills_after: int, seed: int, max_delay: float = 0.4) -> tuple[list[str], int]:
    rng = random.Random(seed)
    for tag in ("a", "b"):
        procs.worker(daemon, "c", "noop", prefetch=8, env={"TEST_LOG": log, "WORKER_TAG": tag})
    ids = [new_id() for _ in range(n)]
    chunks = [ids[i:i + 100] for i in range(0, n, 100)]
    kill_after_chunk = set(rng.sample(range(len(chunks)), kills_during))
    kills = 0
    for number, chunk in enumerate(chunks):
        submit_acked(daemon, "c", chunk)
        if number in kill_after_chunk:
            kill_and_restart(daemon, rng, max_delay)
            kills += 1
    for _ in range(kills_after):
        if all_done(daemon, "c", n):
            break
        kill_and_restart(daemon, rng, max_delay)
        kills += 1
    return ids, kills


@pytest.mark.slow
def test_daemon_killed_at_random_loses_no_job(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(lease="3s", heartbeat="0.5s", backoff_base="0.1s")
    n = 2000
    ids, kills = run_scenario(procs, daemon, log, n, kills_during=4, kills_after=3, seed=7)
    wait_for(lambda: all_done(daemon, "c", n), timeout=180, interval=0.2,
             message="every job to be done")
    done = job_files(daemon.root, "c", "done")
    assert set(done) == set(ids), f"lost: {len(set(ids) - set(done))}"
    for state in ("pending", "claimed", "failed"):
        assert count_files(daemon.root, "c", state) == 0, state
    runs = collections.Counter(line.split()[2] for line in read_lines(log))
    duplicates = sum(count - 1 for count in runs.values())
    assert set(runs) == set(ids)
    print(f"\n{n} jobs, {kills} daemon kills: 0 lost, {duplicates} duplicate executions "
          f"({max(runs.values())} runs at most for one job)")
    assert kills >= 5
    # A kill can only cost what workers held at that moment: 2 workers x (1 + 8 prefetch).
    assert duplicates <= kills * 2 * 9


@pytest.mark.slow
def test_negative_control_a_daemon_that_acks_early_loses_jobs(procs: Processes,
                                                             tmp_path: Path) -> None:
    """The same check against a daemon that acknowledges before writing finds a loss."""
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(program=[os.path.join(HERE, "unsafe_daemon.py")],
                          lease="3s", heartbeat="0.5s")
    assert daemon.proc is not None and sys.executable in daemon.proc.args[0]
    n = 600
    # Kill right after an acknowledgement: the unsafe daemon has not written that chunk yet.
    ids, _ = run_scenario(procs, daemon, log, n, kills_during=3, kills_after=0, seed=11,
                          max_delay=0.0)
    with daemon.client(timeout=10) as client:
        client.wait_many("c", None, timeout=120)
    lost = set(ids) - set(job_files(daemon.root, "c", "done"))
    print(f"\nnegative control: {len(lost)} acknowledged job(s) lost by the unsafe daemon")
    assert lost, "the unsafe daemon should have lost acknowledged jobs"
