"""What a submit through the daemon costs the daemon: its CPU per submit (from /proc), with
no worker running, so that nothing else is counted.

Producers, each against a fresh daemon on the store folder given, alternating, one run per
round:

- ``relayed``: one ``Client(direct=False)``, one submit at a time (a producer on another
  machine);
- ``threads``: 4 threads sharing one such client, each one submit at a time;
- ``async``: an ``AsyncClient`` with 64 submits in flight;
- ``floor``: the raw floor of ``relayed`` (:mod:`bench.relay_floor`): a bare ZeroMQ server
  in Python that writes one file per request and replies, one request at a time. Its CPU
  per request is the least a daemon in Python can spend on this machine.

It prints submits/s, the daemon's CPU per submit and the producer's (this process), and the
median of ``--runs`` rounds, with the filesystem named.

    python bench/submits.py                       # 10,000 submits, 3 rounds, /dev/shm
    python bench/submits.py --dir /mnt/ext4 --fsync batch
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    cpu_seconds,
    filesystem_of,
    start_daemon,
    stop,
    submit_from_threads,
    submit_in_flight,
)
from bench.relay_floor import measure as measure_floor  # noqa: E402
from ckptd.client.client import Client  # noqa: E402

PAYLOAD = {"data": "x" * 88}  # 100 bytes of JSON
QUEUE = "submits"
THREADS = 4
IN_FLIGHT = 64
PRODUCERS = ("floor", "relayed", "threads", "async")


def produce(kind: str, control: str, n: int) -> None:
    if kind == "async":
        asyncio.run(submit_in_flight(control, QUEUE, PAYLOAD, n, IN_FLIGHT))
        return
    with Client(control, timeout=60, direct=False) as client:
        submit_from_threads(client, QUEUE, PAYLOAD, n, THREADS if kind == "threads" else 1)


def one_run(kind: str, n: int, folder: str, fsync: str) -> dict[str, float]:
    if kind == "floor":
        return measure_floor(n, folder, PAYLOAD)
    root = tempfile.mkdtemp(prefix="submits-", dir=folder)
    env = dict(os.environ, CKPTD_LOG_LEVEL="warning")
    daemon, control = start_daemon(os.path.join(root, "store"), os.path.join(root, "ready"),
                                   env, "--fsync", fsync)
    try:
        with Client(control, timeout=60, direct=False) as client:
            client.submit(QUEUE, PAYLOAD)  # the queue's folders exist: not counted
        daemon0, mine0 = cpu_seconds(daemon.pid), time.process_time()
        started = time.perf_counter()
        produce(kind, control, n)
        took = time.perf_counter() - started
        daemon_cpu = cpu_seconds(daemon.pid) - daemon0
        producer = time.process_time() - mine0
    finally:
        stop([daemon])
        shutil.rmtree(root, ignore_errors=True)
    return {"rate": n / took, "daemon_us": 1e6 * daemon_cpu / n,
            "producer_us": 1e6 * producer / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--producers", default=",".join(PRODUCERS))
    parser.add_argument("--fsync", default="never", choices=["never", "batch", "always"])
    parser.add_argument("--dir", default="/dev/shm", help="where the store goes")
    args = parser.parse_args()
    kinds = args.producers.split(",")
    fs = filesystem_of(args.dir)
    print(f"submits: {args.n} x {args.runs} rounds, no workers, fsync {args.fsync}, store in "
          f"{args.dir} ({fs}); load {os.getloadavg()[0]:.1f}", flush=True)
    rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for round_ in range(args.runs):
        for kind in kinds:
            row = one_run(kind, args.n, args.dir, args.fsync)
            rows[kind].append(row)
            print(f"  round {round_ + 1} {kind:<8} {row['rate']:,.0f} submits/s, daemon "
                  f"{row['daemon_us']:.0f} us, producer {row['producer_us']:.0f} us per submit",
                  flush=True)
    print(f"\nmedians of {args.runs} ({fs}; load {os.getloadavg()[0]:.1f} at the end):")
    for kind, found in rows.items():
        med = {k: statistics.median(r[k] for r in found) for k in found[0]}
        print(f"  {kind:<8} {med['rate']:,.0f} submits/s; CPU per submit: daemon "
              f"{med['daemon_us']:.0f} us, producer {med['producer_us']:.0f} us")


if __name__ == "__main__":
    main()
