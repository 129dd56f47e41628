"""Pause benchmark: how soon claims stop after ``touch <root>/Q/paused`` and start again
after ``rm`` (the promise: within 100 ms).

A real daemon and 2 workers x 2 threads (no-op handler), the store on tmpfs by default. Each
round:

- **stop**: jobs flow; the paused file is written; the last claim of the queue after that
  (from the ``claimed`` times the daemon wrote in the job files: the time its loop turn
  began) tells how long dispatch went on (0 when no job was claimed after the write), and
  the last handler start after it bounds that from above (it adds the trip to the worker
  and the jobs a worker had prefetched);
- **resume**: the queue is paused with jobs waiting and the workers idle; the file is
  removed; the first claim after the ``rm`` (and the first handler start, which adds the
  trip to the worker) tells how long claims took to resume.

It prints each round and the medians.

    python bench/controls.py                   # 7 rounds on /dev/shm
    python bench/controls.py --rounds 15 --root /mnt/some-ext4/ckptd-ctl
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

from bench.common import start_daemon, stop, wait_for_workers  # noqa: E402
from bench.retention import filesystem  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.timefmt import parse_iso  # noqa: E402

QUEUE = "ctl"


def claimed_at(root: str, job_ids: list[str]) -> list[float]:
    """When each of these (finished) jobs was claimed, from their files in done/."""
    found = []
    for job_id in job_ids:
        with open(os.path.join(root, QUEUE, "done", f"{job_id}.json")) as handle:
            job = json.load(handle)
        found += [parse_iso(h["claimed"]) for h in job.get("history", []) if "claimed" in h]
    return found


def started(log: str) -> list[float]:
    """Handler start times recorded so far (second column of the stamped handler's log)."""
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return [float(line.split()[1]) for line in handle if line.strip()]


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def stop_round(client: Client, root: str, log: str, flow: int) -> tuple[float, float, int]:
    """Jobs flow; write the paused file; seconds from the write to the last claim after it
    and to the last handler start after it, and the claims in the 100 ms before the write
    (the flow was on)."""
    paused = os.path.join(root, QUEUE, "paused")
    before = len(started(log))
    ids = client.submit_many(QUEUE, [{"at": 0.0}] * flow)
    wait_until(lambda: len(started(log)) >= before + flow // 10, 60, "the flow to start")
    touched = time.time()
    with open(paused, "w") as handle:
        handle.write("bench\n")
    time.sleep(1.0)
    resumed = time.time()
    os.unlink(paused)
    client.wait_many(QUEUE, ids, timeout=120)
    claims = claimed_at(root, ids)
    after = [t for t in claims if touched < t < resumed]
    before_write = sum(1 for t in claims if touched - 0.1 < t <= touched)
    ran = [t for t in started(log)[before:] if touched < t < resumed]
    return ((max(after) - touched if after else 0.0), (max(ran) - touched if ran else 0.0),
            before_write)


def resume_round(client: Client, root: str, log: str, waiting: int) -> tuple[float, float]:
    """Jobs wait in a paused queue; remove the file; seconds from the rm to the first claim
    and to the first handler start."""
    paused = os.path.join(root, QUEUE, "paused")
    with open(paused, "w") as handle:
        handle.write("bench\n")
    wait_until(lambda: client.status(QUEUE)["queues"][QUEUE]["paused"] is not None, 10,
               "the daemon to see the pause")
    before = len(started(log))
    ids = client.submit_many(QUEUE, [{"at": 0.0}] * waiting)
    time.sleep(0.3)
    if len(started(log)) != before:
        raise RuntimeError("jobs of the paused queue ran")
    removed = time.time()
    os.unlink(paused)
    client.wait_many(QUEUE, ids, timeout=60)
    claim = min(claimed_at(root, ids)) - removed
    handler = min(started(log)[before:]) - removed
    return claim, handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--flow", type=int, default=4000, help="jobs per stop round")
    parser.add_argument("--waiting", type=int, default=8, help="jobs per resume round")
    parser.add_argument("--root", default=None, help="where (default: a folder in /dev/shm)")
    args = parser.parse_args()
    base = args.root or tempfile.mkdtemp(prefix="ckptd-controls-",
                                         dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.makedirs(base, exist_ok=True)
    root, log = os.path.join(base, "store"), os.path.join(base, "starts.log")
    shutil.rmtree(root, ignore_errors=True)
    if os.path.exists(log):
        os.unlink(log)
    fs = filesystem(base)
    print(f"store on {fs} ({base}); 2 workers x 2, {args.rounds} rounds", flush=True)
    env = dict(os.environ, CKPTD_LOG_LEVEL="warning", BENCH_LOG=log,
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    env.pop("CKPTD_CONFIG", None)
    daemon, control = start_daemon(root, os.path.join(base, "ready"), env, "--fsync", "never")
    workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                                 "--queue", QUEUE, "-c", "2", "handlers:stamped"], cwd=HERE,
                                env=env) for _ in range(2)]
    stops, last_runs, claims, handlers = [], [], [], []
    try:
        with Client(control, timeout=60) as client:
            wait_for_workers(client, 2)
            client.wait_many(QUEUE, client.submit_many(QUEUE, [{"at": 0.0}] * 10))  # the
            # queue's folders exist and are watched
            for n in range(args.rounds):
                stopped, last_run, before_write = stop_round(client, root, log, args.flow)
                if not before_write:
                    raise RuntimeError("no claim in the 100 ms before the write: no flow")
                stops.append(stopped)
                last_runs.append(last_run)
                claim, handler = resume_round(client, root, log, args.waiting)
                claims.append(claim)
                handlers.append(handler)
                print(f"round {n + 1}: claims stopped {1000 * stops[-1]:.1f} ms after the "
                      f"write ({before_write} in the 100 ms before it; last handler start "
                      f"{1000 * last_run:.1f} ms after it); resumed {1000 * claim:.1f} ms "
                      f"after the rm (first handler start {1000 * handler:.1f} ms)",
                      flush=True)
    finally:
        stop([*workers, daemon])
        if args.root is None:
            shutil.rmtree(base, ignore_errors=True)
    medians = {"stop_ms": 1000 * statistics.median(stops),
               "last_start_ms": 1000 * statistics.median(last_runs),
               "resume_claim_ms": 1000 * statistics.median(claims),
               "resume_handler_ms": 1000 * statistics.median(handlers)}
    print(f"median of {args.rounds} rounds ({fs}): claims stop {medians['stop_ms']:.1f} ms "
          f"after touch (last handler start {medians['last_start_ms']:.1f} ms), resume "
          f"{medians['resume_claim_ms']:.1f} ms after rm (first handler "
          f"start {medians['resume_handler_ms']:.1f} ms); max resume "
          f"{1000 * max(claims):.1f} ms")
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
