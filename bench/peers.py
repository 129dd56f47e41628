"""ckptd against its best peer (Huey on Redis), on the same task, in one run, alternating.

The task: N no-op jobs with a 100-byte payload, each making one loopback Redis INCR (the
same Redis counts the jobs of both, which is also how the end is seen). Two worker
processes on each side; ckptd's daemon with fsync ``never`` on the store folder given, Huey
3.x with a 2-process consumer on a Redis server this benchmark starts on a loopback port.

Paths measured for ckptd (each against the same Huey run of that round):

- ``readme``: what the README shows, one ``client.submit()`` per job from one producer,
  ``ckptd worker`` with its default flags (the producer is on the daemon's host, so the
  client writes each job into the store itself);
- ``relayed``: the same loop from a client that always goes through the daemon
  (``direct=False``, as from another machine): its round trip is a submit's on loopback;
- ``bulk``: ``client.submit_many()`` of 500 jobs, default worker flags.

For each it prints jobs/s end to end (first submit to last INCR), the submit rate, ckptd's
single-submit round trip (p50/p99 while the workers run), the daemon's CPU per job (from
/proc) and the ratio to Huey; medians of ``--runs`` rounds, with the filesystem of
``--dir`` named.

    python bench/peers.py                          # 20,000 jobs, 3 rounds, store in /dev/shm
    python bench/peers.py --dir /mnt/ext4 --runs 3 --n 20000
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    cpu_seconds,
    filesystem_of,
    free_port,
    start_daemon,
    stop,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402

QUEUE = "peers"
PAYLOAD = {"data": "x" * 88}  # 100 bytes of JSON
COUNTER = "bench:done"
CHUNK = 500


class Redis:
    """A redis-server of our own on a free loopback port, nothing saved to disk."""

    def __init__(self, folder: str) -> None:
        import redis

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


def run_huey(redis: Redis, n: int) -> dict[str, float]:
    redis.client.flushall()
    env = environment(redis.port)
    consumer = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "huey_consumer"),
                                 "peer_tasks.huey", "-w", "2", "-k", "process", "-q"],
                                cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        sys.path.insert(0, HERE)
        os.environ["BENCH_REDIS_PORT"] = str(redis.port)
        import peer_tasks

        peer_tasks.huey.storage.conn.ping()
        time.sleep(1.0)  # the consumer's processes start
        started = time.perf_counter()
        for _ in range(n):
            peer_tasks.huey_job(PAYLOAD)
        submitted = time.perf_counter()
        redis.wait(n, timeout=600)
        ended = time.perf_counter()
    finally:
        stop([consumer])
    return {"e2e": n / (ended - started), "submit": n / (submitted - started)}


def run_ckptd(redis: Redis, n: int, path: str, folder: str) -> dict[str, float]:
    redis.client.flushall()
    env = environment(redis.port)
    os.makedirs(folder, exist_ok=True)
    root = tempfile.mkdtemp(prefix="peers-", dir=folder)
    daemon, control = start_daemon(os.path.join(root, "store"), os.path.join(root, "ready"),
                                   env, "--fsync", "never")
    workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                                 "--queue", QUEUE, "peer_tasks:ckptd_job"], cwd=HERE, env=env)
               for _ in range(2)]
    latencies: list[float] = []
    try:
        # "relayed": the README's loop from a client that always goes through the daemon
        # (as from another machine), to time the round trip of a submit on loopback.
        client = Client(control, timeout=60, direct=path != "relayed")
        wait_for_workers(client, 2)
        cpu0 = cpu_seconds(daemon.pid)
        started = time.perf_counter()
        if path in ("readme", "relayed"):
            for _ in range(n):
                t0 = time.perf_counter()
                client.submit(QUEUE, PAYLOAD)
                latencies.append(time.perf_counter() - t0)
        else:
            for first in range(0, n, CHUNK):
                client.submit_many(QUEUE, [PAYLOAD] * min(CHUNK, n - first))
        submitted = time.perf_counter()
        redis.wait(n, timeout=600)
        ended = time.perf_counter()
        cpu = cpu_seconds(daemon.pid) - cpu0
        client.close()
    finally:
        stop([*workers, daemon])
        shutil.rmtree(root, ignore_errors=True)
    figures = {"e2e": n / (ended - started), "submit": n / (submitted - started),
               "cpu_us_per_job": 1e6 * cpu / n}
    if latencies:
        latencies.sort()
        figures["rtt_p50_us"] = 1e6 * latencies[len(latencies) // 2]
        figures["rtt_p99_us"] = 1e6 * latencies[int(len(latencies) * 0.99)]
    return figures


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows if key in r) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default="readme,relayed,bulk",
                        help="readme: one submit() per job (on the daemon's host: written "
                             "directly); relayed: the same through the daemon; bulk: "
                             "submit_many of 500")
    parser.add_argument("--dir", default="/dev/shm", help="where ckptd's store goes")
    args = parser.parse_args()
    paths = args.paths.split(",")
    fs = filesystem_of(args.dir)
    print(f"peers: {args.n} jobs x {args.runs} rounds; ckptd store in {args.dir} ({fs}), "
          "fsync never; 2 workers each; one Redis INCR per job")
    scratch = tempfile.mkdtemp(prefix="peers-redis-")
    redis = Redis(scratch)
    results: dict[str, list[dict[str, float]]] = {"huey": [], **{p: [] for p in paths}}
    try:
        for round_ in range(args.runs):
            for name in ["huey", *paths]:  # alternating, in one run
                row = (run_huey(redis, args.n) if name == "huey"
                       else run_ckptd(redis, args.n, name, args.dir))
                results[name].append(row)
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in row.items())
                print(f"  round {round_ + 1} {name:<6} {shown}", flush=True)
    finally:
        redis.close()
        shutil.rmtree(scratch, ignore_errors=True)
    huey = median(results["huey"], "e2e")
    print(f"\nmedians of {args.runs} ({fs}):")
    print(f"  huey    e2e {huey:,.0f} jobs/s, enqueue {median(results['huey'], 'submit'):,.0f}/s")
    for path in paths:
        rows = results[path]
        e2e = median(rows, "e2e")
        extra = ""
        if any("rtt_p50_us" in r for r in rows):
            extra = (f", submit round trip p50 {median(rows, 'rtt_p50_us'):,.0f} us "
                     f"p99 {median(rows, 'rtt_p99_us'):,.0f} us")
        print(f"  ckptd {path:<6} e2e {e2e:,.0f} jobs/s = {e2e / huey:.2f}x Huey, submit "
              f"{median(rows, 'submit'):,.0f}/s, daemon CPU {median(rows, 'cpu_us_per_job'):.0f}"
              f" us/job{extra}")


if __name__ == "__main__":
    main()
