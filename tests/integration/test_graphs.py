"""Work that waits, with real processes: dependencies, batches, parks and signals, on_failure,
and what the CLI shows of them (ls waiting, explain, graph, fsck, status)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.core.errors import JobNotFound
from tests.helpers import wait_for
from tests.procs import DaemonProcess, Processes, base_env, count_files, job_files, read_lines


def cli(root: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "ckptd", "--root", root, *args],
                            capture_output=True, text=True, env=base_env(), timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def runs(log: str, kind: str = "run") -> collections.Counter[str]:
    return collections.Counter(line.split()[2] for line in read_lines(log)
                               if line.split()[0] == kind)


def diamonds(daemon: DaemonProcess, n: int) -> list[tuple[str, str, str, str]]:
    """n diamonds A -> (B, C) -> D over two queues: A and D in top, B and C in mid."""
    made = []
    with daemon.client() as client:
        for k in range(n):
            a = client.submit("top", {"k": k}, id=f"A{k}")
            b = client.submit("mid", {"k": k}, id=f"B{k}", after=[f"top/{a}"])
            c = client.submit("mid", {"k": k}, id=f"C{k}", after=[f"top/{a}"])
            d = client.submit("top", {"k": k}, id=f"D{k}", after=[f"mid/{b}", f"mid/{c}"])
            made.append((a, b, c, d))
    return made


def check_diamonds(log: str, made: list[tuple[str, str, str, str]]) -> None:
    """Every D ran once, and after both its B and C (by the workers' own clocks)."""
    started: dict[str, float] = {}
    count: collections.Counter[str] = collections.Counter()
    for line in read_lines(log):
        fields = line.split()
        if fields[0] == "run":
            count[fields[2]] += 1
            started.setdefault(fields[2], float(fields[4]))
    for a, b, c, d in made:
        assert count[d] == 1, f"{d} ran {count[d]} times"
        assert started[d] > max(started[b], started[c]) > started[a]


def test_diamonds_run_each_join_once_after_its_parents(procs: Processes, tmp_path: Path
                                                       ) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    made = diamonds(daemon, 30)
    assert count_files(daemon.root, "mid", "waiting") == 60
    waiting = cli(daemon.root, "ls", "top", "waiting").stdout.split()
    assert sorted(waiting) == sorted(d for *_, d in made)
    explained = cli(daemon.root, "explain", "top", "D0").stdout
    assert "waits for 2 of its 2 parents to end: mid/B0 (waiting), mid/C0 (waiting)" in explained
    with daemon.client() as client:
        assert client.status("top")["queues"]["top"]["waiting"] == 30
    for queue in ("top", "mid"):
        procs.worker(daemon, queue, "graph_handlers:node", concurrency=4,
                     env={"TEST_LOG": log})
    wait_for(lambda: count_files(daemon.root, "top", "done") == 60, timeout=120,
             message="every A and D to be done")
    check_diamonds(log, made)
    done = job_files(daemon.root, "top", "done")
    assert done["D0"]["woken"]["parents"] == {"mid/B0": "done", "mid/C0": "done"}
    tree = cli(daemon.root, "graph", "top", "D0").stdout
    assert "top/D0  done (woken: parents)" in tree and "mid/B0  done" in tree and \
        "top/A0  done" in tree
    graph = json.loads(cli(daemon.root, "--connect", daemon.control, "graph", "top", "A0",
                           "--json").stdout)
    assert graph["state"] == "done"


def test_a_woken_job_is_pending_under_its_priority_and_key(procs: Processes, tmp_path: Path
                                                          ) -> None:
    """A waiting job's file name carries neither; its wake names the pending file with both
    (store/file_names.py), as a submit would, so dispatch orders it and counts its key."""
    daemon = procs.daemon()
    with daemon.client() as client:
        parent = client.submit("up", {}, id="parent")
        client.submit("down", {}, id="child", after=[f"up/{parent}"], priority=-3,
                      key="supplier-a")
        assert os.listdir(f"{daemon.root}/down/waiting") == ["child.json"]
    procs.worker(daemon, "up", "graph_handlers:node", env={"TEST_LOG": str(tmp_path / "log")})
    wait_for(lambda: os.path.isdir(f"{daemon.root}/down/pending")
             and os.listdir(f"{daemon.root}/down/pending") == ["child,p-3,ksupplier-a.json"],
             timeout=60, message="the child to be woken into pending/ with its priority and key")
    assert os.listdir(f"{daemon.root}/down/waiting") == []
    shown = json.loads(cli(daemon.root, "show", "down", "child", "--json").stdout)
    assert shown["state"] == "pending" and shown["priority"] == -3
    assert shown["key"] == "supplier-a"


def test_failure_rules_with_a_parent_that_failed(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    with daemon.client() as client:
        bad = client.submit("up", {"fail": True}, id="bad")
        good = client.submit("up", {}, id="good")
        for rule in ("fail", "run", "ignore"):
            client.submit("down", {}, id=rule, after=[f"up/{bad}", f"up/{good}"],
                          on_parent_failure=rule)
        client.submit("down", {}, id="after-fail", after=["down/fail"], on_parent_failure="run")
        with pytest.raises(JobNotFound, match="parent up/nope does not exist"):
            client.submit("down", {}, after=["up/nope"])
    procs.worker(daemon, ["up", "down"], "graph_handlers:node", concurrency=2,
                 env={"TEST_LOG": log})
    wait_for(lambda: count_files(daemon.root, "down", "done") == 3, timeout=60,
             message="run, ignore and after-fail to be done")
    failed = job_files(daemon.root, "down", "failed")
    assert set(failed) == {"fail"}
    assert failed["fail"]["last_error"]["type"] == "ParentFailed"
    assert runs(log)["fail"] == 0, "rule fail: it never ran"
    parents = {line.split()[2]: json.loads(line.split()[5]) for line in read_lines(log)
               if line.startswith("run down")}
    assert parents["run"] == {"up/bad": "failed", "up/good": "done"}
    assert parents["ignore"] == {"up/good": "done"}
    assert parents["after-fail"] == {"down/fail": "failed"}
    explained = cli(daemon.root, "explain", "down", "fail").stdout
    assert "It never ran: parent up/bad failed" in explained


def test_a_batch_grows_while_it_runs_and_calls_back_once(procs: Processes, tmp_path: Path
                                                        ) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    procs.worker(daemon, "grow", "graph_handlers:grower", concurrency=4, env={"TEST_LOG": log})
    procs.worker(daemon, "report", "graph_handlers:callback", env={"TEST_LOG": log})
    with daemon.client() as client:
        with client.batch("report", then="report", on_failure="report") as batch:
            for n in range(200):
                batch.submit("grow", {"add": 2 if n % 10 == 0 else 0})
    wait_for(lambda: [line for line in read_lines(log) if line.startswith("callback")],
             timeout=120, message="the batch's callback")
    [line] = [line for line in read_lines(log) if line.startswith("callback")]
    assert line.split()[2] == f"{batch.name}.then" and line.split()[3] == "240"
    assert json.loads(line.split()[4]) == {"done": 240}
    assert len(runs(log)) == 240
    last_end = max(job["finished_at"] for job in job_files(daemon.root, "grow", "done").values())
    # The callback's line is written while it runs: its file is in done/ a moment later.
    made = wait_for(lambda: job_files(daemon.root, "report", "done").get(f"{batch.name}.then"),
                    timeout=30, message="the callback job to be done")
    assert made["created"] >= last_end, "the callback came after the last job ended"
    tree = cli(daemon.root, "graph", "grow", f"{batch.name}.000000").stdout
    assert f"grow/{batch.name}.000000.k1  done" in tree and "then -> report (made)" in tree


@pytest.mark.parametrize("pool", ["thread", "process", "async"])
def test_parked_jobs_hold_no_slot_and_wake_on_signals(procs: Processes, tmp_path: Path,
                                                      pool: str) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    handler = "graph_handlers:async_parker" if pool == "async" else "graph_handlers:parker"
    worker = procs.worker(daemon, "approve", handler, concurrency=2, env={"TEST_LOG": log},
                          extra=["--pool", pool])
    with daemon.client() as client:
        ids = [client.submit("approve", {"signal": "approved"}, id=f"p{n}") for n in range(10)]
    wait_for(lambda: count_files(daemon.root, "approve", "waiting") == 10, timeout=60,
             message="all ten to park (two slots: they must be freed)")
    with daemon.client() as client:
        # The last park's rename is on the disk a flush before the daemon counts it (fsync
        # batch): status says so a moment after the files are there.
        def parked() -> bool:
            status = client.status("approve")["queues"]["approve"]
            return bool(status["claimed"] == 0 and status["waiting"] == 10)
        wait_for(parked, timeout=10, message="status to count ten parked and none claimed")
    # Through the CLI (and the daemon), through the store, and by a file dropped in.
    cli(daemon.root, "--connect", daemon.control, "signal", "approve", "p0", "approved",
        '{"by": "cli"}')
    cli(daemon.root, "signal", "approve", "p1", "approved")
    drop = Path(daemon.root) / "approve" / "signals" / "p2.approved.json"
    staged = tmp_path / "signal.json"
    staged.write_text('{"by": "file"}')
    os.rename(staged, drop)
    wait_for(lambda: count_files(daemon.root, "approve", "done") == 3, timeout=30,
             message="the three signalled jobs to finish")
    woke = {line.split()[2]: line.split() for line in read_lines(log) if line.startswith("woke")}
    assert set(woke) == {"p0", "p1", "p2"}
    assert json.loads(woke["p0"][5]) == {"approved": {"by": "cli"}}
    assert json.loads(woke["p2"][5]) == {"approved": {"by": "file"}}
    assert json.loads(woke["p0"][6])["stage"] == "parked", "resumed from its checkpoint"
    assert not list((Path(daemon.root) / "approve" / "signals").iterdir())
    assert worker.alive() and len(ids) == 10


def test_a_park_timeout_wakes_it_with_its_reason(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    procs.worker(daemon, "approve", "graph_handlers:parker", env={"TEST_LOG": log})
    with daemon.client() as client:
        job_id = client.submit("approve", {"signal": "never", "timeout": 1.0})
    wait_for(lambda: count_files(daemon.root, "approve", "done") == 1, timeout=30,
             message="the timeout to wake it")
    result = job_files(daemon.root, "approve", "done")[job_id]["result"]
    assert result == {"reason": "timeout", "signals": {}}


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_parent_parks_for_its_children(procs: Processes, tmp_path: Path, pool: str) -> None:
    """(In a child process too: its spawns go through the worker.)"""
    log = str(tmp_path / "runs.log")
    daemon = procs.daemon()
    procs.worker(daemon, "fan", "graph_handlers:spawn_and_wait", concurrency=1,
                 env={"TEST_LOG": log}, extra=["--pool", pool])
    procs.worker(daemon, "leaf", "graph_handlers:node", concurrency=2, env={"TEST_LOG": log})
    with daemon.client() as client:
        parent = client.submit("fan", {"n": 5, "queue": "leaf"})
    wait_for(lambda: count_files(daemon.root, "fan", "done") == 1, timeout=60,
             message="the parent to finish after its children")
    [line] = [line for line in read_lines(log) if line.startswith("joined")]
    assert json.loads(line.split(maxsplit=3)[3]) == {f"leaf/{parent}.c{n}": "done"
                                                     for n in range(5)}


def test_on_failure_makes_one_compensating_job(procs: Processes, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    config = tmp_path / "ckptd.toml"
    config.write_text('[queues.order]\non_failure = "undo"\nmax_attempts = 2\n')
    daemon = procs.daemon(program=["-m", "ckptd", "--config", str(config)])
    procs.worker(daemon, "order", "graph_handlers:fail_after_checkpoint", env={"TEST_LOG": log})
    procs.worker(daemon, "undo", "graph_handlers:compensate", env={"TEST_LOG": log})
    with daemon.client() as client:
        job_id = client.submit("order", {"sku": "A"})
    wait_for(lambda: count_files(daemon.root, "undo", "done") == 1, timeout=60,
             message="the compensating job")
    [line] = [line for line in read_lines(log) if line.startswith("compensate")]
    fields = line.split()
    assert fields[3:5] == ["order", job_id] and fields[6] == "Fail"
    assert json.loads(fields[5]) == {"done": ["reserve-stock"]}


def test_fsck_finds_a_wait_that_nothing_can_end(procs: Processes, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    cli(root, "submit", "q", "{}", "--id", "a")
    cli(root, "submit", "q", "{}", "--id", "b", "--after", "q/a")
    os.remove(os.path.join(root, "q", "pending", "a.json"))  # the parent is gone by hand
    Path(root, "q", "signals", "ghost.go.json").write_text("")
    result = cli(root, "fsck", check=False)
    assert result.returncode == 9
    assert "edge-to-nowhere waiting/b.json: waits for q/a, which is in no state" in \
        result.stdout
    assert "orphan-signal signals/ghost.go.json" in result.stdout
    assert "ckptd cancel q b" in result.stdout


def test_parents_and_children_in_queues_of_two_daemons(procs: Processes, tmp_path: Path
                                                       ) -> None:
    """One root, two daemons: top is led by one, mid by the other. Each finds the ends of
    the other's jobs in the store (not in a message) and lets its waiting jobs go on."""
    log = str(tmp_path / "runs.log")
    a = procs.daemon(lead="top", lease="3s")
    b = procs.daemon(root=a.root, lead="mid", lease="3s")
    made = diamonds(a, 20)  # through a: what is b's is forwarded to b
    procs.worker(f"{a.control},{b.control}", ["top", "mid"], "graph_handlers:node",
                 concurrency=4, env={"TEST_LOG": log})
    wait_for(lambda: count_files(a.root, "top", "done") == 40, timeout=120,
             message="every diamond done across the two daemons")
    check_diamonds(log, made)
    with b.client() as client:
        assert client.status("mid")["queues"]["mid"]["waiting"] == 0
