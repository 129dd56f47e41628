"""Priorities with real processes: lower runs first, FIFO within one priority, and aging
(the starvation rule) lets a waiting job through a flood of more urgent ones.

The rules (the order of the lines, aging, with and without it) are checked on a fake clock in
tests/unit/test_priorities.py; these runs prove a worker sees that order."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file, records, wait_for_workers
from tests.procs import REPO, Processes, base_env

Q = "work"


def started(log: Path) -> list[str]:
    """Job ids in the order their handlers started (one worker, one slot: claim order)."""
    rows = sorted((float(r[-1]), r[2]) for r in records(log, "start") if r[1] == Q)
    return [job_id for _, job_id in rows]


@pytest.mark.slow
def test_urgent_jobs_go_before_the_rest_fifo_within_a_priority(procs: Processes,
                                                                tmp_path: Path) -> None:
    daemon = procs.daemon()
    log = tmp_path / "runs"
    procs.worker(daemon, Q, "sleepy", concurrency=1, env={"TEST_LOG": str(log),
                                                            "SLEEP": "0.3"})
    with daemon.client() as client:
        normal = [client.submit(Q, {"n": n}, priority=5) for n in range(60)]
        wait_for(lambda: started(log), timeout=30, message="the first job to start")
        urgent = [client.submit(Q, {"urgent": n}, priority=0) for n in range(10)]
        wait_for(lambda: set(urgent) <= set(started(log)), timeout=30,
                 message="the urgent jobs to start")
        order = started(log)
        first = order.index(urgent[0])
        # The ten ran one after the other, in the order they were submitted, and no job of
        # priority 5 started in between (one slot: starts are claims, in order).
        assert order[first:first + 10] == urgent
        before = order[:first]
        assert before == normal[:len(before)]  # FIFO within priority 5
        after = wait_for(lambda: order_after(log, first + 10), timeout=10)
        assert after == normal[len(before):len(before) + len(after)]
        listed = ls_pending(daemon.control)
        # In dispatch order: what was still pending when ls ran, the last of the normal jobs
        # (the worker went on meanwhile, so how many is a matter of timing).
        assert listed and listed == normal[-len(listed):]


def test_a_new_queue_s_first_jobs_run_in_the_order_they_were_submitted(
        procs: Processes, tmp_path: Path) -> None:
    """The jobs written into a queue's pending/ before the daemon watched it are listed, and
    they run first in, first out like the rest (the folder's own order is the file
    system's: tmpfs lists the newest first)."""
    daemon = procs.daemon()
    log = tmp_path / "runs"
    procs.worker(daemon, Q, "sleepy", env={"TEST_LOG": str(log), "SLEEP": "0"})
    wait_for_workers(daemon)
    with daemon.client() as client:
        ids = client.submit_many(Q, [{"n": n} for n in range(20)])  # a queue not there yet
        client.wait_many(Q, ids, timeout=60)
    assert started(log) == ids


def order_after(log: Path, position: int) -> list[str]:
    order = started(log)
    return order[position:position + 3] if len(order) >= position + 3 else []


def ls_pending(control: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "ls", Q,
                           "pending"], capture_output=True, text=True, env=base_env(),
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.slow
def test_ls_lists_pending_jobs_in_dispatch_order_on_the_store(tmp_path: Path) -> None:
    root = str(tmp_path / "store")

    def ckptd(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "ckptd", "--root", root, *args],
                              capture_output=True, text=True, env=base_env(), cwd=REPO,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    late = ckptd("submit", Q, '{"n": "late"}', "--priority", "-9", "--delay", "1h").strip()
    low = ckptd("submit", Q, '{"n": 1}', "--priority", "5").strip()
    plain = ckptd("submit", Q, '{"n": 2}').strip()
    urgent = ckptd("submit", Q, '{"n": 3}', "--priority", "-3").strip()
    plain2 = ckptd("submit", Q, '{"n": 4}').strip()
    assert ckptd("ls", Q, "pending").split() == [urgent, plain, plain2, low, late]


@pytest.mark.slow
def test_aging_lets_a_waiting_job_through_a_flood(procs: Processes, tmp_path: Path) -> None:
    """priority_aging = 0.2s: a priority-5 job submitted into a flood of priority-0 jobs
    (submitted twice as fast as they run) runs once it has waited 5 x 0.2 s longer than
    the oldest priority-0 job still waiting, while the flood goes on; without aging it would
    wait for the whole flood to drain (shown on a fake clock in tests/unit/
    test_priorities.py, with the exact bound)."""
    env = config_file(tmp_path, f'[queues.{Q}]\npriority_aging = "0.2s"\n')
    daemon = procs.daemon(env=env)
    log = tmp_path / "runs"
    worker = procs.worker(daemon, Q, "sleepy", concurrency=1,
                          env={"TEST_LOG": str(log), "SLEEP": "0.05"})
    stop = threading.Event()

    def flood() -> None:
        with daemon.client() as client:
            while not stop.is_set():
                client.submit(Q, {"flood": True})
                time.sleep(0.025)  # the scenario's pace: 40/s, the worker runs about 20/s

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        wait_for(lambda: len(records(log, "start")) >= 10, timeout=30,
                 message="the flood running ahead of the worker")
        with daemon.client() as client:
            waiting = client.submit(Q, {"waiting": True}, priority=5)
        # Without aging the flood, still going, would hold it back until the timeout.
        wait_for(lambda: records(log, "start", waiting), timeout=60,
                 message="the waiting job to start while the flood goes on")
        with daemon.client() as client:
            status = client.status(Q)["queues"][Q]
    finally:
        stop.set()
        thread.join()
    # Aging let it through (a less urgent line before a more urgent one), not a drained
    # queue: status counts each such dispatch.
    assert status["priorities"]["aged"] >= 1
    daemon.kill()
    worker.kill()  # its daemon is gone: a clean stop would wait for answers' acks
