"""ckptd against its best peer (Huey on Redis), on the same task, in one run, alternating.

The task: N no-op jobs with a 100-byte payload, each making one loopback Redis INCR (the
same Redis counts the jobs of both, which is also how the end is seen). Two worker
processes on each side; ckptd's daemon with the fsync mode(s) given (default ``never``: Huey
keeps its queue in memory) on the store folder given, Huey 2.x/3.x with a 2-process consumer
on a Redis server this benchmark starts on a loopback port. Huey and Redis are not
dependencies of ckptd: ``make bench-peers`` installs them (``pip install -e '.[bench]'``)
and runs this; ``redis-server`` must be installed (``apt-get install redis-server``).

Paths measured for ckptd (each against the same Huey run of that round):

- ``readme``: what the README shows, one ``client.submit()`` per job from one producer,
  ``ckptd worker`` with its default flags (the producer is on the daemon's host, so the
  client writes each job into the store itself);
- ``relayed``: the same loop from a client that always goes through the daemon
  (``direct=False``, as from another machine): one submit in flight at a time;
- ``threads``: 4 threads sharing one such client, each submitting one job at a time (4 in
  flight on one connection);
- ``async``: an ``AsyncClient`` with 64 submits in flight (an asyncio application);
- ``bulk``: ``client.submit_many()`` of 500 jobs, default worker flags.

For each it prints jobs/s end to end (first submit to last INCR), the submit rate, the
single-submit round trip where there is one (p50/p99 while the workers run), the CPU per
job (from /proc) of ckptd's daemon and workers and of the producer (this process while it
submits), and the ratio to Huey; medians of ``--runs`` rounds, with the filesystem of
``--dir`` named. With several ``--fsync`` modes every path runs in each, and the ratio of
each mode to ``never`` is printed too.

    python bench/peers.py                          # 20,000 jobs, 3 rounds, store in /dev/shm
    python bench/peers.py --dir /mnt/ext4 --runs 3 --n 20000
    python bench/peers.py --dir /mnt/ext4 --paths bulk,async --fsync never,batch
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    cpu_seconds,
    filesystem_of,
    free_port,
    start_daemon,
    stop,
    submit_from_threads,
    submit_in_flight,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402

QUEUE = "peers"
PAYLOAD = {"data": "x" * 88}  # 100 bytes of JSON
COUNTER = "bench:done"
CHUNK = 500
THREADS = 4
IN_FLIGHT = 64
PATHS = ("readme", "relayed", "threads", "async", "bulk")

try:
    import huey  # noqa: F401
    import redis
except ImportError:
    raise SystemExit("bench/peers.py needs Huey and redis-py: make bench-peers (or pip "
                     "install -e '.[bench]')") from None


class Redis:
    """A redis-server of our own on a free loopback port, nothing saved to disk."""

    def __init__(self, folder: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: apt-get install redis-server")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", folder],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def done(self) -> int:
        return int(self.client.get(COUNTER) or 0)

    def wait(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.done() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.done()} of {n} jobs done in {timeout:g}s")
            time.sleep(0.002)

    def close(self) -> None:
        stop([self.proc])


def environment(redis_port: int) -> dict[str, str]:
    return dict(os.environ, CKPTD_LOG_LEVEL="warning", BENCH_REDIS_PORT=str(redis_port),
                PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and all their descendants (from /proc)."""
    total = 0.0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            pass
    return total


def run_huey(redis_: Redis, n: int) -> dict[str, float]:
    redis_.client.flushall()
    env = environment(redis_.port)
    consumer = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "huey_consumer"),
                                 "peer_tasks.huey", "-w", "2", "-k", "process", "-q"],
                                cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        sys.path.insert(0, HERE)
        os.environ["BENCH_REDIS_PORT"] = str(redis_.port)
        import peer_tasks

        peer_tasks.huey.storage.conn.ping()
        time.sleep(1.0)  # the consumer's processes start
        workers0, broker0 = tree_cpu([consumer.pid]), cpu_seconds(redis_.proc.pid)
        mine0 = time.process_time()
        started = time.perf_counter()
        for _ in range(n):
            peer_tasks.huey_job(PAYLOAD)
        submitted = time.perf_counter()
        producer = time.process_time() - mine0
        redis_.wait(n, timeout=600)
        ended = time.perf_counter()
        workers = tree_cpu([consumer.pid]) - workers0
        broker = cpu_seconds(redis_.proc.pid) - broker0
    finally:
        stop([consumer])
    return {"e2e": n / (ended - started), "submit": n / (submitted - started),
            "producer_us": 1e6 * producer / n, "workers_us": 1e6 * workers / n,
            "redis_us": 1e6 * broker / n}


def produce(path: str, control: str, n: int, latencies: list[float]) -> None:
    """Submit ``n`` jobs the way ``path`` says."""
    if path == "async":
        asyncio.run(submit_in_flight(control, QUEUE, PAYLOAD, n, IN_FLIGHT))
        return
    with Client(control, timeout=60, direct=path in ("readme", "bulk")) as client:
        if path == "bulk":
            for first in range(0, n, CHUNK):
                client.submit_many(QUEUE, [PAYLOAD] * min(CHUNK, n - first))
        elif path == "threads":
            submit_from_threads(client, QUEUE, PAYLOAD, n, THREADS)
        else:
            clock: Callable[[], float] = time.perf_counter
            for _ in range(n):
                t0 = clock()
                client.submit(QUEUE, PAYLOAD)
                latencies.append(clock() - t0)


