"""End-to-end benchmark: a real daemon, 2 real worker processes, jobs submitted through it.

For each fsync mode it prints the submit rate, the end-to-end rate (first submit to last
done), the latency of single jobs on an idle system (submit -> done seen by the client),
and the daemon's memory, next to a raw floor measured in the same run: the file operations
one job needs done in a bare loop, plus the cost of the job's ZeroMQ messages between two
processes. The ratio to the floor is what to compare across machines.

    python bench/e2e.py                 # 20,000 jobs, fsync never and batch
    python bench/e2e.py --n 5000 --modes batch --runs 3
    python bench/e2e.py --s3 --n 2000       # on a SeaweedFS it starts (bench/s3bench.py)
    python bench/e2e.py --s3 --n 5000 --runs 3 --s3-dir /dev/shm   # its data on tmpfs
    python bench/e2e.py --root s3://bucket/prefix --n 2000   # on that bucket
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    NOOP_PAYLOAD,
    NOOP_QUEUE,
    cpu_seconds,
    filesystem_of,
    rss_mib,
    settle,
    start_daemon,
    start_noop_workers,
    stop,
    submit_and_wait,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402
from ckptd.store.local.durable import sync_filesystem  # noqa: E402

PAYLOAD, QUEUE = NOOP_PAYLOAD, NOOP_QUEUE


# -- the floor ---------------------------------------------------------------------------

def file_floor(root: str, n: int, group: int | None) -> float:
    """Jobs/s of the bare file operations one job needs (no Python objects, no sockets).

    Per job: write+rename into pending (submit), read + rename to claimed (claim), read +
    write + rename to done + unlink claimed (finish). With ``group``, syncs are grouped like
    fsync=batch: one data flush and one folder sync per ``group`` jobs at each stage.
    """
    folders = {name: os.path.join(root, name) for name in ("tmp", "pending", "claimed", "done")}
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    data = json.dumps({"id": "x" * 40, "queue": QUEUE, "payload": PAYLOAD}).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    root_fd = os.open(root, os.O_RDONLY)
    dir_fds = {k: os.open(v, os.O_RDONLY) for k, v in folders.items()}

    def write(path: str) -> None:
        fd = os.open(path, flags, 0o640)
        os.write(fd, data)
        os.close(fd)

    def read(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 65536)
        os.close(fd)

    def sync(*names: str) -> None:
        if group:
            for name in names:
                os.fsync(dir_fds[name])

    started = time.perf_counter()
    step = group or n
    for start in range(0, n, step):
        ids = [f"{i:012d}" for i in range(start, min(n, start + step))]
        for i in ids:
            write(f"{folders['tmp']}/{i}")
        if group:
            sync_filesystem(root_fd)
        for i in ids:
            os.rename(f"{folders['tmp']}/{i}", f"{folders['pending']}/{i}.json")
        sync("pending")
        for i in ids:
            read(f"{folders['pending']}/{i}.json")
            os.rename(f"{folders['pending']}/{i}.json", f"{folders['claimed']}/{i}.json")
        sync("pending", "claimed")
        for i in ids:
            read(f"{folders['claimed']}/{i}.json")
            write(f"{folders['tmp']}/d{i}")
        if group:
            sync_filesystem(root_fd)
        for i in ids:
            os.rename(f"{folders['tmp']}/d{i}", f"{folders['done']}/{i}.json")
            os.unlink(f"{folders['claimed']}/{i}.json")
        sync("done", "claimed")
    elapsed = time.perf_counter() - started
    for fd in [root_fd, *dir_fds.values()]:
        os.close(fd)
    return n / elapsed


def _pull(endpoint: str, n: int, ready: multiprocessing.synchronize.Event) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.connect(endpoint)
    ready.set()
    for _ in range(n):
        sock.recv_multipart()
    sock.close()
    ctx.term()


def zmq_floor(n: int) -> float:
    """Messages/s of 3-frame ~200-byte messages from one process to another (PUSH/PULL)."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=_pull, args=(f"tcp://127.0.0.1:{port}", n, ready))
    child.start()
    ready.wait(10)
    frames = [b"ckptd/1", b"job", json.dumps({"queue": QUEUE, "id": "x" * 40, "attempt": 1,
                                              "payload": PAYLOAD}).encode()]
    started = time.perf_counter()
    for _ in range(n):
        sock.send_multipart(frames)
    child.join()
    elapsed = time.perf_counter() - started
    sock.close()
    ctx.term()
    return n / elapsed


# -- the real thing ----------------------------------------------------------------------

