"""Flow control by key: the fair share against FIFO, the cost of keys, the memory per key.

A real daemon (fsync ``never``) and 2 no-op workers (``-c 4``), the store on tmpfs unless
``--dir`` names another place. Three parts, each printing its rounds and the medians:

- **fair**: customer A submits 50,000 jobs, then customers B to K submit 100 each. The lead
  time (created to finished, from the job files) of B-K's jobs, p50 and p95, on a queue
  with ``key = "payload.customer"`` and ``fair = true``, and on the same queue without
  keys (FIFO by priority, the control), alternating.
- **cost**: 50,000 jobs of 10,000 distinct customers submitted into a paused queue, then
  resumed: claims per second (first to last claim, from the job files) on a queue without
  keys (the floor), with a key per customer, and with keys, ``fair = true`` and a
  ``max_running`` per key, alternating.
- **memory**: the daemon's RSS with 100,000 pending jobs without keys, and with 100,000
  distinct keys (a fresh daemon each): the difference per key.

    python bench/keys.py                       # all three, 3 rounds, on /dev/shm
    python bench/keys.py --parts fair --rounds 5 --dir /mnt/ext4
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
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import filesystem_of, rss_mib, start_daemon, stop, wait_for_workers  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.states import State  # noqa: E402
from ckptd.core.timefmt import parse_iso  # noqa: E402

CONFIG = """\
[queues.fifo]

[queues.fair]
key = "payload.customer"
fair = true

[queues.plain]

[queues.keyed]
key = "payload.customer"

[queues.limited]
key = "payload.customer"
fair = true
[queues.limited.keys]
max_running = 2
"""
CHUNK = 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def done_jobs(root: str, queue: str) -> list[dict[str, Any]]:
    folder = os.path.join(root, queue, "done")
    found = []
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as handle:
            found.append(json.load(handle))
    return found


def submit(client: Client, queue: str, payloads: list[Any]) -> None:
    for start in range(0, len(payloads), CHUNK):
        client.submit_many(queue, payloads[start:start + CHUNK])


def clear(client: Client, root: str, queue: str) -> None:
    """Purge the queue's done jobs (of the previous round)."""
    if os.path.isdir(os.path.join(root, queue, "done")):
        client.purge(queue, State.DONE)


def fair_round(client: Client, root: str, queue: str, big: int) -> tuple[float, float, float]:
    """A's ``big`` jobs, then B-K's 100 each; B-K's lead time p50 and p95, and the time
    until every job of the round was done."""
    clear(client, root, queue)
    started = time.monotonic()
    submit(client, queue, [{"customer": "A"}] * big)
    submit(client, queue, [{"customer": c} for c in "BCDEFGHIJK" for _ in range(100)])
    client.wait_many(queue, None, timeout=600)
    took = time.monotonic() - started
    leads = [parse_iso(j["finished_at"]) - parse_iso(j["created"])
             for j in done_jobs(root, queue) if j["payload"]["customer"] != "A"]
    return pct(leads, 50), pct(leads, 95), took


def cost_round(client: Client, root: str, queue: str, n: int, keys: int) -> float:
    """Claims per second of ``n`` jobs of ``keys`` customers submitted into the paused
    queue, then resumed."""
    clear(client, root, queue)
    client.pause(queue, "bench")
    submit(client, queue, [{"customer": f"c{i % keys}"} for i in range(n)])
    client.resume(queue)
    client.wait_many(queue, None, timeout=600)
    claims = sorted(parse_iso(j["history"][0]["claimed"]) for j in done_jobs(root, queue))
    return (len(claims) - 1) / max(1e-9, claims[-1] - claims[0])


def medians(rounds: dict[str, list[Any]], part: int) -> dict[str, float]:
    return {name: statistics.median(r[part] if isinstance(r, tuple) else r for r in values)
            for name, values in rounds.items()}


