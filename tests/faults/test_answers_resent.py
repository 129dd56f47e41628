"""An answer or a checkpoint that dies with the daemon is sent again by the worker.

The daemon is frozen (SIGSTOP) while the worker sends it a message, which then sits unread
in the daemon's socket; the daemon is killed (-9) with it and restarted. The worker keeps
every answer and checkpoint until the daemon confirms it and sends it again when it
reconnects, so the finished job is done within seconds, not run again after its lease (60 s
here), and a handler waiting in ``checkpoint()`` goes on instead of waiting 60 s for it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import DaemonProcess, Processes, job_files

Q = "r"


def unread_bytes(port: int) -> int:
    """Bytes received on 127.0.0.1:``port`` that its process has not read (Linux)."""
    total = 0
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.split(":")[1], 16) == port and state == "01":
                total += int(queues.split(":")[1], 16)
    return total


def freeze_until_sent(daemon: DaemonProcess, sent: object) -> None:
    """Freeze the daemon; wait until ``sent()`` holds and the worker's message has reached
    the frozen daemon's socket unread; then kill the daemon and start it again."""
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        wait_for(sent, timeout=30, message="the handler to get there")  # type: ignore[arg-type]
        wait_for(lambda: unread_bytes(daemon.dispatch_port) > 0, timeout=10,
                 message="the worker's message to reach the frozen daemon")
    finally:
        daemon.kill()
    daemon.start()


def test_a_done_answer_lost_with_the_daemon_is_sent_again(procs: Processes,
                                                        tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    # heartbeats rarer than the test: the only message in flight is the answer
    daemon = procs.daemon(lease="60s", heartbeat="20s")
    procs.worker(daemon, Q, "sleepy", env={"TEST_LOG": str(log), "SLEEP": "0.5"})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"n": 1})
    wait_for(lambda: records(log, "start", job_id), timeout=30, message="the job to start")
    freeze_until_sent(daemon, lambda: records(log, "end", job_id))
    wait_for(lambda: job_id in job_files(daemon.root, Q, "done"), timeout=15,
             message="the job to be done (not after its 60 s lease)")
    assert len(records(log, "start", job_id)) == 1, "the finished job did not run again"
    assert job_files(daemon.root, Q, "done")[job_id]["attempts"] == 1


@pytest.mark.parametrize("handler", ["steps", "async_steps"])
def test_a_checkpoint_lost_with_the_daemon_is_sent_again(procs: Processes, tmp_path: Path,
                                                       handler: str) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon(lease="60s", heartbeat="20s")
    procs.worker(daemon, Q, handler, env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"steps": 2, "sleep": 0.5})
    wait_for(lambda: records(log, "resume", job_id), timeout=30, message="the job to start")
    # Frozen before the first checkpoint is sent: it reaches a daemon that dies with it.
    freeze_until_sent(daemon, lambda: records(log, "step", job_id))
    wait_for(lambda: job_id in job_files(daemon.root, Q, "done"), timeout=15,
             message="the job to be done (its checkpoint confirmed after the restart)")
    assert [r[3:] for r in records(log, "resume", job_id)] == [["1", "0"]], \
        "one attempt, never restarted"
    assert [r[4] for r in records(log, "step", job_id)] == ["0", "1"]


def test_after_a_restart_the_worker_names_its_running_job_at_once(procs: Processes,
                                                                 tmp_path: Path) -> None:
    """The worker sees its connection come back and says hello with the attempts it runs,
    so the restarted daemon knows who has the job within seconds (heartbeats come every
    20 s here), instead of waiting for the lease to run out."""
    log = tmp_path / "runs.log"
    daemon = procs.daemon(lease="60s", heartbeat="20s")
    worker = procs.worker(daemon, Q, "sleepy", env={"TEST_LOG": str(log), "SLEEP": "60"})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"n": 1})

    def lease() -> dict[str, object]:
        with daemon.client(timeout=5) as client:
            return client.show(Q, job_id).get("lease") or {}

    # Right after a heartbeat: the next one is 20 s away.
    wait_for(lambda: lease().get("last_heartbeat"), timeout=30, interval=0.1,
             message="a heartbeat for the job")
    daemon.kill()
    daemon.start()
    assert wait_for(lambda: lease().get("worker"), timeout=5, interval=0.1,
                    message="the restarted daemon to know the job's worker") == "w1"
    worker.proc.send_signal(signal.SIGTERM)  # twice: give the job back, do not wait for it
    wait_for(lambda: "stopping: finishing" in worker.log(), timeout=10,
             message="the worker to stop")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