def run_ckptd(redis_: Redis, n: int, path: str, folder: str, fsync: str
              ) -> dict[str, float]:
    redis_.client.flushall()
    env = environment(redis_.port)
    os.makedirs(folder, exist_ok=True)
    root = tempfile.mkdtemp(prefix="peers-", dir=folder)
    daemon, control = start_daemon(os.path.join(root, "store"), os.path.join(root, "ready"),
                                   env, "--fsync", fsync)
    workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                                 "--queue", QUEUE, "peer_tasks:ckptd_job"], cwd=HERE, env=env)
               for _ in range(2)]
    latencies: list[float] = []
    try:
        with Client(control, timeout=60) as looking:
            wait_for_workers(looking, 2)
        pids = [w.pid for w in workers]
        cpu0, workers0 = cpu_seconds(daemon.pid), tree_cpu(pids)
        broker0, mine0 = cpu_seconds(redis_.proc.pid), time.process_time()
        started = time.perf_counter()
        produce(path, control, n, latencies)
        submitted = time.perf_counter()
        producer = time.process_time() - mine0
        redis_.wait(n, timeout=600)
        ended = time.perf_counter()
        cpu = cpu_seconds(daemon.pid) - cpu0
        worker_cpu = tree_cpu(pids) - workers0
        broker = cpu_seconds(redis_.proc.pid) - broker0
    finally:
        stop([*workers, daemon])
        shutil.rmtree(root, ignore_errors=True)
    figures = {"e2e": n / (ended - started), "submit": n / (submitted - started),
               "daemon_us": 1e6 * cpu / n, "workers_us": 1e6 * worker_cpu / n,
               "producer_us": 1e6 * producer / n, "redis_us": 1e6 * broker / n}
    if latencies:
        latencies.sort()
        figures["rtt_p50_us"] = 1e6 * latencies[len(latencies) // 2]
        figures["rtt_p99_us"] = 1e6 * latencies[int(len(latencies) * 0.99)]
    return figures


def median(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default=",".join(PATHS),
                        help="readme: one submit() per job (on the daemon's host: written "
                             "directly); relayed: the same through the daemon; threads: 4 "
                             "threads sharing one client through the daemon; async: an "
                             "AsyncClient with 64 in flight; bulk: submit_many of 500")
    parser.add_argument("--fsync", default="never",
                        help="ckptd's fsync mode(s), comma-separated (never, batch, always)")
    parser.add_argument("--dir", default="/dev/shm", help="where ckptd's store goes")
    args = parser.parse_args()
    paths = args.paths.split(",")
    modes = args.fsync.split(",")
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(PATHS)}")
    fs = filesystem_of(args.dir)
    runs = [(p, m) for p in paths for m in modes]
    print(f"peers: {args.n} jobs x {args.runs} rounds; ckptd store in {args.dir} ({fs}), "
          f"fsync {', '.join(modes)}; 2 workers each; one Redis INCR per job; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    scratch = tempfile.mkdtemp(prefix="peers-redis-")
    redis_ = Redis(scratch)
    huey_rows: list[dict[str, float]] = []
    results: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    try:
        for round_ in range(args.runs):
            for name in ["huey", *runs]:  # alternating, in one run
                if name == "huey":
                    row = run_huey(redis_, args.n)
                    huey_rows.append(row)
                    label = "huey"
                else:
                    path, mode = name
                    row = run_ckptd(redis_, args.n, path, args.dir, mode)
                    results[name].append(row)
                    label = f"{path}/{mode}"
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in row.items())
                print(f"  round {round_ + 1} {label:<14} {shown}", flush=True)
    finally:
        redis_.close()
        shutil.rmtree(scratch, ignore_errors=True)
    report(args.runs, fs, huey_rows, results)


def report(runs: int, fs: str, huey_rows: list[dict[str, float]],
           results: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    huey = median(huey_rows, "e2e")
    print(f"\nmedians of {runs} ({fs}; load {os.getloadavg()[0]:.1f} at the end):")
    print(f"  huey             e2e {huey:,.0f} jobs/s, enqueue {median(huey_rows, 'submit'):,.0f}"
          f"/s; CPU per job: producer {median(huey_rows, 'producer_us'):.0f} us, consumer "
          f"{median(huey_rows, 'workers_us'):.0f} us, redis {median(huey_rows, 'redis_us'):.0f}"
          " us")
    for (path, mode), rows in results.items():
        e2e = median(rows, "e2e")
        extra = ""
        if any("rtt_p50_us" in r for r in rows):
            extra = (f"; submit round trip p50 {median(rows, 'rtt_p50_us'):,.0f} us "
                     f"p99 {median(rows, 'rtt_p99_us'):,.0f} us")
        if mode != "never" and (path, "never") in results:
            never = median(results[(path, "never")], "e2e")
            extra += f"; {100 * e2e / never:.0f}% of never"
        print(f"  ckptd {path + '/' + mode:<10} e2e {e2e:,.0f} jobs/s = {e2e / huey:.2f}x Huey, "
              f"submit {median(rows, 'submit'):,.0f}/s; CPU per job: daemon "
              f"{median(rows, 'daemon_us'):.0f} us, workers {median(rows, 'workers_us'):.0f} us,"
              f" producer {median(rows, 'producer_us'):.0f} us{extra}")


if __name__ == "__main__":
    main()
