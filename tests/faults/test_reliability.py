"""Nothing lost, nothing stuck, nothing redone, around the core: two daemons on one root, a
full disk, a daemon restart under a producer and a worker, hand moves and the daemon's
figures, leftovers in tmp/. Real daemons and workers on 127.0.0.1, killed for real."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ckptd.client.client import Client
from ckptd.core.errors import DaemonUnavailable, SubmitUnconfirmed
from ckptd.core.explain import explain
from ckptd.daemon.engine.results import PREFETCH_MAX
from tests.helpers import wait_for
from tests.procs import REPO, Processes, base_env, count_files, job_files, read_lines

FAST = {"heartbeat": "0.5s", "backoff_base": "0.05s", "backoff_cap": "0.2s",
        "fsync": "never"}


def status_of(daemon: Any, queue: str) -> dict[str, Any]:
    with daemon.client(timeout=10) as client:
        return dict(client.status(queue)["queues"][queue])


def run_counts(log: str) -> collections.Counter[str]:
    """Runs per job id, from the workers' log (``run <queue> <id> <attempt> ...``)."""
    return collections.Counter(line.split()[2] for line in read_lines(log)
                               if line.startswith("run "))


# -- one daemon per local root ------------------------------------------------------------

def test_a_second_daemon_on_the_same_root_is_refused(procs: Processes) -> None:
    first = procs.daemon(**FAST)
    second = procs.daemon(start=False, **FAST)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(30) == 4  # in use: the root's lock
    log = second.log()
    assert "already leads the root" in log and f"pid {first.proc.pid}" in log  # type: ignore[union-attr]
    assert first.control in log, "the refusal says where the other daemon listens"
    assert first.alive()


@pytest.mark.slow
def test_two_daemons_never_share_a_root_and_nothing_is_lost_through_churn(
        procs: Processes, tmp_path: Path) -> None:
    """Jobs that go back and forth (Retry(delay=0) seven times each) while a second daemon
    keeps trying the same root and the first is killed and replaced: 0 lost."""
    log = str(tmp_path / "runs")
    settings = {**FAST, "fsync": "always", "max_attempts": "20"}
    first = procs.daemon(**settings)
    workers = [procs.worker(first, "q", "retry_now", concurrency=4, env={"TEST_LOG": log})
               for _ in range(2)]
    with first.client(timeout=30) as client:
        ids = client.submit_many("q", [{"retries": 7} for _ in range(300)])
    current = first
    for churn in range(10):
        rival = procs.daemon(start=False, **settings)
        rival.start(wait=False)
        assert rival.proc is not None and rival.proc.wait(30) == 4, rival.log()
        if churn % 3 == 2:  # the leader dies; a new one takes the root (same address)
            current.kill()
            current.start()
            for worker in workers:
                assert worker.alive()
        time.sleep(0.3)  # the scenario: a rival every 0.3 s while the jobs churn
    with Client([current.control], timeout=30) as client:
        client.wait_many("q", ids, timeout=240)
    done = job_files(current.root, "q", "done")
    assert sorted(done) == sorted(ids), "every accepted job is done, none lost"
    for state in ("pending", "claimed", "failed"):
        assert count_files(current.root, "q", state) == 0


