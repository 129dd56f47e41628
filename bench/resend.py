"""A resent ``submit_many`` on a bucket 20 ms away: does the daemon keep answering? (issue 21)

On a SeaweedFS it starts (its data under ``--dir``), behind a proxy that adds ``--delay-ms``
to every request, one daemon and 2 no-op workers; then a client submits ``--n`` jobs with
ids of its own in one ``submit_many`` (each id may exist already, so each is looked for);
half a second later the same request is sent again, as a client that heard nothing yet
does; once every job ended it is sent a third time (every job is then found done).
Meanwhile another client pings the daemon every 10 ms. Printed: how long each submit took,
the ping round trips (p50, p99, max) during all of it, and that every job exists once.

    .venv/bin/python bench/resend.py --n 1000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import (  # noqa: E402
    NOOP_PAYLOAD,
    NOOP_QUEUE,
    filesystem_of,
    start_daemon,
    start_noop_workers,
    stop,
    wait_for_workers,
)
from bench.s3bench import delayed_server  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from tests.s3server import SeaweedServer  # noqa: E402

RESEND_AFTER = 0.5  # seconds: when the client sends a request again that got no answer


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def one_run(server: SeaweedServer, endpoint: str, n: int) -> dict[str, float]:
    env = {**os.environ, **server.env(), "CKPTD_S3_ENDPOINT_URL": endpoint,
           "CKPTD_LOG_LEVEL": "warning",
           "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    url = server.url(f"resend-{uuid.uuid4().hex[:8]}")
    ready = os.path.join(tempfile.mkdtemp(), "ready.json")
    daemon, control = start_daemon(url, ready, env)
    procs = [daemon, *start_noop_workers(control, 2, 1, 0, env)]
    try:
        client = Client(control, timeout=300)
        wait_for_workers(client, 2)
        client.submit(NOOP_QUEUE, NOOP_PAYLOAD)  # the queue is led before the measure
        pings: list[float] = []
        stopped = threading.Event()

        def pinger() -> None:
            pinging = Client(control, timeout=30)
            while not stopped.is_set():
                started = time.perf_counter()
                pinging.ping()
                pings.append(time.perf_counter() - started)
                time.sleep(0.01)
            pinging.close()

        thread = threading.Thread(target=pinger)
        thread.start()
        ids = [f"resend-{uuid.uuid4().hex}" for _ in range(n)]
        payloads = [NOOP_PAYLOAD] * n
        answers: dict[str, list[str]] = {}
        took: dict[str, float] = {}

        def send(name: str, delay: float) -> None:
            time.sleep(delay)
            sender = Client(control, timeout=300)
            started = time.perf_counter()
            answers[name] = sender.submit_many(NOOP_QUEUE, payloads, ids=ids)
            took[name] = time.perf_counter() - started
            sender.close()

        # The first request, and the same again half a second later (a client that heard
        # nothing yet sends it again), then once more after every job ended.
        senders = [threading.Thread(target=send, args=("first", 0.0)),
                   threading.Thread(target=send, args=("resent", RESEND_AFTER))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        client.wait_many(NOOP_QUEUE, ids, timeout=600)
        send("after", 0.0)
        stopped.set()
        thread.join()
        done = client.status(NOOP_QUEUE)["queues"][NOOP_QUEUE]["done"]
        client.close()
        if any(answers[k] != ids for k in ("first", "resent", "after")) or done != n + 1:
            raise RuntimeError(f"expected the same {n} ids thrice and {n + 1} done, "
                               f"found {done} done")
        return {"first_s": took["first"], "resent_s": took["resent"],
                "after_s": took["after"], "pings": float(len(pings)),
                "p50_ms": 1000 * statistics.median(pings),
                "p99_ms": 1000 * percentile(pings, 0.99), "max_ms": 1000 * max(pings)}
    finally:
        stop(procs, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="jobs in the submit_many")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--dir", default="/dev/shm", help="the server's data folder")
    args = parser.parse_args()
    server, proxy, endpoint, folder = delayed_server("ckptd-bench-resend-", args.dir, args.delay_ms)
    results = []
    try:
        for run in range(args.runs):
            result = one_run(server, endpoint, args.n)
            results.append(result)
            print(f"  run {run + 1}: submit_many {result['first_s']:.2f}s, resent "
                  f"{result['resent_s']:.2f}s, sent after the end {result['after_s']:.2f}s; "
                  f"ping p50 {result['p50_ms']:.1f} ms, p99 "
                  f"{result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms "
                  f"({result['pings']:.0f} pings)", flush=True)
    finally:
        proxy.terminate()
        proxy.wait(10)
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    mark = "PASS" if median["p99_ms"] < 100 else "MISS"
    print(f"resent submit_many of {args.n} (ids given: each looked for) on SeaweedFS "
          f"(local, data on {filesystem_of(folder)}) +{args.delay_ms:g} ms a request, "
          f"2 no-op workers, median of {args.runs}; load {os.getloadavg()[0]:.1f}")
    print(f"submit_many {median['first_s']:.2f}s, resent after {RESEND_AFTER:g}s "
          f"{median['resent_s']:.2f}s, sent after every job ended {median['after_s']:.2f}s; "
          f"ping p50 {median['p50_ms']:.1f} ms, p99 {median['p99_ms']:.1f} ms, max "
          f"{median['max_ms']:.1f} ms  [{mark} p99 < 100 ms]")


if __name__ == "__main__":
    main()
