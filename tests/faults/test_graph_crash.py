"""kill -9 the daemon and workers while work waits on work: diamonds, a growing batch, parked
jobs and on_failure jobs. Nothing acknowledged is lost, nothing waits past what it waits for,
and what is made once (a join, a callback, a compensating job) is made once.

CKPTD_GRAPH_SCALE multiplies the sizes (1 in CI; 10 gives the issue's 1,000 diamonds and
10,000-job batch, printed as figures).
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.procs import (
    DaemonProcess,
    Processes,
    WorkerProcess,
    base_env,
    count_files,
    job_files,
    read_lines,
)

SCALE = int(os.environ.get("CKPTD_GRAPH_SCALE", "1"))
HERE = os.path.dirname(os.path.abspath(__file__))
UNSAFE = [os.path.join(HERE, "unsafe_graph_daemon.py")]


def submit_diamonds(daemon: DaemonProcess, n: int) -> list[tuple[str, str, str, str]]:
    made = []
    with daemon.client(timeout=30) as client:
        for k in range(n):
            client.submit("top", {"k": k}, id=f"A{k}")
            client.submit("mid", {"k": k}, id=f"B{k}", after=[f"top/A{k}"])
            client.submit("mid", {"k": k}, id=f"C{k}", after=[f"top/A{k}"])
            client.submit("top", {"k": k}, id=f"D{k}", after=[f"mid/B{k}", f"mid/C{k}"])
            made.append((f"A{k}", f"B{k}", f"C{k}", f"D{k}"))
    return made


def start_worker(procs: Processes, daemon: DaemonProcess, log: str) -> WorkerProcess:
    return procs.worker(daemon, ["top", "mid"], "graph_handlers:slow_node", concurrency=4,
                        env={"TEST_LOG": log, "SLEEP": "0.01"})


def early_joins(log: str, done: dict[str, dict[str, object]],
                made: list[tuple[str, str, str, str]]) -> tuple[list[str], dict[str, list[float]]]:
    """The joins (D) that started before both their parents had ended, and every start."""
    from ckptd.core.timefmt import parse_iso

    starts: dict[str, list[float]] = collections.defaultdict(list)
    for line in read_lines(log):
        fields = line.split()
        if fields[0] == "start":
            starts[fields[2]].append(float(fields[4]))
    early = []
    for _, b, c, d in made:
        ended = max(parse_iso(str(done[b]["finished_at"])),
                    parse_iso(str(done[c]["finished_at"])))
        early += [d for t in starts[d] if t <= ended]
    return early, starts


@pytest.mark.slow
def test_negative_control_an_early_wake_is_caught(procs: Processes, tmp_path: Path) -> None:
    """The same check against a daemon that wakes a join at its first parent's end."""
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon(program=UNSAFE, env={"UNSAFE": "early-wake"})
    made = submit_diamonds(daemon, 30)
    procs.worker(daemon, "top", "graph_handlers:slow_node", concurrency=4,
                 env={"TEST_LOG": log})
    procs.worker(daemon, "mid", "graph_handlers:slow_node", env={"TEST_LOG": log,
                                                                 "SLEEP": "0.05"})
    wait_for(lambda: count_files(daemon.root, "top", "done")
             + count_files(daemon.root, "mid", "done") == 120, timeout=120,
             message="every diamond to be done")
    done = {**job_files(daemon.root, "top", "done"), **job_files(daemon.root, "mid", "done")}
    early, _ = early_joins(log, done, made)
    print(f"\nnegative control: {len(early)} join(s) started before both parents ended")
    assert early, "the check should catch a join that ran after only one parent"


