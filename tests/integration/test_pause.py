"""Pause and resume a queue, by hand (touch / rm of <root>/Q/paused) and with the CLI.

Real daemon, real workers: while the file is there no job of the queue is claimed (other
queues go on, submits are accepted), claims start again at once when it goes, and a daemon
killed while the queue is paused finds it paused when it comes back. The rule itself (what
the gate lets through, paused and resumed, across a restart) is checked on the engine and a
fake clock in tests/unit/test_gate.py; these prove the file, the watcher, the CLI and the
kill -9.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptd.core.timefmt import parse_iso
from tests.helpers import wait_for
from tests.integration.worker_helpers import records
from tests.procs import REPO, Processes, base_env, job_files

Q, OTHER = "work", "other"
MARGIN = 0.5  # the promise is 100 ms; a loaded 2-core CI machine keeps this margin
PAUSED_FOR = 2.0  # how long the tests watch a paused queue stay idle


def starts(log: Path, queue: str) -> list[float]:
    """When each job of ``queue`` started in a handler."""
    return sorted(float(r[-1]) for r in records(log, "start") if r[1] == queue)


def claims(root: str, queue: str) -> list[float]:
    """When each job of ``queue`` was claimed, from the store: the claims in the history of
    finished jobs, and the time each file in claimed/ was renamed there."""
    return sorted(when for when, _ in claims_of(root, queue))


def claims_of(root: str, queue: str) -> list[tuple[float, str]]:
    """(when, where it was seen) of each claim of ``queue``, for :func:`claims` and for the
    failure messages."""
    found = []
    for state in ("done", "failed"):
        for job_id, job in job_files(root, queue, state).items():
            found += [(parse_iso(h["claimed"]), f"{state}/{job_id} {h}")
                      for h in job.get("history", []) if "claimed" in h]
    folder = Path(root) / queue / "claimed"
    for path in folder.glob("*.json") if folder.exists() else []:
        try:
            found.append((path.stat().st_ctime, f"claimed/{path.name} {path.read_text()}"))
        except FileNotFoundError:
            continue  # finished meanwhile: it is in done/ now
    return found


def claimed_after(root: str, queue: str, since: float) -> list[str]:
    """What was claimed after ``since``, said for a failure message."""
    return [f"{when:.3f} {what}" for when, what in sorted(claims_of(root, queue))
            if when > since]


def ckptd(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ckptd", *args], capture_output=True,
                          text=True, env=base_env(), cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _busy(procs: Processes, tmp_path: Path) -> tuple[object, Path]:
    daemon = procs.daemon(lease="5s")
    log = tmp_path / "runs"
    env = {"TEST_LOG": str(log), "SLEEP": "0.05"}
    for _ in range(2):
        procs.worker(daemon, [Q, OTHER], "sleepy", concurrency=2, env=env)
    with daemon.client() as client:
        client.submit_many(Q, [{"n": n} for n in range(400)])
        client.submit_many(OTHER, [{"n": n} for n in range(600)])
    wait_for(lambda: len(starts(log, Q)) >= 20, timeout=60, message="workers busy on Q")
    return daemon, log


@pytest.mark.slow
def test_a_paused_file_stops_claims_of_its_queue_only(procs: Processes, tmp_path: Path
                                                      ) -> None:
    daemon, log = _busy(procs, tmp_path)
    paused = Path(daemon.root) / Q / "paused"
    paused.write_text("maintenance of the supplier API\n")  # as echo ... > paused would
    touched = time.time()
    # The scenario: the paused queue stays idle for a while, and nothing is claimed.
    time.sleep(MARGIN + PAUSED_FOR)
    with daemon.client() as client:  # submits are still accepted while paused
        late = client.submit(Q, {"n": "late"}, priority=-1)  # first after the resume
        status = client.status(Q)["queues"][Q]
    assert status["paused"]["reason"] == "maintenance of the supplier API"
    during = claimed_after(daemon.root, Q, touched + MARGIN)
    assert during == [], f"{len(during)} job(s) of the paused queue were claimed: {during}"
    other = [t for t in claims(daemon.root, OTHER)
             if touched + MARGIN < t < touched + MARGIN + 2]
    assert other, "the other queue stopped too"
    os.unlink(paused)
    removed = time.time()
    wait_for(lambda: [t for t in claims(daemon.root, Q) if t > removed], timeout=10,
             message="claims of the resumed queue")
    first = min(t for t in claims(daemon.root, Q) if t > removed)
    assert first - removed < MARGIN, f"claims resumed {first - removed:.3f}s after rm"
    with daemon.client() as client:
        assert client.wait(Q, late, timeout=60) == "done"
        assert client.status(Q)["queues"][Q]["paused"] is None


@pytest.mark.slow
def test_a_pause_by_the_cli_survives_a_daemon_kill(procs: Processes, tmp_path: Path) -> None:
    daemon, log = _busy(procs, tmp_path)
    ckptd("--connect", daemon.control, "pause", Q, "--reason", "by the CLI")
    paused_at = time.time()
    assert (Path(daemon.root) / Q / "paused").read_text().strip() == "by the CLI"
    daemon.kill()
    daemon.start()
    restarted = time.time()
    wait_for(lambda: [t for t in claims(daemon.root, OTHER) if t > restarted], timeout=30,
             message="the other queue claimed after the restart")
    time.sleep(PAUSED_FOR)  # the scenario: the paused queue stays idle after the restart
    # New claims start in a handler. (The store's claim times would not do here: a job that
    # was claimed before the kill and is adopted by the new daemon carries the restart as its
    # claim time in its history.)
    during = [t for t in starts(log, Q) if t > paused_at + MARGIN]
    assert during == [], f"{len(during)} job(s) of the paused queue started after the " \
        f"restart (paused at {paused_at:.3f}, restarted at {restarted:.3f}): " \
        f"{claimed_after(daemon.root, Q, paused_at + MARGIN)}"
    assert [t for t in claims(daemon.root, OTHER) if t > paused_at + MARGIN], \
        "the other queue did not go on after the restart"
    with daemon.client() as client:
        assert client.status(Q)["queues"][Q]["paused"]["reason"] == "by the CLI"
    ckptd("--root", daemon.root, "resume", Q)  # on the store: the watcher sees the rm
    resumed = time.time()
    wait_for(lambda: [t for t in claims(daemon.root, Q) if t > resumed], timeout=10,
             message="claims after resume")
    first = min(t for t in claims(daemon.root, Q) if t > resumed)
    assert first - resumed < MARGIN + 0.5  # includes the CLI process's own exit
