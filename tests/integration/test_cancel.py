"""Cancelling a running job reaches its worker at once: the handler sees ckptd.Cancelled at
its next checkpoint or progress (or reads job.cancelled), and one that does neither is
stopped by force after the worker's grace period. The job ends in failed/ with reason
"cancelled", explain says who cancelled it and when, and the handler never runs it again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.core.timefmt import parse_iso
from tests.helpers import wait_for
from tests.integration.worker_helpers import alive, records, wait_for_workers
from tests.procs import REPO, DaemonProcess, Processes, base_env, job_files

Q = "c"


def ckptd(daemon: DaemonProcess, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ckptd", "--connect", daemon.control, *args],
                         capture_output=True, text=True, cwd=REPO, env=base_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def cancel_when_running(daemon: DaemonProcess, log: Path, job_id: str) -> dict[str, object]:
    """Cancel the job from the CLI once its handler runs; return its failed/ file."""
    wait_for(lambda: records(log, "start", job_id), timeout=30, message="the handler to start")
    assert ckptd(daemon, "cancel", Q, job_id).strip()
    wait_for(lambda: job_id in job_files(daemon.root, Q, "failed"), timeout=10,
             message="the job to be in failed/")
    return job_files(daemon.root, Q, "failed")[job_id]


def never_again(daemon: DaemonProcess, log: Path, job_id: str, handler_payload: object) -> None:
    """Run one more job through the same worker, then check the cancelled one ran once."""
    with daemon.client(timeout=10) as client:
        after = client.submit(Q, handler_payload)
        assert client.wait(Q, after, timeout=60) == "done"
    assert len(records(log, "start", job_id)) == 1, "the handler ran the cancelled job again"


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_a_job_that_checkpoints_stops_within_a_second_of_its_cancel(
        procs: Processes, tmp_path: Path, pool: str) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    handler = "async_tick" if pool == "async" else "tick"  # the async pool runs async def
    procs.worker(daemon, Q, handler, extra=["--pool", pool], env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"every": 0.1, "seconds": 60})
    failed = cancel_when_running(daemon, log, job_id)
    error = failed["last_error"]
    assert isinstance(error, dict)
    assert error["type"] == "Cancelled" and "(--connect)" in error["by"], error
    assert failed["history"][-1]["outcome"] == "cancelled"  # type: ignore[index]
    wait_for(lambda: records(log, "stopped", job_id), timeout=10,
             message="the handler to stop")
    [stopped] = records(log, "stopped", job_id)
    assert stopped[4] == "Cancelled" and stopped[6] == "True", stopped  # and job.cancelled
    took = float(stopped[5]) - parse_iso(error["at"])
    assert took < 1.0, f"the handler stopped {took:.2f}s after the cancel"
    explained = ckptd(daemon, "explain", Q, job_id)
    assert f"cancelled by {error['by']} at {error['at']}" in explained, explained
    never_again(daemon, log, job_id, {"every": 0.01, "seconds": 0.05})


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_job_that_never_checkpoints_is_stopped_within_the_grace_period(
        procs: Processes, tmp_path: Path, pool: str) -> None:
    log = tmp_path / "runs.log"
    daemon = procs.daemon()
    procs.worker(daemon, Q, "deaf", extra=["--pool", pool, "--grace-period", "1s"],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    # A thread is stopped between two bytecodes (this one naps); a child is killed, even in
    # the middle of one long time.sleep.
    style = "naps" if pool == "thread" else "block"
    with daemon.client(timeout=10) as client:
        job_id = client.submit(Q, {"style": style, "seconds": 60})
    failed = cancel_when_running(daemon, log, job_id)
    error = failed["last_error"]
    assert isinstance(error, dict) and error["type"] == "Cancelled"
    cancelled_at = parse_iso(error["at"])
    if pool == "thread":
        wait_for(lambda: records(log, "stopped", job_id), timeout=10,
                 message="the handler to stop")
        [stopped] = records(log, "stopped", job_id)
        assert stopped[4] == "Cancelled"
        took = float(stopped[5]) - cancelled_at
    else:
        child = int(records(log, "start", job_id)[0][4])
        wait_for(lambda: not alive(child), timeout=10, message="the child to be killed")
        import time
        took = time.time() - cancelled_at  # an upper bound: when the test saw it gone
    assert 0.9 <= took < 2.5, f"stopped {took:.2f}s after the cancel (grace period 1s)"
    never_again(daemon, log, job_id, {"seconds": 0.05})
