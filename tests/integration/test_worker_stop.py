"""Stopping a worker, as people do: SIGTERM and Ctrl-C of ``ckptd worker`` and of a script
that calls ``Worker(...).run()``, twice in a row, and while it is still connecting.

A first signal lets the running job finish (its answer confirmed) and exits 0 without a
traceback; a second one gives the running job back to the daemon, which runs it again at
once without counting the attempt, and says so; a signal while connecting stops at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import HANDLERS_DIR, Processes, base_env, free_port, job_files

Q = "s"

SCRIPT = """
import sys
import handlers
from ckptd import Worker

Worker(sys.argv[1], "s", handlers.sleepy, name="py").run()
print("run() returned", flush=True)
"""


def python_worker(tmp_path: Path, control: str, log: Path, sleep: float
                  ) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "run_worker.py"
    script.write_text(SCRIPT)
    output = tmp_path / "python-worker.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), control], stdout=out,
                                stderr=subprocess.STDOUT, cwd=HANDLERS_DIR,
                                env=base_env(TEST_LOG=str(log), SLEEP=str(sleep)))
    return proc, output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_run_from_python_finishes_its_job_on_a_signal(
        procs: Processes, tmp_path: Path, signum: signal.Signals) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    proc, output = python_worker(tmp_path, daemon.control, log, sleep=1.5)
    try:
        wait_for_workers(daemon)
        with daemon.client(timeout=10) as client:
            job_id = client.submit(Q, {"n": 1})
        wait_for(lambda: records(log, "start", job_id), timeout=30,
                 message="the job to start")
        proc.send_signal(signum)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = output.read_text()
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said
    assert records(log, "end", job_id), "the running job finished"
    assert job_id in job_files(daemon.root, Q, "done"), "and its answer reached the daemon"
    for line in ("connecting to the daemon", "serving s", "stopping: finishing 1 running",
                 "stopped: 1 done, 0 failed", "run() returned"):
        assert line in said, f"{line!r} not in the output:\n{said}"


def test_a_second_ctrl_c_gives_the_running_job_back(procs: Processes, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    worker = procs.worker(daemon, Q, "sleepy", env={"TEST_LOG": str(log), "SLEEP": "60"})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"n": 1}, max_attempts=1)
    wait_for(lambda: records(log, "start", job_id), timeout=30, message="the job to start")
    worker.proc.send_signal(signal.SIGINT)
    wait_for(lambda: "stopping: finishing 1 running" in worker.log(), timeout=10,
             message="the worker to say it stops")
    stopped_at = time.monotonic()
    worker.proc.send_signal(signal.SIGINT)
    assert worker.proc.wait(10) == 0
    assert time.monotonic() - stopped_at < 5.0
    said = worker.log()
    assert "1 given back to the daemon" in said and job_id in said, said
    assert "Traceback" not in said
    # Back in pending at once (not after its 60 s lease), its attempt not lost.
    pending = job_files(daemon.root, Q, "pending")
    assert job_id in pending, "the job is back in pending/"
    assert pending[job_id]["attempts"] == 1 and pending[job_id]["max_attempts"] == 2
    assert pending[job_id]["history"][-1]["outcome"] == "given back"
    procs.worker(daemon, Q, "sleepy", env={"TEST_LOG": str(log), "SLEEP": "0"})
    with daemon.client(timeout=10) as client:
        assert client.wait(Q, job_id, timeout=60) == "done"


def test_ctrl_c_while_connecting_stops_at_once(procs: Processes, tmp_path: Path) -> None:
    nobody = f"tcp://127.0.0.1:{free_port()}"
    worker = procs.worker(nobody, Q, "sleepy")
    wait_for(lambda: "connecting to the daemon" in worker.log(), timeout=30,
             message="the worker to start connecting")
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGINT)
    code = worker.proc.wait(10)
    took = time.monotonic() - sent
    said = worker.log()
    assert code == 130, said
    assert took < 2.0, f"it took {took:.1f}s to stop"
    assert "stopped while connecting" in said and "no job was taken" in said, said
    assert "Traceback" not in said
    assert os.path.exists(worker.log_path)
