"""Priorities with real processes: lower runs first, FIFO within one priority, and aging
(the starvation rule) lets a waiting job through a flood of more urgent ones."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file, records
from tests.procs import REPO, DaemonProcess, Processes, base_env

Q = "work"


def started(log: Path) -> list[str]:
    """Job ids in the order their handlers started (one worker, one slot: claim order)."""
    rows = sorted((float(r[-1]), r[2]) for r in records(log, "start") if r[1] == Q)
    return [job_id for _, job_id in rows]


def test_urgent_jobs_go_before_the_rest_fifo_within_a_priority(procs: Processes,
                                                                tmp_path: Path) -> None:
    daemon = procs.daemon()
    log = tmp_path / "runs"
    procs.worker(daemon, Q, "sleepy", concurrency=1, env={"TEST_LOG": str(log),
                                                            "SLEEP": "0.3"})
    with daemon.client() as client:
        normal = [client.submit(Q, {"n": n}, priority=5) for n in range(1000)]
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
        waiting = [i for i in normal if i not in set(started(log))]
        listed = ls_pending(daemon.control)
        # Jobs may start while ls runs (a second or so on a loaded machine): a prefix of
        # the waiting ones, which the listing may or may not have seen in pending/.
        began = sum(1 for i in waiting if i in set(started(log)))
        assert any(listed == waiting[k:k + len(listed)] for k in range(began + 1)), listed


def order_after(log: Path, position: int) -> list[str]:
    order = started(log)
    return order[position:position + 3] if len(order) >= position + 3 else []


def ls_pending(control: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "ls", Q,
                           "pending"], capture_output=True, text=True, env=base_env(),
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


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


def test_aging_lets_a_waiting_job_through_a_flood(procs: Processes, tmp_path: Path) -> None:
    """priority_aging = 0.2s: a priority-5 job submitted into a flood of priority-0 jobs
    (submitted twice as fast as they run) runs once it has waited 5 x 0.2 s longer than
    the oldest priority-0 job still waiting, while the flood goes on; without aging it would
    wait for the whole flood to drain (a negative control below shows that)."""
    for aging, expect_through in (("0.2s", True), ("0s", False)):
        here = tmp_path / aging
        here.mkdir()
        env = config_file(here, f'[queues.{Q}]\npriority_aging = "{aging}"\n')
        daemon = procs.daemon(root=str(here / "store"), env=env)
        log = here / "runs"
        worker = procs.worker(daemon, Q, "sleepy", concurrency=1,
                              env={"TEST_LOG": str(log), "SLEEP": "0.05"})
        stop = threading.Event()

        def flood(daemon: DaemonProcess = daemon, stop: threading.Event = stop) -> None:
            with daemon.client() as client:
                while not stop.is_set():
                    client.submit(Q, {"flood": True})
                    time.sleep(0.025)  # 40/s, the worker runs about 20/s

        thread = threading.Thread(target=flood)
        thread.start()
        try:
            time.sleep(1.0)
            with daemon.client() as client:
                waiting = client.submit(Q, {"waiting": True}, priority=5)
            submitted = time.time()
            ran = wait_for_start(log, waiting, timeout=7.0 if expect_through else 4.0)
            with daemon.client() as client:
                aged = client.status(Q)["queues"][Q]["priorities"]["aged"]
        finally:
            stop.set()
            thread.join()
        if expect_through:
            assert ran is not None and ran - submitted < 6.0, "the job waited out the flood"
            assert aged >= 1  # status shows that aging let it through
        else:  # strict priorities: the flood (still going) starves it
            assert ran is None and aged == 0
        daemon.kill()
        worker.kill()  # its daemon is gone: a clean stop would wait for answers' acks


def wait_for_start(log: Path, job_id: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in records(log, "start", job_id):
            return float(row[-1])
        time.sleep(0.05)
    return None