def run_mode(mode: str, n: int, workers: int, concurrency: int, prefetch: int, root_base: str,
             latency_samples: int, chunk: int) -> dict[str, float]:
    settle()
    root = tempfile.mkdtemp(prefix=f"e2e-{mode}-", dir=root_base)
    env = dict(os.environ, CKPTD_LOG_LEVEL="warning", PYTHONPATH=os.path.dirname(HERE))
    daemon, control = start_daemon(os.path.join(root, "store"),
                                   os.path.join(root, "ready.json"), env, "--fsync", mode)
    procs = [daemon]
    try:
        procs += start_noop_workers(control, workers, concurrency, prefetch, env)
        client = Client(control, timeout=60)
        wait_for_workers(client, workers, timeout=30)
        cpu_before = cpu_seconds(daemon.pid)
        submitting, total = submit_and_wait(client, n, chunk, timeout=600)
        cpu_per_job = (cpu_seconds(daemon.pid) - cpu_before) / n
        status = client.status(QUEUE)["queues"][QUEUE]
        if status["done"] != n:
            raise RuntimeError(f"expected {n} done, found {status}")
        memory = rss_mib(daemon.pid)
        # Latency: one job at a time on the now idle system.
        latencies = []
        for _ in range(latency_samples):
            t0 = time.perf_counter()
            job_id = client.submit(QUEUE, PAYLOAD)
            client.wait(QUEUE, job_id, timeout=60)
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        client.close()
        return {
            "submit_per_s": n / submitting,
            "e2e_per_s": n / total,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "daemon_rss_mib": memory,
            "daemon_cpu_us_per_job": 1e6 * cpu_per_job,
        }
    finally:
        stop(procs)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="jobs per run")
    parser.add_argument("--modes", default="never,batch", help="fsync modes, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="runs per mode (medians printed)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="threads per worker")
    parser.add_argument("--prefetch", type=int, default=64, help="jobs held beyond running")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per submit_many request")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--root", default=os.path.join(os.getcwd(), ".bench"),
                        help="folder for the stores (on the disk to measure)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--s3", action="store_true",
                        help="run on a bucket of a SeaweedFS server started for the run")
    parser.add_argument("--s3-dir", default=None,
                        help="with --s3: folder for the server's data (on the disk to measure)")
    parser.add_argument("--delays", default="0",
                        help="on a bucket: milliseconds added to every request, one run each "
                             "(a proxy in front of the server), e.g. 0,20")
    args = parser.parse_args()
    if args.s3 or args.root.startswith("s3://"):
        from s3bench import main_s3

        main_s3(None if args.s3 else args.root, args.n, args.chunk, args.concurrency,
                args.prefetch, args.runs, args.s3_dir,
                tuple(float(d) for d in args.delays.split(",")))
        return
    os.makedirs(args.root, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    floor_dir = tempfile.mkdtemp(prefix="floor-", dir=args.root)
    try:
        zmq_rate = zmq_floor(200_000)
        floors = {}
        for mode in args.modes.split(","):
            group = 100 if mode == "batch" else (1 if mode == "always" else None)
            runs = []
            for _ in range(max(1, args.runs)):
                settle()
                runs.append(file_floor(tempfile.mkdtemp(dir=floor_dir), min(args.n, 20000),
                                       group))
            files = statistics.median(runs)
            # Per job: 4 messages (submit, its ack, the job, the answer), pipelined.
            floors[mode] = 1 / (1 / files + 4 / zmq_rate)
            floors[mode + "_files"] = files
    finally:
        shutil.rmtree(floor_dir, ignore_errors=True)
    for mode in args.modes.split(","):
        runs = [run_mode(mode, args.n, args.workers, args.concurrency, args.prefetch, args.root,
                         args.latency_samples, args.chunk) for _ in range(args.runs)]
        results[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results[mode]["floor_per_s"] = floors[mode]
        results[mode]["floor_files_per_s"] = floors[mode + "_files"]
        results[mode]["ratio"] = results[mode]["e2e_per_s"] / floors[mode]
    results["zmq_messages_per_s"] = {"value": zmq_rate}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    goals = {"never": (5000, 0.60, 2.0), "batch": (2000, None, 10.0), "always": (None, None, None)}
    print(f"e2e: {args.n} no-op jobs, 100-byte payload, {args.workers} workers x "
          f"{args.concurrency} thread(s), prefetch {args.prefetch}, median of {args.runs} run(s); "
          f"store on {filesystem_of(args.root)}")
    print(f"ZeroMQ floor: {zmq_rate:,.0f} messages/s between two processes")
    for mode in args.modes.split(","):
        r = results[mode]
        rate_goal, ratio_goal, p50_goal = goals.get(mode, (None, None, None))
        marks = []
        if rate_goal:
            marks.append(f"{'PASS' if r['e2e_per_s'] >= rate_goal else 'MISS'} >= {rate_goal}/s")
        if ratio_goal:
            marks.append(f"{'PASS' if r['ratio'] >= ratio_goal else 'MISS'} >= "
                         f"{ratio_goal:.0%} of floor")
        if p50_goal:
            marks.append(f"{'PASS' if r['p50_ms'] <= p50_goal else 'MISS'} p50 <= {p50_goal}ms")
        print(f"fsync={mode:6} submit {r['submit_per_s']:8,.0f}/s  e2e {r['e2e_per_s']:8,.0f}/s"
              f"  floor {r['floor_per_s']:8,.0f}/s (files alone {r['floor_files_per_s']:,.0f}/s)"
              f"  ratio {r['ratio']:.0%}  p50 {r['p50_ms']:.2f}ms  p99 {r['p99_ms']:.2f}ms"
              f"  daemon CPU {r['daemon_cpu_us_per_job']:.0f} us/job"
              f"  RSS {r['daemon_rss_mib']:.0f} MiB  [{'; '.join(marks)}]")


if __name__ == "__main__":
    main()
