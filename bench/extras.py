"""What hooks, tracing and encryption cost per job, in microseconds, against the same run
without them (issue 27).

Two measures, each printed as medians of ``--runs`` runs, the variants alternating within
each run so that the machine's load hits them alike:

- per job in one process (CPU time of the thread): what a worker does around each handler
  (``Around.call``: the job's log context, hooks, span, opening the payload and sealing the
  result) and what a client
  does before each submit (``Preparer.prepare``), over ``--calls`` jobs, against the bare
  handler call and the bare submit body;
- end to end: a real daemon and 2 workers (4 threads each) on tmpfs run ``--n`` no-op jobs
  submitted in requests of 250; the wall time and the CPU of every process (daemon,
  workers, this client) per job, and the difference to the run without the feature.

Tracing exports every span as a line of JSON to /dev/null (``tracing = "file:/dev/null"``):
the SDK's work and the export, without a collector. Encryption: AES-256-GCM of payload and
result (and no checkpoint: the no-op handler saves none).

    python bench/extras.py                      # 20,000 calls, 5,000 jobs, 3 runs
    python bench/extras.py --n 2000 --runs 1    # quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench.common import (  # noqa: E402
    NOOP_PAYLOAD,
    NOOP_QUEUE,
    cpu_seconds,
    filesystem_of,
    start_daemon,
    start_noop_workers,
    stop,
    wait_for_workers,
)
from bench.handlers import CountingHook  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.client.preparing import Preparer  # noqa: E402
from ckptd.codec.crypto import new_key_line, parse_keys  # noqa: E402
from ckptd.worker.around import Around  # noqa: E402
from ckptd.worker.job import Job  # noqa: E402

KEY_LINE = new_key_line("k1")
VARIANTS = ("none", "one hook", "tracing", "encryption")


def _setting_env(variant: str, keys_file: str) -> dict[str, str]:
    """The settings of a variant, as the environment of the daemon and workers."""
    return {"none": {}, "one hook": {"CKPTD_HOOKS": "handlers:CountingHook"},
            "tracing": {"CKPTD_TRACING": "file:/dev/null"},
            "encryption": {"CKPTD_ENCRYPTION_KEY_FILE": keys_file}}[variant]


def _client_options(variant: str) -> dict[str, Any]:
    keys = parse_keys(KEY_LINE, "bench")
    return {"none": {}, "one hook": {"hooks": [CountingHook()]},
            "tracing": {"tracing": "file:/dev/null"}, "encryption": {"keys": keys}}[variant]


# -- per job, in one process ----------------------------------------------------------------

def _per_call(fn: Callable[[], Any], calls: int) -> float:
    """CPU µs per call of this thread (less at the mercy of the machine's load than the
    wall clock: other processes' time is not counted, their cache misses are)."""
    started = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - started) / calls * 1e6


def micro(calls: int) -> dict[str, dict[str, float]]:
    """µs per job of one run: the worker's side and the client's, per variant."""
    keys = parse_keys(KEY_LINE, "bench")
    sealed = keys.seal(NOOP_PAYLOAD, "payload")

    def noop(job: Job) -> Any:
        return {"ok": True}

    body: dict[str, Any] = {"meta": {}}
    arounds = {"none": Around(), "one hook": Around([CountingHook()]),
               "tracing": Around(tracing="file:/dev/null"), "encryption": Around(keys=keys)}
    preparers = {v: Preparer(**_client_options(v)) for v in VARIANTS}
    out: dict[str, dict[str, float]] = {"worker": {}, "client": {}}
    out["worker"]["bare handler"] = _per_call(
        lambda: noop(Job("j", NOOP_QUEUE, 1, NOOP_PAYLOAD)), calls)
    out["client"]["bare body"] = _per_call(lambda: {"queue": NOOP_QUEUE,
                                                    "payload": NOOP_PAYLOAD}, calls)
    for variant in VARIANTS:
        around = arounds[variant]
        payload = sealed if variant == "encryption" else NOOP_PAYLOAD
        out["worker"][variant] = _per_call(
            lambda a=around, p=payload: a.call(noop, Job("j", NOOP_QUEUE, 1, p), body), calls)
        out["client"][variant] = _per_call(
            lambda p=preparers[variant]: p.prepare(NOOP_QUEUE, NOOP_PAYLOAD, "id-1"), calls)
    return out


# -- end to end -----------------------------------------------------------------------------

def e2e(variant: str, n: int, base: str, keys_file: str) -> tuple[float, float]:
    """Seconds and CPU seconds (all processes) of ``n`` no-op jobs with ``variant`` on."""
    root = tempfile.mkdtemp(dir=base)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), HERE]),
           "CKPTD_LOG_LEVEL": "warning", **_setting_env(variant, keys_file)}
    daemon, control = start_daemon(root, os.path.join(root, ".ready"), env, "--fsync",
                                   "batch")
    workers = start_noop_workers(control, 2, 4, 0, env)
    try:
        with Client(control, timeout=60, **_client_options(variant)) as client:
            wait_for_workers(client, 2)
            procs = [daemon, *workers]
            cpu0 = sum(cpu_seconds(p.pid) for p in procs) + time.process_time()
            started = time.perf_counter()
            ids = []
            for start in range(0, n, 250):
                ids += client.submit_many(NOOP_QUEUE, [NOOP_PAYLOAD] * min(250, n - start))
            client.wait_many(NOOP_QUEUE, None, timeout=600)
            took = time.perf_counter() - started
            cpu = sum(cpu_seconds(p.pid) for p in procs) + time.process_time() - cpu0
    finally:
        stop([daemon, *workers])
        shutil.rmtree(root, ignore_errors=True)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--no-e2e", action="store_true")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; runs: {args.runs}")
    runs = [micro(args.calls) for _ in range(args.runs)]
    for side in ("worker", "client"):
        print(f"\nper job in one process, {side} side (µs, median of {args.runs}):")
        names = list(runs[0][side])
        base = statistics.median(r[side]["none"] for r in runs)
        for name in names:
            value = statistics.median(r[side][name] for r in runs)
            extra = f"  (+{value - base:.1f} over none)" if name not in ("none",) and \
                not name.startswith("bare") else ""
            print(f"  {name:<14} {value:8.2f}{extra}")
    if args.no_e2e:
        return
    base_dir = tempfile.mkdtemp(dir=args.dir, prefix="ckptd-extras-")
    keys_file = os.path.join(base_dir, "keys")
    with open(keys_file, "w") as handle:
        handle.write(KEY_LINE + "\n")
    print(f"\nend to end: {args.n} no-op jobs, daemon + 2 workers x 4 threads, fsync batch, "
          f"on {filesystem_of(base_dir)}")
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.runs):
            for variant in VARIANTS:
                results[variant].append(e2e(variant, args.n, base_dir, keys_file))
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    wall0 = statistics.median(t for t, _ in results["none"]) / args.n * 1e6
    cpu0 = statistics.median(c for _, c in results["none"]) / args.n * 1e6
    print(f"  {'variant':<12} {'jobs/s':>8} {'wall µs/job':>12} {'Δ':>8} {'CPU µs/job':>11} "
          f"{'Δ':>8}")
    for variant in VARIANTS:
        wall = statistics.median(t for t, _ in results[variant]) / args.n * 1e6
        cpu = statistics.median(c for _, c in results[variant]) / args.n * 1e6
        print(f"  {variant:<12} {1e6 / wall:8.0f} {wall:12.1f} {wall - wall0:+8.1f} "
              f"{cpu:11.1f} {cpu - cpu0:+8.1f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