@pytest.mark.slow
def test_diamonds_through_daemon_and_worker_kills(procs: Processes, tmp_path: Path) -> None:
    rng = random.Random(5)
    log = str(tmp_path / "runs.log")
    n = 100 * SCALE
    daemon = procs.daemon(lease="3s", heartbeat="0.5s", backoff_base="0.1s")
    made = submit_diamonds(daemon, n)
    workers = [start_worker(procs, daemon, log) for _ in range(2)]
    total = 4 * n
    kills = {"daemon": 0, "worker": 0}
    plan = ["daemon", "worker", "daemon", "worker", "daemon"]
    for step, what in enumerate(plan):
        goal = total * (step + 1) // (len(plan) + 2)
        wait_for(lambda goal=goal: count_files(daemon.root, "top", "done")
                 + count_files(daemon.root, "mid", "done") >= goal, timeout=300,
                 interval=0.05, message=f"{goal} jobs done before kill {step + 1}")
        time.sleep(rng.uniform(0.0, 0.2))
        if what == "daemon":
            daemon.kill()
            daemon.start()
        else:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            workers.append(start_worker(procs, daemon, log))
        kills[what] += 1
    wait_for(lambda: count_files(daemon.root, "top", "done") == 2 * n, timeout=600,
             interval=0.2, message="every diamond to be done")
    done = {**job_files(daemon.root, "top", "done"), **job_files(daemon.root, "mid", "done")}
    assert len(done) == total, f"lost: {total - len(done)}"
    for queue in ("top", "mid"):
        for state in ("pending", "claimed", "failed", "waiting"):
            assert count_files(daemon.root, queue, state) == 0, (queue, state)
    early, starts = early_joins(log, done, made)
    assert not early, f"joins that started before a parent ended: {early[:5]}"
    joins_run = collections.Counter({d: len(starts[d]) for *_, d in made})
    again = sum(count - 1 for count in joins_run.values())
    duplicates = sum(len(v) - 1 for v in starts.values())
    print(f"\n{n} diamonds ({total} jobs), {kills['daemon']} daemon kills, {kills['worker']} "
          f"worker kills: 0 lost, every join after both parents; joins started again "
          f"{again} time(s) (attempts cut by a kill), {duplicates} restarts in all")
    assert all(done[d]["attempts"] >= 1 for *_, d in made)
    # A kill can only cost what was running: 2 workers x 4 slots, plus prefetch.
    assert duplicates <= sum(kills.values()) * 2 * 8


