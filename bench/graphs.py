"""Work that waits: what dependencies, batches and parks cost, with a real daemon and workers.

- chains: N no-op jobs in chains of 2 (each second job waits for the first, ``after=``)
  against the same N jobs without dependencies, alternating, medians of --runs: the ratio
  is the price of waiting (goal: >= 70%).
- fanin: a batch of N children and one callback; how long after the last child's end the
  callback was created (goal: < 1 s), from the daemon's own timestamps in the files.
- memory: the daemon's resident memory per waiting job (N jobs waiting, each on its own
  parent, against the same parents alone), and its restart with them.
- parks: N jobs park for a signal; the worker slots they hold while parked (goal: 0); each
  is signalled (by the CLI, or a file dropped into signals/) and the time from the signal to
  its handler running again is measured (goal: < 1 s).

    python bench/graphs.py                               # every part, in ./.bench
    python bench/graphs.py chains --n 100000 --runs 3 --root /dev/shm/gb
    python bench/graphs.py fanin --n 100000 --root /mnt/ext4/gb
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    NOOP_PAYLOAD,
    NOOP_QUEUE,
    filesystem_of,
    rss_mib,
    settle,
    start_daemon,
    start_noop_workers,
    stop,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.ids import new_id  # noqa: E402
from ckptd.core.timefmt import parse_iso  # noqa: E402

CHUNK = 500


def _env() -> dict[str, str]:
    return dict(os.environ, CKPTD_LOG_LEVEL="warning", PYTHONPATH=os.path.dirname(HERE))


@dataclass
class Run:
    """A daemon on a fresh store of its own, and what else the run started (stopped last
    first, the store removed, when the run ends)."""

    daemon: subprocess.Popen[bytes]
    control: str
    store: str
    procs: list[subprocess.Popen[bytes]]


@contextmanager
def running(base: str) -> Iterator[Run]:
    """A quiet disk, then a daemon on a new store under ``base`` for one run."""
    settle()
    root = tempfile.mkdtemp(prefix="graphs-", dir=base)
    store = os.path.join(root, "store")
    daemon, control = start_daemon(store, os.path.join(root, "ready.json"), _env(),
                                   log=os.path.join(root, "daemon.log"))
    run = Run(daemon, control, store, [daemon])
    try:
        yield run
    finally:
        stop(run.procs)
        shutil.rmtree(root, ignore_errors=True)


def _submit(client: Client, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), CHUNK):
        answer = client.request("submit_many", {"queue": NOOP_QUEUE,
                                                "jobs": items[start:start + CHUNK]},
                                timeout=120)
        bad = [i for i in answer["ids"] if isinstance(i, dict)]
        if bad:
            raise RuntimeError(f"refused: {bad[:3]}")


# -- chains of 2 ------------------------------------------------------------------------------

def run_jobs(base: str, n: int, chained: bool, workers: int, prefetch: int) -> float:
    """Jobs/s end to end (first submit to last done) of n no-op jobs, chained in twos or not."""
    with running(base) as run:
        run.procs += start_noop_workers(run.control, workers, 1, prefetch, _env())
        client = Client(run.control, timeout=120)
        wait_for_workers(client, workers)
        started = time.perf_counter()
        for start in range(0, n, 2 * CHUNK):
            firsts = [{"id": new_id(), "payload": NOOP_PAYLOAD, "if_exists": "return"}
                      for _ in range(min(CHUNK, (n - start + 1) // 2))]
            seconds = [{"id": new_id(), "payload": NOOP_PAYLOAD, "if_exists": "return",
                        **({"after": [f"{NOOP_QUEUE}/{f['id']}"]} if chained else {})}
                       for f in firsts[:(n - start) - len(firsts)]]
            _submit(client, firsts + seconds)
        client.wait_many(NOOP_QUEUE, None, timeout=1800)
        elapsed = time.perf_counter() - started
        # The files, not status: a rescan that overlaps moves to done/ can count some twice.
        done = len(os.listdir(os.path.join(run.store, NOOP_QUEUE, "done")))
        if done != n:
            raise RuntimeError(f"expected {n} done, found {done}")
        client.close()
        return n / elapsed


def chains(args: argparse.Namespace) -> dict[str, Any]:
    plain, chained = [], []
    for _ in range(args.runs):  # alternating: the machine's load hits both alike
        plain.append(run_jobs(args.root, args.n, False, args.workers, args.prefetch))
        chained.append(run_jobs(args.root, args.n, True, args.workers, args.prefetch))
    result = {"plain_per_s": statistics.median(plain), "chained_per_s": statistics.median(chained),
              "plain_runs": plain, "chained_runs": chained}
    result["ratio"] = result["chained_per_s"] / result["plain_per_s"]
    return result


# -- fan-in -----------------------------------------------------------------------------------

def fanin(args: argparse.Namespace) -> dict[str, Any]:
    with running(args.root) as run:
        store = run.store
        run.procs += start_noop_workers(run.control, args.workers, 1, args.prefetch, _env())
        client = Client(run.control, timeout=120)
        wait_for_workers(client, args.workers)
        batch = client.batch("fanin", on_complete="fanin", name=f"F{os.getpid()}")
        started = time.perf_counter()
        items = [{"id": f"{batch.name}.{k:06d}", "payload": NOOP_PAYLOAD, "batch": batch.name,
                  "if_exists": "return"} for k in range(args.n)]
        _submit(client, items)
        batch.seal()
        client.wait_many(NOOP_QUEUE, None, timeout=1800)
        elapsed = time.perf_counter() - started
        path = os.path.join(store, "fanin", "pending", f"{batch.name}.on_complete.json")
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(path) as handle:
            made = parse_iso(json.load(handle)["created"])
        durable = os.stat(path).st_mtime  # when the file was written
        last = 0.0
        done = os.path.join(store, NOOP_QUEUE, "done")
        for name in os.listdir(done):
            with open(os.path.join(done, name)) as handle:
                last = max(last, parse_iso(json.load(handle)["finished_at"]))
        blob = os.path.join(store, "fanin", "blobs", f"{batch.name}.on_complete.payload")
        client.close()
        return {"children": args.n, "children_per_s": args.n / elapsed,
                "callback_after_last_end_s": made - last,
                "file_after_last_end_s": durable - last,
                "outcomes_blob_mib": os.path.getsize(blob) / 2**20 if os.path.exists(blob)
                else 0.0, "daemon_rss_mib": rss_mib(run.daemon.pid)}


# -- memory -----------------------------------------------------------------------------------

def memory(args: argparse.Namespace) -> dict[str, Any]:
    with running(args.root) as run:
        store, daemon = run.store, run.daemon
        client = Client(run.control, timeout=120)
        parents = [new_id() for _ in range(args.n)]
        _submit(client, [{"id": p, "payload": NOOP_PAYLOAD, "if_exists": "return"}
                         for p in parents])
        time.sleep(1.0)
        before = rss_mib(daemon.pid)
        _submit(client, [{"id": new_id(), "payload": NOOP_PAYLOAD, "if_exists": "return",
                          "after": [f"{NOOP_QUEUE}/{p}"]} for p in parents])
        time.sleep(1.0)
        after = rss_mib(daemon.pid)
        waiting = client.status(NOOP_QUEUE)["queues"][NOOP_QUEUE]["waiting"]
        client.close()
        stop(run.procs)
        # A restart rebuilds the index of who waits on whom from the files.
        started = time.perf_counter()
        second = os.path.join(os.path.dirname(store), "d2.log")
        daemon, control = start_daemon(store, os.path.join(os.path.dirname(store),
                                                           "ready2.json"),
                                       dict(_env(), CKPTD_LOG_LEVEL="info"), log=second)
        run.procs = [daemon]
        restart = time.perf_counter() - started
        with open(second) as handle:
            found = [line for line in handle if "recovered the index" in line]
        recovered = float(found[0].split(" in ")[1].split("s")[0]) if found else float("nan")
        client = Client(control, timeout=120)
        again = client.status(NOOP_QUEUE)["queues"][NOOP_QUEUE]["waiting"]
        client.close()
        return {"waiting": waiting, "rss_parents_mib": before, "rss_with_waiting_mib": after,
                "bytes_per_waiting_job": (after - before) * 2**20 / max(1, waiting),
                "restart_s": restart, "recovery_s": recovered, "waiting_after_restart": again,
                "rss_after_restart_mib": rss_mib(daemon.pid)}


# -- parks --------------------------------------------------------------------------------------

def parks(args: argparse.Namespace) -> dict[str, Any]:
    with running(args.root) as run:
        return parked(args, run)


def parked(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    """The parks part, in a run."""
    store, control = run.store, run.control
    log = os.path.join(os.path.dirname(store), "parks.log")
    env = dict(_env(), TEST_LOG=log,
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE),
                                           os.path.join(os.path.dirname(HERE), "tests",
                                                        "integration")]))
    worker = subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                               "--queue", "approve", "-c", "8", "graph_handlers:parker"],
                              env=env, cwd=os.path.join(os.path.dirname(HERE), "tests",
                                                        "integration"))
    run.procs.append(worker)
    client = Client(control, timeout=120)
    wait_for_workers(client, 1)
    n = args.parks
    ids = [f"p{k}" for k in range(n)]
    for job_id in ids:
        client.submit("approve", {"signal": "approved"}, id=job_id)
    deadline = time.monotonic() + 600
    while client.status("approve")["queues"]["approve"]["waiting"] < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the jobs did not all park")
        time.sleep(0.05)
    status = client.status("approve")
    row = status["queues"]["approve"]
    held = row["claimed"]
    sent: dict[str, float] = {}
    signals = os.path.join(store, "approve", "signals")
    staged = os.path.join(os.path.dirname(store), "staged")
    cli_wall = []
    for k, job_id in enumerate(ids):
        if k < args.cli:
            # The CLI's own code (click command, client, request) in this process: the
            # interpreter's start of a separate `ckptd` process is measured apart.
            sent[job_id] = time.time()
            run_cli(["--connect", control, "signal", "approve", job_id, "approved"])
        elif k < args.cli + 3:
            started = time.time()
            subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "signal",
                            "approve", job_id, "approved"], env=_env(), check=True,
                           capture_output=True)
            cli_wall.append(time.time() - started)
            sent[job_id] = time.time()  # upper bound: it was sent before this
        else:
            with open(staged, "w") as handle:
                handle.write('{"by": "file"}')
            sent[job_id] = time.time()
            os.rename(staged, os.path.join(signals, f"{job_id}.approved.json"))
        time.sleep(0.002)
    client.wait_many("approve", None, timeout=600)
    woke: dict[str, float] = {}
    with open(log) as handle:
        for line in handle:
            fields = line.split()
            if fields[0] == "woke":
                woke[fields[2]] = float(fields[-1])
    lat_cli = sorted(woke[i] - sent[i] for i in ids[:args.cli])
    lat_file = sorted(woke[i] - sent[i] for i in ids[args.cli + 3:])
    client.close()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    return {"parked": n, "claimed_while_parked": held, "woke": len(woke),
            "cli_p50_ms": 1000 * statistics.median(lat_cli) if lat_cli else float("nan"),
            "cli_max_ms": 1000 * max(lat_cli) if lat_cli else float("nan"),
            "file_p50_ms": 1000 * statistics.median(lat_file),
            "file_p95_ms": 1000 * pct(lat_file, 0.95),
            "file_max_ms": 1000 * max(lat_file),
            "cli_process_s": statistics.median(cli_wall) if cli_wall else float("nan")}


def run_cli(argv: list[str]) -> None:
    """Run the ``ckptd`` command's code in this process (click, the client, the request)."""
    from ckptd.cli.main import cli

    cli.main(args=argv, prog_name="ckptd", standalone_mode=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", default=["chains", "fanin", "memory", "parks"])
    parser.add_argument("--n", type=int, default=100_000, help="jobs (chains, fanin, memory)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (chains)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--parks", type=int, default=500, help="parked jobs")
    parser.add_argument("--cli", type=int, default=50, help="of them, signalled by the CLI")
    parser.add_argument("--root", default=os.path.join(os.getcwd(), ".bench"),
                        help="folder for the stores (on the disk to measure)")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    load = os.getloadavg()
    print(f"graphs: store on {filesystem_of(args.root)}; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores", flush=True)
    for part in args.parts:
        result = {"chains": chains, "fanin": fanin, "memory": memory, "parks": parks}[part](args)
        if part == "chains":
            mark = "PASS" if result["ratio"] >= 0.70 else "MISS"
            print(f"chains of 2, {args.n} no-op jobs, {args.workers} workers: without "
                  f"dependencies {result['plain_per_s']:,.0f}/s, in chains "
                  f"{result['chained_per_s']:,.0f}/s (medians of {args.runs}): ratio "
                  f"{result['ratio']:.0%} [{mark} >= 70%]; runs "
                  f"{[round(r) for r in result['plain_runs']]} / "
                  f"{[round(r) for r in result['chained_runs']]}", flush=True)
        elif part == "fanin":
            mark = "PASS" if result["file_after_last_end_s"] < 1.0 else "MISS"
            print(f"fan-in of {result['children']} children ({result['children_per_s']:,.0f}/s):"
                  f" callback created {1000 * result['callback_after_last_end_s']:.0f} ms after "
                  f"the last child's end, its file written "
                  f"{1000 * result['file_after_last_end_s']:.0f} ms after [{mark} < 1 s]; "
                  f"outcomes in a blob of {result['outcomes_blob_mib']:.1f} MiB; daemon RSS "
                  f"{result['daemon_rss_mib']:.0f} MiB", flush=True)
        elif part == "memory":
            print(f"memory: {result['waiting']} waiting jobs (each on its own pending parent)"
                  f" cost {result['bytes_per_waiting_job']:,.0f} bytes each of daemon RSS "
                  f"({result['rss_parents_mib']:.0f} -> {result['rss_with_waiting_mib']:.0f} "
                  f"MiB); restart with them {result['restart_s']:.2f} s (recovery of the index "
                  f"{result['recovery_s']:.2f} s), "
                  f"{result['waiting_after_restart']} waiting again, RSS "
                  f"{result['rss_after_restart_mib']:.0f} MiB", flush=True)
        else:
            mark = "PASS" if result["claimed_while_parked"] == 0 and max(
                result["file_max_ms"], result["cli_max_ms"]) < 1000 else "MISS"
            print(f"parks: {result['parked']} parked, {result['claimed_while_parked']} claimed "
                  f"(slots held) while parked; {result['woke']} woke; signal -> handler running "
                  f"again: CLI p50 {result['cli_p50_ms']:.0f} ms max {result['cli_max_ms']:.0f}"
                  f" ms, dropped file p50 {result['file_p50_ms']:.0f} ms p95 "
                  f"{result['file_p95_ms']:.0f} ms max {result['file_max_ms']:.0f} ms "
                  f"[{mark}: 0 slots, < 1 s]; a `ckptd signal` process takes "
                  f"{result['cli_process_s']:.2f} s of its own (interpreter start)", flush=True)


if __name__ == "__main__":
    main()
