"""Retention benchmark: dispatch latency p99 with and without a retention sweep at work.

A real daemon and 2 workers (the store on tmpfs unless ``--root`` says otherwise); jobs are
submitted at a steady rate (``--rate`` per second for ``--seconds``) and each handler records
when it started next to when its job was submitted: the dispatch latency (submit ->
handler). Two setups, the same load:

- ``without``: retention off (keep_done = 0s): nothing is ever removed;
- ``with``: keep_done = ``--keep`` (2s), retention_interval = ``--interval`` (1s), and
  done/ holds ``--old`` jobs that ended a day ago when the daemon starts, so that the first
  sweep removes them all (and every later one the jobs that just flowed) while the load
  runs.

It prints p50/p99/max per run and the median of the runs' p99 for each setup.

    python bench/retention.py                       # 3 runs each, 50,000 old jobs
    python bench/retention.py --runs 5 --old 200000 --root /dev/shm/ckptd-ret
    python bench/retention.py --root /mnt/some-ext4/ckptd-ret --fsync batch   # a real disk
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import settle, start_daemon, stop, wait_for_workers  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.ids import new_id  # noqa: E402
from ckptd.core.jobs import encode, new_job  # noqa: E402

QUEUE = "flow"


def filesystem(path: str) -> str:
    """The file system type of ``path`` (tmpfs, ext4, ...), from /proc/mounts."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if real.startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    return kind


def old_done_jobs(root: str, count: int) -> None:
    """``count`` done jobs that ended a day ago."""
    folder = os.path.join(root, QUEUE, "done")
    os.makedirs(folder, exist_ok=True)
    for name in ("pending", "claimed", "failed", "state", "blobs", "tmp"):
        os.makedirs(os.path.join(root, QUEUE, name), exist_ok=True)
    day_ago = time.time() - 86400
    for _ in range(count):
        job_id = new_id(day_ago)
        path = os.path.join(folder, f"{job_id}.json")
        with open(path, "wb") as handle:
            handle.write(encode(new_job(QUEUE, job_id, {}, day_ago, max_attempts=3)))
        os.utime(path, (day_ago, day_ago))


def one_run(base: str, sweep: bool, args: argparse.Namespace) -> dict[str, float]:
    root = os.path.join(base, "store")
    shutil.rmtree(root, ignore_errors=True)
    if sweep:
        old_done_jobs(root, args.old)
    settle()  # what the last run and the old jobs left reaches the disk before this one
    config = os.path.join(base, "ckptd.toml")
    with open(config, "w") as handle:
        handle.write(f'retention_interval = "{args.interval}"\n'
                     f'keep_done = "{args.keep if sweep else "0s"}"\nkeep_failed = "0s"\n')
    log = os.path.join(base, "latency.log")
    if os.path.exists(log):
        os.unlink(log)
    env = dict(os.environ, CKPTD_CONFIG=config, CKPTD_LOG_LEVEL="warning", BENCH_LOG=log,
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    daemon, control = start_daemon(root, os.path.join(base, "ready"), env,
                                   "--fsync", args.fsync)
    workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                                 "--queue", QUEUE, "-c", "4", "handlers:stamped"], cwd=HERE,
                                env=env) for _ in range(2)]
    try:
        with Client(control, timeout=60) as client:
            wait_for_workers(client, 2)
            batch = max(1, args.rate // 20)  # a request every 50 ms
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < args.seconds:
                due = started + sent / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                client.submit_many(QUEUE, [{"at": time.time()} for _ in range(batch)])
                sent += batch
            client.wait_many(QUEUE, None, timeout=120)
            removed = client.status(QUEUE)["queues"][QUEUE]["retention"]["removed_done"]
    finally:
        stop([*workers, daemon])
    with open(log) as handle:
        latencies = sorted(float(b) - float(a) for a, b in (line.split() for line in handle))
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"jobs": len(latencies), "p50_ms": 1000 * p(0.50), "p99_ms": 1000 * p(0.99),
            "max_ms": 1000 * latencies[-1], "removed": removed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old", type=int, default=50_000, help="done jobs there at start")
    parser.add_argument("--rate", type=int, default=1000, help="jobs submitted per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", default="2s", help="keep_done of the 'with' runs")
    parser.add_argument("--interval", default="1s", help="retention_interval")
    parser.add_argument("--fsync", default="never", help="the daemon's --fsync (never on "
                        "tmpfs; the default, batch, on a real disk)")
    parser.add_argument("--root", default=None, help="where (default: a folder in /dev/shm)")
    args = parser.parse_args()
    base = args.root or tempfile.mkdtemp(prefix="ckptd-retention-",
                                         dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.makedirs(base, exist_ok=True)
    print(f"store on {filesystem(base)} ({base}), fsync {args.fsync}; {args.rate} jobs/s "
          f"for {args.seconds:g}s, "
          f"2 workers x 4; 'with': {args.old} old done jobs to sweep, keep_done "
          f"{args.keep}, interval {args.interval}", flush=True)
    results: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    try:
        for run in range(args.runs):
            for name in ("without", "with"):
                result = one_run(base, name == "with", args)
                results[name].append(result)
                print(f"run {run + 1} {name:>7} sweep: {result['jobs']} jobs, p50 "
                      f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max "
                      f"{result['max_ms']:.1f} ms, removed {result['removed']}", flush=True)
    finally:
        if args.root is None:
            shutil.rmtree(base, ignore_errors=True)
    summary = {name: statistics.median(r["p99_ms"] for r in rows)
               for name, rows in results.items()}
    print(f"dispatch latency p99, median of {args.runs} runs ({filesystem(base)}): without "
          f"the sweep {summary['without']:.2f} ms, with it {summary['with']:.2f} ms")
    print(json.dumps({"p99_ms_median": summary}))


if __name__ == "__main__":
    main()
