"""Status with a million pending jobs: the daemon answers from its index, not the folders.

Writes N job files straight into ``pending/`` of a store under the current folder (os.open /
os.write in a loop, no ckptd code), starts a real daemon on it, waits for its recovery, then
times ``status`` requests through the control socket (and a few whole ``ckptd status --json``
commands, which add the interpreter's start-up) and prints p50/p95/max, the recovery time and
the daemon's memory. Everything it made is removed at the end.

    python bench/status.py              # 1,000,000 jobs
    python bench/status.py --n 100000 --calls 50
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
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import rss_mib, start_daemon, stop  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.ids import new_id  # noqa: E402
from ckptd.core.timefmt import utc_iso  # noqa: E402

QUEUE = "bulk"


def write_jobs(root: str, n: int) -> float:
    """Write ``n`` pending job files; return the seconds it took."""
    pending = os.path.join(root, QUEUE, "pending")
    os.makedirs(pending)
    started = time.perf_counter()
    base = time.time() - n * 1e-6
    created = utc_iso(base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(n):
        job_id = new_id(base + i * 1e-6)
        data = (f'{{"id": "{job_id}", "queue": "{QUEUE}", "payload": {{"n": {i}}}, '
                f'"created": "{created}", "attempts": 0, "max_attempts": 3, "rev": 0}}\n'
                ).encode()
        fd = os.open(os.path.join(pending, f"{job_id}.json"), flags, 0o640)
        os.write(fd, data)
        os.close(fd)
        if i and i % 200_000 == 0:
            print(f"  {i:,} files written ({time.perf_counter() - started:.0f}s)", flush=True)
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pending jobs to write")
    parser.add_argument("--calls", type=int, default=20, help="status requests to time")
    parser.add_argument("--cli-calls", type=int, default=5,
                        help="whole 'ckptd status --json' commands to time")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix=".bench-status-", dir=os.getcwd())
    daemon: subprocess.Popen[bytes] | None = None
    try:
        print(f"writing {args.n:,} job files into {root}/{QUEUE}/pending/ ...", flush=True)
        wrote = write_jobs(root, args.n)
        print(f"  done in {wrote:.1f}s ({args.n / wrote:,.0f} files/s)")
        log_path = os.path.join(root, "daemon.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
        env["CKPTD_LOG_LEVEL"] = "info"
        env["PYTHONPATH"] = REPO
        started = time.perf_counter()
        daemon, control = start_daemon(root, os.path.join(root, "ready.json"), env,
                                       "--fsync", "never", timeout=3600, log=log_path)
        recovery = time.perf_counter() - started
        with open(log_path) as handle:
            recovered = [line.strip() for line in handle if "recovered the index" in line]
        with Client(control, timeout=30) as client:
            answer = client.status()
            assert answer["queues"][QUEUE]["pending"] == args.n, answer
            timings = []
            for _ in range(args.calls):
                t = time.perf_counter()
                client.status()
                timings.append(time.perf_counter() - t)
        cli = []
        for _ in range(args.cli_calls):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "status",
                                  "--json"], capture_output=True, env=env, cwd=REPO, check=True)
            cli.append(time.perf_counter() - t)
            assert json.loads(out.stdout)["queues"][QUEUE]["pending"] == args.n
        ms = [t * 1000 for t in timings]
        print(f"pending jobs:         {args.n:,}")
        print(f"daemon start + recovery: {recovery:.1f}s (spawn to ready file)")
        for line in recovered:
            print(f"  daemon log: {line[:160]}")
        print(f"daemon RSS:           {rss_mib(daemon.pid):.0f} MiB")
        print(f"status via the control socket, {args.calls} calls: p50 "
              f"{statistics.median(ms):.2f} ms, p95 {percentile(ms, 0.95):.2f} ms, max "
              f"{max(ms):.2f} ms")
        if cli:
            print(f"'ckptd status --json' whole command (interpreter start-up included), "
                  f"{len(cli)} runs: p50 {statistics.median(cli) * 1000:.0f} ms, max "
                  f"{max(cli) * 1000:.0f} ms")
    finally:
        if daemon is not None:
            stop([daemon], timeout=60)
        print(f"removing {root} ...", flush=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