@pytest.mark.slow
def test_a_growing_batch_calls_back_once_through_daemon_kills(procs: Processes,
                                                              tmp_path: Path) -> None:
    rng = random.Random(9)
    log = str(tmp_path / "runs.log")
    n = 1000 * SCALE
    daemon = procs.daemon(lease="3s", heartbeat="0.5s", backoff_base="0.1s")
    with daemon.client(timeout=30) as client:
        batch = client.batch("report", then="report", on_failure="report")
        for k in range(n):
            batch.submit("grow", {"add": 2 if k % 10 == 0 else 0})
        batch.seal()
    for _ in range(2):
        procs.worker(daemon, "grow", "graph_handlers:grower", concurrency=4,
                     env={"TEST_LOG": log})
    procs.worker(daemon, "report", "graph_handlers:callback", env={"TEST_LOG": log})
    expected = n + 2 * (n // 10)
    for kill in range(3):
        goal = expected * (kill + 1) // 4
        wait_for(lambda goal=goal: count_files(daemon.root, "grow", "done") >= goal,
                 timeout=300,
                 interval=0.05, message=f"{goal} jobs of the batch done")
        time.sleep(rng.uniform(0.0, 0.3))
        daemon.kill()
        daemon.start()
    wait_for(lambda: count_files(daemon.root, "report", "done") == 1, timeout=600,
             interval=0.2, message="the batch's callback")
    made = job_files(daemon.root, "report", "done")
    assert list(made) == [f"{batch.name}.then"], "one callback, the success one"
    assert count_files(daemon.root, "grow", "done") == expected
    payload = made[f"{batch.name}.then"]
    outcomes = payload.get("payload") or json.loads(
        (Path(daemon.root) / "report" / "blobs" / f"{batch.name}.then.payload").read_text())
    assert len(outcomes["outcomes"]) == expected and outcomes["done"] == expected
    callbacks = [line for line in read_lines(log) if line.startswith("callback")]
    last_end = max(j["finished_at"] for j in job_files(daemon.root, "grow", "done").values())
    assert payload["created"] >= last_end
    print(f"\nbatch of {n} growing to {expected} jobs, 3 daemon kills: one callback made, "
          f"with {expected} outcomes; it ran {len(callbacks)} time(s)")
    assert len(callbacks) >= 1


def cli(root: str, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "ckptd", "--root", root, *args],
                            capture_output=True, text=True, env=base_env(), timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_parked_jobs_survive_a_daemon_kill(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    n = 50 * SCALE
    daemon = procs.daemon(lease="3s", heartbeat="0.5s")
    procs.worker(daemon, "approve", "graph_handlers:parker", concurrency=4,
                 env={"TEST_LOG": log})
    with daemon.client() as client:
        for k in range(n):
            client.submit("approve", {"signal": "approved"}, id=f"p{k}")
    wait_for(lambda: count_files(daemon.root, "approve", "waiting") == n, timeout=120,
             message="every job to park")
    daemon.kill()
    daemon.start()
    with daemon.client() as client:
        status = client.status("approve")["queues"]["approve"]
    assert status["waiting"] == n and status["claimed"] == 0
    for k in range(n):
        if k % 2:
            cli(daemon.root, "signal", "approve", f"p{k}", "approved", json.dumps({"k": k}))
        else:
            drop = Path(daemon.root) / "approve" / "signals" / f"p{k}.approved.json"
            staged = tmp_path / f"s{k}"
            staged.write_text(json.dumps({"k": k}))
            os.rename(staged, drop)
        if k == n // 2:
            daemon.kill()  # and once more while they wake
            daemon.start()
    wait_for(lambda: count_files(daemon.root, "approve", "done") == n, timeout=120,
             message="every signalled job to finish")
    woke = collections.Counter(line.split()[2] for line in read_lines(log)
                               if line.startswith("woke"))
    assert set(woke) == {f"p{k}" for k in range(n)}
    done = job_files(daemon.root, "approve", "done")
    assert all(done[f"p{k}"]["result"]["signals"] == {"approved": {"k": k}} for k in range(n))
    print(f"\n{n} parked jobs through 2 daemon kills: all woke with their signal; "
          f"{sum(woke.values()) - n} woke twice (an attempt cut by a kill)")


def start_orders(procs: Processes, tmp_path: Path, n: int, program: list[str],
                 env: dict[str, str] | None = None) -> DaemonProcess:
    config = tmp_path / "ckptd.toml"
    config.write_text('[queues.order]\non_failure = "undo"\nmax_attempts = 1\n')
    daemon = procs.daemon(program=[*program, "--config", str(config)], lease="3s",
                          heartbeat="0.5s", env=env)
    with daemon.client() as client:
        for k in range(n):
            client.submit("order", {"k": k}, id=f"o{k}")
    return daemon


@pytest.mark.slow
def test_negative_control_fresh_failure_ids_make_two(procs: Processes, tmp_path: Path) -> None:
    """The same check against a daemon whose on_failure ids are not derived: the crash
    between the compensating job and the move makes a second one."""
    log = str(tmp_path / "runs.log")
    n = 20
    daemon = start_orders(procs, tmp_path, n, UNSAFE, env={"UNSAFE": "fresh-failure-ids"})
    daemon.kill()
    daemon.env_extra = {"UNSAFE": "fresh-failure-ids", "CKPTD_CRASH_AT": "on_failure_created:5"}
    daemon.start()
    procs.worker(daemon, "order", "graph_handlers:fail_after_checkpoint", concurrency=4,
                 env={"TEST_LOG": log})
    wait_for(lambda: not daemon.alive(), timeout=120, message="the armed crash")
    daemon.env_extra = {"UNSAFE": "fresh-failure-ids"}
    daemon.start()
    wait_for(lambda: count_files(daemon.root, "order", "failed") == n, timeout=300,
             message="every order to fail")
    made = count_files(daemon.root, "undo", "pending")
    print(f"\nnegative control: {made} compensating jobs for {n} failures")
    assert made > n


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["", "on_failure_created"])
def test_on_failure_makes_exactly_one_job_across_kills(procs: Processes, tmp_path: Path,
                                                      crash_at: str) -> None:
    rng = random.Random(3)
    log = str(tmp_path / "runs.log")
    n = 40 * SCALE
    daemon = start_orders(procs, tmp_path, n, ["-m", "ckptd"])
    daemon.kill()
    daemon.env_extra = {"CKPTD_CRASH_AT": f"{crash_at}:{n // 2}"} if crash_at else {}
    daemon.start()
    procs.worker(daemon, "order", "graph_handlers:fail_after_checkpoint", concurrency=4,
                 env={"TEST_LOG": log})
    kills = 0
    if crash_at:
        wait_for(lambda: not daemon.alive(), timeout=120, message="the armed crash")
        kills += 1
        daemon.env_extra = {}
        daemon.start()
    while count_files(daemon.root, "order", "failed") < n and kills < 4:
        time.sleep(rng.uniform(0.1, 0.5))
        daemon.kill()
        daemon.start()
        kills += 1
    wait_for(lambda: count_files(daemon.root, "order", "failed") == n, timeout=300,
             message="every order to fail")
    undo = job_files(daemon.root, "undo", "pending")
    assert sorted(undo) == sorted(f"o{k}.failure-1" for k in range(n)), "one each, no more"
    # Its payload says what was done: the checkpoint (none when the attempt was lost with a
    # killed daemon's message and its lease ran out before the handler began).
    bad = {k: (j["payload"]["checkpoint"], j["payload"]["error"]) for k, j in undo.items()
           if j["payload"]["checkpoint"] != {"done": ["reserve-stock"]}
           and j["payload"]["error"]["type"] != "LeaseExpired"}
    assert not bad, bad
    armed = f" (one armed at {crash_at})" if crash_at else ""
    print(f"\n{n} failures, {kills} daemon kills{armed}: {len(undo)} compensating jobs, one "
          "per failure")