# -- a full disk --------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 3 MiB tmpfs (mounting needs root: CI and these machines run tests as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path) -> None:
    """Write zeros into ``path`` until the disk is full (unbuffered: nothing left to flush)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 4096, 512):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                continue
    finally:
        os.close(fd)


def test_a_full_disk_then_freed_leaves_nothing_claimed_and_runs_nothing_twice(
        procs: Processes, small_disk: Path, tmp_path: Path) -> None:
    log = str(tmp_path / "runs")
    root = small_disk / "store"
    daemon = procs.daemon(root=str(root), lease="3s", **FAST)
    with daemon.client(timeout=30) as client:
        ids = client.submit_many("q", [{"pad": "x" * 2000} for _ in range(400)])
    ballast = small_disk / "ballast"
    fill(ballast)
    procs.worker(daemon, "q", "noop", concurrency=4, env={"TEST_LOG": log})
    # Answers cannot be written now; they wait, and nothing more is claimed meanwhile.
    wait_for(lambda: status_of(daemon, "q")["claimed"] > 0, timeout=30,
             message="jobs claimed before the disk is found full")
    wait_for(lambda: not daemon_store(daemon)["available"], timeout=30,
             message="the daemon to see the disk full")
    claimed_while_full = count_files(str(root), "q", "claimed")
    time.sleep(3.5)  # longer than the lease: nothing may expire into a second run
    assert count_files(str(root), "q", "claimed") == claimed_while_full, \
        "nothing more was claimed into the full disk"
    info = daemon_store(daemon)
    assert info["deferred_ops"] > 0 and "space" in (info["error"] or "")
    # explain (through the daemon) names the move that waits, for the jobs whose answer came.
    with daemon.client(timeout=10) as client:
        shown = [client.show("q", name.removesuffix(".json"))
                 for name in os.listdir(root / "q" / "claimed")]
    waiting = [s for s in shown if s.get("waiting_op")]
    assert waiting, "no claimed job shows its waiting move"
    assert waiting[0]["waiting_op"]["op"] == "move to done/"
    sentences = explain(waiting[0], time.time())
    assert any("waiting for the store" in s and "space" in s for s in sentences), sentences
    ballast.unlink()
    wait_for(lambda: count_files(str(root), "q", "claimed") == 0, timeout=10,
             message="no job left in claimed/ 10 s after space returns")
    with daemon.client(timeout=30) as client:
        client.wait_many("q", ids, timeout=120)
    assert count_files(str(root), "q", "done") == 400
    runs = run_counts(log)
    assert max(runs.values()) == 1, f"ran twice: {[i for i, n in runs.items() if n > 1][:5]}"
    # Claims before the disk was found full are bounded by what the worker may hold, twice:
    # the claims of the round whose answers found the disk full went out too.
    assert claimed_while_full <= 2 * (4 + PREFETCH_MAX)


def daemon_store(daemon: Any) -> dict[str, Any]:
    with daemon.client(timeout=10) as client:
        return dict(client.status()["daemon"]["store"])


# -- a daemon restart under a worker and a producer ---------------------------------------

def test_claimed_jobs_nobody_runs_come_back_within_seconds_after_a_restart(
        procs: Processes, tmp_path: Path) -> None:
    """The daemon and its worker die; a new daemon gives the claimed jobs back after a short
    grace for workers to say what they still run, not after a whole lease (60 s here)."""
    log = str(tmp_path / "runs")
    daemon = procs.daemon(lease="60s", heartbeat="1s", fsync="never")
    worker = procs.worker(daemon, "q", "sleepy", concurrency=2,
                          env={"TEST_LOG": log, "SLEEP": "30"})
    with daemon.client() as client:
        ids = client.submit_many("q", [{} for _ in range(2)])
    wait_for(lambda: count_files(daemon.root, "q", "claimed") == 2, timeout=30,
             message="both jobs running")
    daemon.kill()
    worker.kill()
    daemon.start()
    started = time.monotonic()
    procs.worker(daemon, "q", "echo", concurrency=2, env={"TEST_LOG": log})
    with daemon.client(timeout=30) as client:
        client.wait_many("q", ids, timeout=50)
    assert time.monotonic() - started < 30, "back within seconds, not after the 60 s lease"


def more(accepted: list[str], count: int) -> None:
    """Wait until the producer has had ``count`` more submits accepted."""
    mark = len(accepted)
    wait_for(lambda: len(accepted) >= mark + count, timeout=30,
             message=f"{count} more submits accepted")


PACE = 0.002  # seconds between a producer's submits


@pytest.mark.parametrize("direct", [False, True], ids=["through-the-daemon", "direct"])
def test_a_producer_rides_over_daemon_restarts(procs: Processes, direct: bool) -> None:
    """A client submitting one job at a time while the daemon is killed and restarted three
    times: every submit returns (the same job on a resend), none is lost; through the daemon,
    and writing into its store from its host (jobs written while no daemon runs are found)."""
    daemon = procs.daemon(**FAST)
    procs.worker(daemon, "q", "noop", concurrency=4)
    accepted: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            with Client(daemon.control, direct=direct) as client:
                while not stop.is_set():
                    accepted.append(client.submit("q", {"n": len(accepted)}))
                    # Paced (direct writes went at 20,000/s: 37,000 jobs for the workers to
                    # run after the restarts, over the wait's 120 s on a loaded machine).
                    time.sleep(PACE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        for _ in range(3):
            more(accepted, 50)
            daemon.kill()
            time.sleep(0.3)  # the scenario: down a moment while the producer goes on
            daemon.start()
        more(accepted, 50)
    finally:
        stop.set()
        producer.join(60)
    assert not errors, errors
    assert len(set(accepted)) == len(accepted), "a resent submit returns the same job"
    with daemon.client(timeout=30) as client:
        client.wait_many("q", accepted, timeout=120)
    assert set(job_files(daemon.root, "q", "done")) == set(accepted)


def test_a_submit_that_cannot_be_confirmed_says_so_with_its_id(procs: Processes) -> None:
    daemon = procs.daemon(**FAST)
    assert daemon.proc is not None
    try:
        with Client(daemon.control, timeout=1.5, direct=False) as client:
            assert client.ping()["pong"]  # connected
            daemon.proc.send_signal(19)  # SIGSTOP: the request goes out, nothing answers
            with pytest.raises(SubmitUnconfirmed) as info:
                client.submit("q", {"n": 1})
        [job_id] = info.value.ids
        assert job_id in str(info.value) and "--if-exists=return" in str(info.value)
    finally:
        daemon.proc.send_signal(18)  # SIGCONT
    with daemon.client() as client:  # resubmitting with that id is safe either way
        again = client.submit_job("q", {"n": 1}, job_id=job_id, if_exists="return")
    assert again.id == job_id
    with Client("tcp://127.0.0.1:9", timeout=1.5, direct=False) as nobody:  # nothing listens there
        with pytest.raises(DaemonUnavailable) as refused:
            nobody.submit("q", {})
    assert not isinstance(refused.value, SubmitUnconfirmed), "nothing was sent at all"


def test_a_dead_first_address_costs_a_second_not_the_timeout(procs: Processes) -> None:
    daemon = procs.daemon(**FAST)
    started = time.monotonic()
    with Client(["tcp://127.0.0.1:9", daemon.control], timeout=10) as client:
        assert client.ping()["pong"]
    assert time.monotonic() - started < 5, "the dead address cost the whole timeout"


def test_the_dispatch_port_answers_a_control_request_with_where_to_go(
        procs: Processes) -> None:
    daemon = procs.daemon(**FAST)
    dispatch = f"tcp://127.0.0.1:{daemon.dispatch_port}"
    done = subprocess.run([sys.executable, "-m", "ckptd", "--connect", dispatch, "status"],
                          capture_output=True, text=True, timeout=60, env=base_env(),
                          cwd=REPO)
    assert done.returncode == 5, done.stderr
    assert "dispatch port" in done.stderr and daemon.control in done.stderr


# -- the daemon's figures follow the folders ----------------------------------------------

def test_hand_moves_and_store_commands_show_in_the_daemons_figures(
        procs: Processes, tmp_path: Path) -> None:
    daemon = procs.daemon(rescan_interval="1s", max_attempts="1", **FAST)
    procs.worker(daemon, "q", "poison")
    with daemon.client() as client:
        bad = client.submit_many("q", [{"poison": True} for _ in range(5)])
        good = client.submit_many("q", [{"n": n} for n in range(3)])
        client.wait_many("q", bad + good, timeout=60)

    def agrees() -> bool:
        counts = status_of(daemon, "q")
        return all(counts[s] == count_files(daemon.root, "q", s)
                   for s in ("pending", "claimed", "done", "failed"))

    wait_for(agrees, timeout=10, message="the daemon's counts to match the folders")
    root = Path(daemon.root) / "q"
    os.rename(root / "failed" / f"{bad[0]}.json", root / "pending" / f"{bad[0]}.json")
    with daemon.client() as client:
        client.wait_many("q", [bad[0]], timeout=60)  # it fails again
    wait_for(agrees, timeout=10, message="counts after a hand move and a second failure")
    cli = [sys.executable, "-m", "ckptd", "--root", daemon.root]
    for args in (["retry", "q", bad[1], "--attempts", "1"], ["purge", "q", "done"]):
        ran = subprocess.run(cli + args, capture_output=True, text=True, timeout=60,
                             env=base_env(), cwd=REPO)
        assert ran.returncode == 0, ran.stderr
    wait_for(agrees, timeout=10, message="counts after --root retry and purge")
    assert status_of(daemon, "q")["failures"] >= 6, "failures since the start, apart"


def test_leftovers_in_tmp_are_swept_while_the_daemon_runs(procs: Processes) -> None:
    daemon = procs.daemon(rescan_interval="1s", tmp_max_age="2s", **FAST)
    with daemon.client() as client:
        client.submit("q", {})
    tmp = Path(daemon.root) / "q" / "tmp"
    staged = tmp / "somejob.4242.7"  # a write whose writer was killed
    trash = tmp / "other.old.4242.8"  # an old copy another daemon had not deleted yet
    for path in (staged, trash):
        path.write_bytes(b"{}")
        os.utime(path, (time.time() - 60, time.time() - 60))
    young = tmp / "young.4242.9"  # a write in flight: far from tmp_max_age
    young.write_bytes(b"{}")
    os.utime(young, (time.time() + 3600, time.time() + 3600))
    wait_for(lambda: not staged.exists() and not trash.exists(), timeout=15,
             message="the leftovers swept")
    assert young.exists(), "a write in flight is left alone"
