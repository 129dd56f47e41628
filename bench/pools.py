"""Worker pools: CPU-bound jobs in child processes against threads, and many waiting jobs on
one event loop.

A real daemon and one real worker per case, on a temporary store:

- ``process`` and ``thread``: two jobs that each burn 1 s of CPU, on a worker with
  ``--concurrency 2``. In child processes they run side by side on two cores; in threads
  the GIL runs them one after the other (at least 2 s).
- ``async``: 200 jobs that each ``await asyncio.sleep(0.5)``, ``--concurrency 100``.

For each it prints the wall time from the first handler's start to the last one's end (as
the handlers measured it) and from submit to the last job seen done by the client, the
median of ``--runs`` runs, and how many distinct processes ran the jobs.

    python bench/pools.py                # 3 runs of each case
    python bench/pools.py --runs 5 --cases process,thread
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import start_daemon, stop, wait_for_workers  # noqa: E402
from ckptd.client.client import Client  # noqa: E402

CASES = {
    # name: (pool, concurrency, handler, jobs, payload)
    "process": ("process", 2, "handlers:burn", 2, {"seconds": 1.0}),
    "thread": ("thread", 2, "handlers:burn", 2, {"seconds": 1.0}),
    "async": ("async", 100, "handlers:nap", 200, {"seconds": 0.5}),
}


def run_case(name: str, control: str, env: dict[str, str]) -> dict[str, Any]:
    """One run of a case on a fresh worker; return its figures."""
    pool, concurrency, handler, n, payload = CASES[name]
    queue = f"pools-{name}"
    worker = subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                               "--queue", queue, "--pool", pool, "-c", str(concurrency),
                               handler], cwd=HERE, env=env)
    try:
        with Client(control, timeout=30) as client:
            wait_for_workers(client, 1)
            started = time.time()
            ids = client.submit_many(queue, [payload] * n)
            client.wait_many(queue, ids, timeout=300)
            seen_done = time.time() - started
            results = [client.result(queue, job_id) for job_id in ids]
    finally:
        stop([worker])
    return {"handlers": max(r["end"] for r in results) - min(r["start"] for r in results),
            "client": seen_done, "processes": len({r.get("pid") for r in results}) or 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    work = tempfile.mkdtemp(prefix="ckptd-bench-pools-")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]),
               CKPTD_LOG_LEVEL="warning")
    daemon, control = start_daemon(os.path.join(work, "store"), os.path.join(work, "ready"),
                                   env, "--fsync", "never")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPU(s), load {load:.2f} before the runs; medians of {args.runs} "
          "run(s); wall = first handler start -> last handler end (client: submit -> all "
          "seen done)")
    try:
        for name in cases:
            pool, concurrency, _, n, payload = CASES[name]
            runs = [run_case(name, control, env) for _ in range(args.runs)]
            wall = statistics.median(r["handlers"] for r in runs)
            best = min(r["handlers"] for r in runs)
            client = statistics.median(r["client"] for r in runs)
            cpu = name != "async"
            what = f"{n} jobs x {payload['seconds']:g}s {'CPU' if cpu else 'await sleep'}"
            cores = f"  {n * payload['seconds'] / wall:4.2f} cores busy" if cpu else ""
            print(f"{name:8} -c {concurrency:<4} {what:26} wall {wall:6.3f}s (best {best:.3f}s,"
                  f" client {client:.3f}s)  {runs[0]['processes']} process(es){cores}")
    finally:
        stop([daemon])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
