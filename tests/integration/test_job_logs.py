"""Jobs' own logs with real daemons and workers: job.log and logging records per attempt in
every pool, kept across a worker's kill -9 and its retry, followed live by ``ckptd logs -f``,
bounded, in the failed record, and removed with the job by retention."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptd.core.states import State
from tests.helpers import wait_for
from tests.integration.worker_helpers import records, wait_for_workers
from tests.procs import REPO, Processes, base_env, job_files

Q = "chat"


def _log_files(root: str, job_id: str) -> dict[str, str]:
    folder = Path(root) / Q / "logs" / job_id
    if not folder.is_dir():
        return {}
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _ckptd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                          text=True, env=base_env(), cwd=REPO, timeout=60)


def test_lines_logged_before_a_worker_kill_stay_beside_the_retry(procs: Processes,
                                                                 tmp_path: Path) -> None:
    runs = tmp_path / "runs.log"
    daemon = procs.daemon(lease="2s", backoff_base="0.05s")
    first = procs.worker(daemon, Q, "extras_handlers:chatty", env={"TEST_LOG": str(runs)})
    wait_for_workers(daemon)
    with daemon.client() as client:
        job_id = client.submit(Q, {"block": True})
        # The first attempt logged and now hangs; its lines reach the store, then -9.
        wait_for(lambda: "a logging record of attempt 1" in _log_files(daemon.root, job_id)
                 .get("1.log", ""), timeout=30, message="attempt 1's lines in the store")
        first.kill()
        procs.worker(daemon, Q, "extras_handlers:chatty", env={"TEST_LOG": str(runs)})
        assert client.wait(Q, job_id, timeout=60) == "done"
    files = _log_files(daemon.root, job_id)
    assert set(files) == {"1.log", "2.log"}
    assert "INFO job: attempt 1 begins" in files["1.log"]
    assert "INFO extras: a logging record of attempt 2" in files["2.log"]
    assert [int(r[2]) for r in records(runs, "logged")] == [1, 2]
    shown = _ckptd("--root", daemon.root, "logs", Q, job_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.index("--- attempt 1 ---") < text.index("attempt 1 begins") < \
        text.index("--- attempt 2 ---") < text.index("attempt 2 begins")


def test_logs_follow_shows_a_running_jobs_lines_within_a_second(procs: Processes) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, Q, "extras_handlers:chatty")
    wait_for_workers(daemon)
    with daemon.client() as client:
        job_id = client.submit(Q, {"ticks": 12, "every": 0.5})
    follower = subprocess.Popen(
        [sys.executable, "-u", "-m", "ckptd", "--connect", daemon.control, "logs", Q, job_id,
         "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env(),
        cwd=REPO)
    try:
        assert follower.stdout is not None
        delays = []
        for _ in range(40):
            line = follower.stdout.readline()
            if not line:
                break
            seen = time.time()
            if " INFO job: tick " in line:
                stamp = line.split()[0]  # when the handler logged it (UTC, ms)
                logged = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) \
                    - time.timezone + float("0" + stamp[19:-1])
                delays.append(seen - logged)
        assert follower.wait(30) == 0
        assert len(delays) == 12, delays
        # Lines show up while the job runs, each within a second of being logged (the
        # median: one late line on a loaded machine is a hiccup, not the design).
        assert sorted(delays)[len(delays) // 2] < 1.0, delays
        assert "the job is done" in (follower.stderr.read() if follower.stderr else "")
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


@pytest.mark.parametrize("pool", ["process", "async"])
def test_every_pool_keeps_the_lines_of_each_job(procs: Processes, pool: str) -> None:
    daemon = procs.daemon()
    handler = "extras_handlers:chatty_async" if pool == "async" else "extras_handlers:chatty"
    procs.worker(daemon, Q, handler, concurrency=3, extra=["--pool", pool])
    wait_for_workers(daemon)
    with daemon.client() as client:
        ids = client.submit_many(Q, [{"n": n} for n in range(6)])
        client.wait_many(Q, ids, timeout=60)

    def logged() -> bool:
        return all("a logging record of attempt 1" in _log_files(daemon.root, i).get(
            "1.log", "") for i in ids)
    wait_for(logged, timeout=10, message="every job's log")
    for job_id in ids:
        text = _log_files(daemon.root, job_id)["1.log"]
        assert text.count("attempt 1 begins") == 1  # its own lines, no one else's
        if pool == "async":
            assert "a record from a thread of asyncio.to_thread" in text


def test_a_failed_record_holds_the_last_lines_and_the_log_is_bounded(
        procs: Processes) -> None:
    daemon = procs.daemon(job_log_limit="2KiB")
    procs.worker(daemon, Q, "extras_handlers:chatty", env={"CKPTD_JOB_LOG_LIMIT": "2KiB"})
    wait_for_workers(daemon)
    with daemon.client() as client:
        job_id = client.submit(Q, {"ticks": 200, "every": 0, "fail": True}, max_attempts=1)
        assert client.wait(Q, job_id, timeout=60) == "failed"
    error = job_files(daemon.root, Q, "failed")[job_id]["last_error"]
    assert error["log_tail"][-1].endswith("more line(s) dropped")
    def with_note() -> str:
        text = _log_files(daemon.root, job_id).get("1.log", "")
        return text if "more line(s) dropped" in text else ""
    text = wait_for(with_note, timeout=10, message="the log's last line")
    assert len(text.encode()) <= 2048 + 1024
    explained = _ckptd("--root", daemon.root, "explain", Q, job_id)
    assert "The last lines of its own log" in explained.stdout
    assert "more line(s) dropped" in explained.stdout


def test_retention_removes_the_logs_with_the_job(procs: Processes) -> None:
    daemon = procs.daemon(keep_done="3s", retention_interval="0.2s")
    procs.worker(daemon, Q, "extras_handlers:chatty")
    wait_for_workers(daemon)
    with daemon.client() as client:
        job_id = client.submit(Q, {})
        assert client.wait(Q, job_id, timeout=60) == "done"
    logs = Path(daemon.root) / Q / "logs" / job_id
    wait_for(logs.exists, timeout=2, message="the job's logs")  # kept 3 s: they were there
    # The job's file goes first, its logs right after (in the same sweep).
    wait_for(lambda: not (Path(daemon.root) / Q / "done" / f"{job_id}.json").exists()
             and not logs.exists(), timeout=30, message="retention to remove the job and logs")
    assert os.path.isdir(Path(daemon.root) / Q / "logs")


def test_a_purge_removes_the_logs_with_the_jobs(procs: Processes) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, Q, "extras_handlers:chatty")
    wait_for_workers(daemon)
    with daemon.client() as client:
        ids = client.submit_many(Q, [{}, {}])
        client.wait_many(Q, ids, timeout=60)
        wait_for(lambda: all(_log_files(daemon.root, i) for i in ids), timeout=10)
        assert client.purge(Q, State.DONE) == 2
    wait_for(lambda: not any(_log_files(daemon.root, i) for i in ids), timeout=10,
             message="the purged jobs' logs to go")

