"""Time limits with real daemons and workers: a handler that runs over its limit is asked
to stop (ckptd.TimeLimit), and stopped by force a grace period later if it does not; the
attempt fails and its retry resumes from the last checkpoint.

The limit comes from the job (``submit --time-limit``, ``Client.submit(time_limit=...)``),
its queue (``[queues.NAME] time_limit``) or the worker (``--time-limit``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file, records, wait_for_workers
from tests.procs import REPO, Processes, base_env, job_files

Q = "t"


def _submit_cli(control: str, payload: str, *options: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "submit", Q,
                          payload, *options], capture_output=True, text=True, cwd=REPO,
                         env=base_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_a_handler_that_sleeps_past_its_time_limit_is_stopped_and_resumes(
        procs: Processes, tmp_path: Path, pool: str) -> None:
    """A handler that sleeps 10 s under a 1 s limit ends its attempt within 2 s with a time
    limit error; the checkpoint it saves when it gets TimeLimit is where the retry resumes."""
    log = tmp_path / "runs.log"
    env = config_file(tmp_path, f'[queues.{Q}]\ntime_limit = "1s"\n') if pool == "process" \
        else {}
    daemon = procs.daemon(backoff_base="0.1s", env=env)
    handler = "async_sleep_after_checkpoint" if pool == "async" else "sleep_after_checkpoint"
    procs.worker(daemon, Q, handler, extra=["--pool", pool],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    # In threads a stop lands between two bytecodes: this handler sleeps in short naps. A
    # child process gets a signal, which ends even one long time.sleep(10).
    style = "naps" if pool == "thread" else "block"
    with daemon.client(timeout=10) as client:
        if pool == "thread":  # the limit of the job itself, from the client
            job_id = client.submit(Q, {"sleep": 10, "style": style}, time_limit=1.0)
        elif pool == "async":  # from the command line
            job_id = _submit_cli(daemon.control, '{"sleep": 10}', "--time-limit", "1s")
        else:  # the queue's, from the daemon's config file
            job_id = client.submit(Q, {"sleep": 10, "style": style})
        assert client.wait(Q, job_id, timeout=60) == "done"
    [start] = [r for r in records(log, "start", job_id) if r[3] == "1"]
    [stopped] = records(log, "stopped", job_id)
    assert stopped[4] == ("CancelledError" if pool == "async" else "TimeLimit"), stopped
    seconds = float(stopped[5]) - float(start[5])
    assert 0.9 <= seconds < 2.0, f"the attempt ran {seconds:.2f}s under a 1 s limit"
    assert not records(log, "slept", job_id), "the sleep was cut short"
    done = job_files(daemon.root, Q, "done")[job_id]
    assert done["result"] == {"resumed": {"step": 2}}, "the retry resumed from its checkpoint"
    first = done["history"][0]
    assert first["outcome"] == "error" and "over its time limit of 1" in first["error"], first
    assert done["attempts"] == 2


def test_a_process_pool_kills_a_handler_that_ignores_its_limit(procs: Processes,
                                                              tmp_path: Path) -> None:
    """A pure-Python busy loop that swallows TimeLimit is killed at the hard limit (limit +
    grace), and the next job runs in a fresh child; one that does not swallow it stops at
    the limit, and its child lives on."""
    log = tmp_path / "runs.log"
    daemon = procs.daemon(max_attempts="1")
    procs.worker(daemon, Q, "spin", extra=["--pool", "process", "--time-limit", "1s",
                                           "--grace-period", "1s"],
                 env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        stubborn = client.submit(Q, {"stubborn": True, "seconds": 60})
        assert client.wait(Q, stubborn, timeout=60) == "failed"
        failed = job_files(daemon.root, Q, "failed")[stubborn]
        error = failed["last_error"]
        assert error["type"] == "TimeLimit" and "child process was killed" in error["message"]
        assert [r[4] for r in records(log, "stop", stubborn)] == ["TimeLimit"], \
            "it was asked to stop first (and swallowed it)"
        history = failed["history"][0]
        from ckptd.core.timefmt import parse_iso
        ran = parse_iso(history["ended"]) - parse_iso(history["claimed"])
        assert 1.9 <= ran < 6.0, f"killed after {ran:.2f}s (limit 1s + grace 1s)"

        polite = client.submit(Q, {"seconds": 60})  # stops at the soft limit
        assert client.wait(Q, polite, timeout=60) == "failed"
        quick = client.submit(Q, {"seconds": 0.05})
        assert client.wait(Q, quick, timeout=60) == "done"
    killed_pid = records(log, "start", stubborn)[0][4]
    polite_pid = records(log, "start", polite)[0][4]
    quick_pid = records(log, "start", quick)[0][4]
    assert polite_pid != killed_pid, "the next job ran in a fresh child"
    assert quick_pid == polite_pid, "a child whose handler stopped when asked is kept"
    assert job_files(daemon.root, Q, "failed")[polite]["last_error"]["type"] == "TimeLimit"


def test_threads_write_off_a_stuck_slot_and_restart_when_half_are_stuck(
        procs: Processes, tmp_path: Path) -> None:
    """A thread blocked in one long C call cannot be stopped: at the hard limit its attempt
    ends, its slot is written off and the others go on; when half the slots are stuck the
    worker restarts itself."""
    log = tmp_path / "runs.log"
    daemon = procs.daemon(max_attempts="1")
    worker = procs.worker(daemon, Q, "deaf", concurrency=3,
                          extra=["--time-limit", "0.5s", "--grace-period", "0.5s"],
                          env={"TEST_LOG": str(log)})
    wait_for_workers(daemon)
    with daemon.client(timeout=10) as client:
        stuck = client.submit(Q, {"style": "block", "seconds": 30})
        assert client.wait(Q, stuck, timeout=30) == "failed"
        failed = job_files(daemon.root, Q, "failed")[stuck]
        assert "thread was written off" in failed["last_error"]["message"]
        from ckptd.core.timefmt import parse_iso
        history = failed["history"][0]
        ran = parse_iso(history["ended"]) - parse_iso(history["claimed"])
        # limit 0.5 s + grace 0.5 s + a last chance of 0.25 s, and slack for a busy machine
        assert ran < 3.0, f"the attempt ended {ran:.2f}s after its claim"
        assert "written off" in worker.log()
        others = [client.submit(Q, {"seconds": 0.05}) for _ in range(3)]
        for job_id in others:
            assert client.wait(Q, job_id, timeout=30) == "done", "the other slots go on"
        assert worker.log().count("connecting to the daemon") == 1
        second = client.submit(Q, {"style": "block", "seconds": 30})
        assert client.wait(Q, second, timeout=30) == "failed"
        wait_for(lambda: worker.log().count("connecting to the daemon") == 2, timeout=30,
                 message="the worker to restart itself")
        assert "stopping so that the worker restarts" in worker.log()
        after = client.submit(Q, {"seconds": 0.05})
        assert client.wait(Q, after, timeout=30) == "done"
    assert worker.alive()
