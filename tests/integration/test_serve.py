"""The daemon and its workers as real processes over ZeroMQ on 127.0.0.1."""

from __future__ import annotations

import collections
import os
import shutil
from pathlib import Path

from ckptd.core.ids import new_id
from tests.helpers import wait_for
from tests.procs import Processes, count_files, job_files, read_lines


def test_a_thousand_jobs_through_two_workers(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    for tag in ("a", "b"):
        procs.worker(daemon, "q", "echo", prefetch=4, env={"TEST_LOG": log, "WORKER_TAG": tag})
    with daemon.client() as client:
        ids = []
        for chunk in range(10):
            ids += client.submit_many("q", [{"n": chunk * 100 + i} for i in range(100)])
        client.wait_many("q", None, timeout=120)
        status = client.status("q")["queues"]["q"]
    done = job_files(daemon.root, "q", "done")
    assert set(done) == set(ids) and len(ids) == 1000
    for job in done.values():
        assert job["result"] == {"echo": job["payload"], "attempt": 1}
        assert job["attempts"] == 1 and job["worker"] in ("w1", "w2")
    assert status["done"] == 1000 and status["pending"] == 0 and status["claimed"] == 0
    runs = [line.split() for line in read_lines(log)]
    assert {r[4] for r in runs} == {"a", "b"}, "both workers took jobs"
    assert sorted(r[2] for r in runs) == sorted(ids), "each job ran exactly once"


def test_a_killed_worker_s_job_resumes_from_its_checkpoint(procs: Processes,
                                                           tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(lease="2s", heartbeat="0.3s", backoff_base="0.1s")
    first = procs.worker(daemon, "long", "steps", env={"TEST_LOG": log})
    with daemon.client() as client:
        job_id = client.submit("long", {"steps": 20, "sleep": 0.05})
        wait_for(lambda: sum(1 for line in read_lines(log) if line.startswith("step")) >= 6,
                 timeout=30, message="six steps done by the first worker")
        first.kill()
        procs.worker(daemon, "long", "steps", env={"TEST_LOG": log})
        assert client.wait("long", job_id, timeout=60) == "done"
    lines = [line.split() for line in read_lines(log)]
    resumes = [int(line[4]) for line in lines if line[0] == "resume"]
    assert resumes[0] == 0 and len(resumes) == 2
    first_steps = sum(1 for line in lines if line[0] == "step" and line[3] == "1")
    # A step is logged before its checkpoint: the one running at the kill may be lost.
    assert resumes[1] >= max(1, first_steps - 1), \
        "the second attempt started from the last checkpoint, not from zero"
    steps = collections.Counter(int(line[4]) for line in lines if line[0] == "step")
    assert set(steps) == set(range(20))
    redone = sum(n - 1 for n in steps.values())
    assert redone <= 1, f"at most the step running at the kill is done twice, saw {redone}"
    job = job_files(daemon.root, "long", "done")[job_id]
    assert job["attempts"] == 2
    assert job["history"][0]["outcome"] == "expired"
    assert not os.path.exists(os.path.join(daemon.root, "long", "state", f"{job_id}.json"))


def test_operators_mv_and_rm_are_honoured(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(backoff_base="0.05s")
    procs.worker(daemon, ["bad", "later"], "flaky", env={"TEST_LOG": log})
    root = daemon.root
    with daemon.client() as client:
        x = client.submit("bad", {"fail": 1}, max_attempts=1)
        assert client.wait("bad", x, timeout=30) == "failed"
        # An operator requeues the failed job by hand: it runs again (and now succeeds).
        os.rename(f"{root}/bad/failed/{x}.json", f"{root}/bad/pending/{x}.json")
        wait_for(lambda: os.path.exists(f"{root}/bad/done/{x}.json"), timeout=30,
                 message="the requeued job to finish")
        # An operator removes a pending job by hand: it never runs. Z is due after Y, so
        # once Z is done, Y would have run if it still existed.
        y = client.submit("later", {"fail": 0}, delay=1.5)
        z = client.submit("later", {"fail": 0}, delay=2.0)
        os.unlink(f"{root}/later/pending/{y}.json")
        wait_for(lambda: client.status("later")["queues"]["later"]["pending"] == 1,
                 timeout=10, message="the daemon to notice the removal")
        assert client.wait("later", z, timeout=30) == "done"
    ran = [line.split()[2] for line in read_lines(log)]
    assert ran.count(x) == 2 and y not in ran and ran.count(z) == 1
    assert job_files(root, "bad", "done")[x]["attempts"] == 2


def test_a_job_written_elsewhere_and_moved_in_is_dispatched(procs: Processes,
                                                           tmp_path: Path) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, "drop", "echo")
    with daemon.client() as client:
        client.submit("drop", {"warm": True})  # the queue's folders exist now
        job_id = new_id()
        staging = tmp_path / "staging.json"
        staging.write_text(f'{{"id": "{job_id}", "queue": "drop", "payload": {{"by": "hand"}}, '
                           '"created": "2026-01-01T00:00:00Z", "attempts": 0, '
                           '"max_attempts": 3}\n')
        shutil.move(str(staging), f"{daemon.root}/drop/pending/{job_id}.json")
        assert client.wait("drop", job_id, timeout=30) == "done"
    assert job_files(daemon.root, "drop", "done")[job_id]["result"]["echo"] == {"by": "hand"}


def test_a_slow_worker_does_not_hold_jobs_back(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    procs.worker(daemon, "mix", "sleepy", env={"TEST_LOG": log, "SLEEP": "2",
                                               "WORKER_TAG": "slow"})
    procs.worker(daemon, "mix", "sleepy", env={"TEST_LOG": log, "SLEEP": "0",
                                               "WORKER_TAG": "fast"})
    with daemon.client() as client:
        wait_for(lambda: client.status()["workers"] == 2, timeout=20, message="two workers")
        ids = client.submit_many("mix", [{"n": i} for i in range(30)])
        client.wait_many("mix", ids, timeout=120)
    starts = {line.split()[2]: (line.split()[4], float(line.split()[5]))
              for line in read_lines(log) if line.startswith("start")}
    done = job_files(daemon.root, "mix", "done")
    from ckptd.core.timefmt import parse_iso

    by_slow = [i for i, (tag, _) in starts.items() if tag == "slow"]
    assert len(by_slow) <= 3, f"the slow worker took {len(by_slow)} of 30 jobs"
    for job_id, (_, started) in starts.items():
        waited = started - parse_iso(done[job_id]["claimed_at"])
        # A job sent to a busy worker would wait there for the 2 s job before it.
        assert waited < 1.5, f"{job_id} waited {waited:.2f}s in a worker's buffer"


def test_a_poison_job_ends_in_failed_and_the_others_finish(procs: Processes,
                                                          tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(backoff_base="0.05s", backoff_cap="0.2s")
    procs.worker(daemon, "p", "poison", env={"TEST_LOG": log})
    with daemon.client() as client:
        bad = client.submit("p", {"poison": True}, max_attempts=3)
        good = client.submit_many("p", [{"n": i} for i in range(20)])
        assert client.wait("p", bad, timeout=60) == "failed"
        client.wait_many("p", good, timeout=60)
    failed = job_files(daemon.root, "p", "failed")[bad]
    assert failed["attempts"] == 3
    assert "poisoned payload" in failed["last_error"]["message"]
    assert "ValueError" in failed["last_error"]["traceback"]
    assert [h["outcome"] for h in failed["history"]] == ["error"] * 3
    assert set(job_files(daemon.root, "p", "done")) == set(good)
    assert sum(1 for line in read_lines(log) if line.split()[2] == bad) == 3


def test_fail_moves_the_job_to_failed_at_once(procs: Processes, tmp_path: Path) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, "f", "fail_for_good")
    with daemon.client() as client:
        job_id = client.submit("f", {}, max_attempts=5)
        assert client.wait("f", job_id, timeout=30) == "failed"
    job = job_files(daemon.root, "f", "failed")[job_id]
    assert job["attempts"] == 1 and job["last_error"]["type"] == "Fail"


def test_sigterm_waits_for_running_jobs_then_exits_0(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(drain_timeout="30s")
    procs.worker(daemon, "t", "sleepy", env={"TEST_LOG": log, "SLEEP": "1.5"})
    with daemon.client() as client:
        job_id = client.submit("t", {})
        wait_for(lambda: any(line.startswith("start") for line in read_lines(log)), timeout=20)
    assert daemon.terminate() == 0
    assert os.path.exists(f"{daemon.root}/t/done/{job_id}.json"), "the running job's answer " \
        "was taken before the daemon stopped"


def test_drain_timeout_leaves_the_rest_claimed_for_the_restart(procs: Processes,
                                                             tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(drain_timeout="0.5s", lease="3s", heartbeat="0.5s")
    worker = procs.worker(daemon, "t", "sleepy", env={"TEST_LOG": log, "SLEEP": "4"})
    with daemon.client() as client:
        job_id = client.submit("t", {})
        wait_for(lambda: any(line.startswith("start") for line in read_lines(log)), timeout=20)
    assert daemon.terminate() == 0
    assert count_files(daemon.root, "t", "claimed") == 1
    daemon.start()
    with daemon.client() as client:
        assert client.wait("t", job_id, timeout=60) == "done"
    worker.terminate()
    # The worker kept its answer while the daemon was away and delivered it on return.
    assert job_files(daemon.root, "t", "done")[job_id]["attempts"] == 1