class Daemon:
    """A daemon with the queues of :data:`CONFIG` and 2 no-op workers on ``queues``."""

    def __init__(self, base: str, name: str, queues: list[str], workers: int = 2) -> None:
        self.root = os.path.join(base, name)
        shutil.rmtree(self.root, ignore_errors=True)
        config = os.path.join(base, "ckptd.toml")
        with open(config, "w") as handle:
            handle.write(CONFIG)
        env = dict(os.environ, CKPTD_LOG_LEVEL="warning", CKPTD_CONFIG=config,
                   PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
        self.proc, self.control = start_daemon(self.root, os.path.join(base, name + ".ready"),
                                               env, "--fsync", "never")
        self.procs = [self.proc]
        queue_args = [a for q in queues for a in ("--queue", q)]
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "ckptd", "worker", "--connect", self.control,
                 *queue_args, "-c", "4", "handlers:noop"], cwd=HERE, env=env))
        self.client = Client(self.control, timeout=120)
        if workers:
            wait_for_workers(self.client, workers)

    def close(self) -> None:
        self.client.close()
        stop(self.procs)


def alternate(rounds: int, runs: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {name: [] for name in runs}
    for n in range(rounds):
        for name, run in runs.items():
            found[name].append(run())
            print(f"  round {n + 1} {name}: {found[name][-1]}", flush=True)
    return found


def part_fair(base: str, rounds: int, big: int) -> None:
    print(f"fair: A submits {big:,} jobs, then B-K 100 each; 2 workers x 4", flush=True)
    d = Daemon(base, "fair", ["fair", "fifo"])
    try:
        found = alternate(rounds, {q: (lambda q=q: fair_round(d.client, d.root, q, big))
                                   for q in ("fair", "fifo")})
    finally:
        d.close()
    for q in ("fair", "fifo"):
        p50, p95, took = (medians(found, i)[q] for i in range(3))
        print(f"fair: {q:5}: B-K lead time p50 {p50:.2f} s, p95 {p95:.2f} s; all done in "
              f"{took:.1f} s (medians of {rounds})", flush=True)


def part_cost(base: str, rounds: int, n: int, keys: int) -> None:
    print(f"cost: {n:,} jobs of {keys:,} customers into a paused queue, resumed; "
          "2 workers x 4", flush=True)
    queues = ["plain", "keyed", "limited"]
    d = Daemon(base, "cost", queues)
    try:
        found = alternate(rounds, {q: (lambda q=q: cost_round(d.client, d.root, q, n, keys))
                                   for q in queues})
    finally:
        d.close()
    floor = statistics.median(found["plain"])
    for q in queues:
        m = statistics.median(found[q])
        print(f"cost: {q:7}: {m:,.0f} claims/s ({m / floor:.0%} of no keys; medians of "
              f"{rounds})", flush=True)


def part_memory(base: str, n: int) -> None:
    print(f"memory: the daemon's RSS with {n:,} pending jobs, each its own key or none",
          flush=True)
    grew = {}
    for queue, payload in (("plain", lambda i: {"customer": f"c{i}"}),
                           ("keyed", lambda i: {"customer": f"c{i}"})):
        d = Daemon(base, "mem-" + queue, [], workers=0)
        try:
            d.client.submit(queue, {"customer": "warm"})
            time.sleep(1.0)
            before = rss_mib(d.proc.pid)
            submit(d.client, queue, [payload(i) for i in range(n)])
            time.sleep(1.0)
            grew[queue] = rss_mib(d.proc.pid) - before
            print(f"  {queue}: RSS grew {grew[queue]:.1f} MiB", flush=True)
        finally:
            d.close()
    per_key = (grew["keyed"] - grew["plain"]) * 1024 * 1024 / n
    print(f"memory: {per_key:.0f} bytes per key (pending jobs with a key each, over the same "
          "without keys)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="fair,cost,memory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=50_000, help="customer A's jobs (fair)")
    parser.add_argument("--n", type=int, default=50_000, help="jobs (cost)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys (cost)")
    parser.add_argument("--memory-n", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="where (default: a folder in /dev/shm)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="ckptd-keys-", dir=args.dir or (
        "/dev/shm" if os.path.isdir("/dev/shm") else None))
    load = os.getloadavg()
    print(f"store on {filesystem_of(base)} ({base}); load {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}", flush=True)
    try:
        parts = args.parts.split(",")
        if "fair" in parts:
            part_fair(base, args.rounds, args.big)
        if "cost" in parts:
            part_cost(base, args.rounds, args.n, args.keys)
        if "memory" in parts:
            part_memory(base, args.memory_n)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
