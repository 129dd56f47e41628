"""A crash campaign: kill -9 the daemon while a producer submits and two workers run jobs.

Each run starts a daemon on a fresh store, two worker processes and a producer (one
``Client.submit`` at a time, the README's loop, default client settings). While the producer
submits, the daemon is SIGKILLed ``--kills`` times at random moments and restarted at once
on the same addresses. Then every acknowledged job must end in done/. Per run it prints:

- acked: submits the client returned an id for;
- lost: acked jobs in no folder at all (must be 0);
- twice: jobs that ran more than once (the workers log every run), and how long after the
  kill before them the second run began (the longest);
- stuck: acked jobs not done by the end of the run's deadline;
- stall: the longest time one submit took (a restart should cost about the restart);
- dup/kill: jobs run twice per kill.

    python bench/torture.py                      # 20 runs of 1,000 jobs, 3 kills each
    python bench/torture.py --runs 3 --jobs 300 --fsync always --dir /dev/shm
    python bench/torture.py --relayed            # submits through the daemon (another host)
    python bench/torture.py --in-flight 64       # an AsyncClient with 64 submits in flight

On the daemon's host the client writes each job into the store itself (direct submit), so
a daemon restart stalls it only while the root's lock names no live daemon; ``--relayed``
sends every submit through the daemon, as a producer on another host does; ``--in-flight N``
submits from an ``AsyncClient`` (always through the daemon) with N submits in flight on one
connection, each of them resent on its own across the restarts.

Name the filesystem of ``--dir`` next to the figures (tmpfs, journaled ext4, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import filesystem_of, free_port, stop  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.errors import CkptdError  # noqa: E402

QUEUE = "torture"


@dataclass
class Run:
    """What one run saw."""

    acked: list[str] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lost: int = 0
    stuck: int = 0
    twice: int = 0
    back_after: float = 0.0


class Daemon:
    """A ``ckptd serve`` on fixed loopback ports, killed and restarted in place."""

    def __init__(self, root: str, log: str, env: dict[str, str], options: list[str]) -> None:
        self.root = root
        self.log = log
        self.env = env
        self.options = options
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.dispatch = f"tcp://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready = f"{self.log}.ready"
        if os.path.exists(ready):
            os.unlink(ready)
        with open(self.log, "ab") as output:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ckptd", "--root", self.root, *self.options, "serve",
                 "--control", self.control, "--dispatch", self.dispatch,
                 "--ready-file", ready], env=self.env, stdout=output,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start; see {self.log}")
            time.sleep(0.005)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def produce(control: str, count: int, run: Run, stop_flag: threading.Event,
            relayed: bool = False, in_flight: int = 0) -> None:
    """One submit at a time, as the README's loop does, timing each (``relayed``: through
    the daemon, as from another host, rather than written into its store; ``in_flight``:
    that many at a time from an AsyncClient)."""
    if in_flight:
        asyncio.run(produce_async(control, count, run, stop_flag, in_flight))
        return
    with Client(control, direct=not relayed) as client:
        for n in range(count):
            if stop_flag.is_set():
                return
            started = time.monotonic()
            try:
                job_id = client.submit(QUEUE, {"n": n})
            except CkptdError as exc:
                run.errors.append(f"submit {n}: {exc}")
                continue
            run.stalls.append(time.monotonic() - started)
            run.acked.append(job_id)


async def produce_async(control: str, count: int, run: Run, stop_flag: threading.Event,
                        in_flight: int) -> None:
    from ckptd.client.async_client import AsyncClient

    numbers = iter(range(count))
    async with AsyncClient(control) as client:
        async def lane() -> None:
            for n in numbers:
                if stop_flag.is_set():
                    return
                started = time.monotonic()
                try:
                    job_id = await client.submit(QUEUE, {"n": n})
                except CkptdError as exc:
                    run.errors.append(f"submit {n}: {exc}")
                    continue
                run.stalls.append(time.monotonic() - started)
                run.acked.append(job_id)

        await asyncio.gather(*(lane() for _ in range(in_flight)))


def in_folders(root: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for state in ("pending", "claimed", "done", "failed"):
        folder = os.path.join(root, QUEUE, state)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith(".json"):
                    found.setdefault(name[:-5], state)
    return found


def one_run(seed: int, args: argparse.Namespace, base: str) -> Run:
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="torture-", dir=base)
    root = os.path.join(work, "store")
    runs_log = os.path.join(work, "runs.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]),
               TEST_LOG=runs_log, CKPTD_LEASE=args.lease, CKPTD_HEARTBEAT=args.heartbeat,
               CKPTD_LOG_LEVEL="warning")
    daemon = Daemon(root, os.path.join(work, "daemon.log"), env, ["--fsync", args.fsync])
    run = Run()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        daemon.start()
        workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect",
                                     daemon.control, "--queue", QUEUE, "-c", "4",
                                     "--prefetch", "4", "handlers:logged"],
                                    cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        stop_flag = threading.Event()
        producer = threading.Thread(target=produce,
                                    args=(daemon.control, args.jobs, run, stop_flag,
                                          args.relayed, args.in_flight))
        producer.start()
        # The kills land while the producer runs: spread over its expected span.
        marks = sorted(rng.uniform(0.1, 0.9) for _ in range(args.kills))
        for mark in marks:
            while len(run.acked) < mark * args.jobs and producer.is_alive():
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
            daemon.kill()
            run.kills.append(time.time())
            daemon.start()
        producer.join(600)
        stop_flag.set()
        deadline = time.monotonic() + args.deadline
        acked = set(run.acked)
        while time.monotonic() < deadline:
            where = in_folders(root)
            if all(where.get(i) == "done" for i in acked):
                break
            time.sleep(0.2)
        where = in_folders(root)
        run.lost = sum(1 for i in acked if i not in where)
        run.stuck = sum(1 for i in acked if where.get(i) not in (None, "done"))
        starts: dict[str, list[float]] = collections.defaultdict(list)
        with open(runs_log) as handle:
            for line in handle:
                parts = line.split()
                if parts and parts[0] == "run" and len(parts) >= 5:
                    starts[parts[2]].append(float(parts[4]))
        for times in starts.values():
            if len(times) < 2:
                continue
            run.twice += 1
            second = sorted(times)[1]
            kill = max((k for k in run.kills if k <= second), default=None)
            if kill is not None:
                run.back_after = max(run.back_after, second - kill)
    finally:
        stop(workers)
        if daemon.proc is not None and daemon.proc.poll() is None:
            stop([daemon.proc])
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return run


def how(args: argparse.Namespace) -> str:
    if args.in_flight:
        return f"through the daemon, {args.in_flight} in flight (AsyncClient)"
    return "through the daemon" if args.relayed else "written directly"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--fsync", default="batch", choices=["never", "batch", "always"])
    parser.add_argument("--lease", default="60s", help="the daemon's lease (default 60s)")
    parser.add_argument("--heartbeat", default="1s", help="workers' heartbeat (default 1s)")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="seconds after the producer ends for every job to be done")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the stores go (name its filesystem with the figures)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder")
    parser.add_argument("--relayed", action="store_true",
                        help="submit through the daemon, as from another host (default: "
                             "written into the store, as on the daemon's host)")
    parser.add_argument("--in-flight", type=int, default=0, metavar="N",
                        help="submit from an AsyncClient with N submits in flight (through "
                             "the daemon)")
    args = parser.parse_args()
    fs = filesystem_of(args.dir)
    print(f"torture: {args.runs} runs x {args.jobs} jobs, {args.kills} daemon kills each, "
          f"fsync {args.fsync}, lease {args.lease}, heartbeat {args.heartbeat}, "
          f"submits {how(args)}, "
          f"store on {args.dir} ({fs or 'unknown fs'})")
    print(f"{'run':>3} {'acked':>6} {'lost':>5} {'twice':>6} {'back s':>7} {'stuck':>6} "
          f"{'stall s':>8} {'dup/kill':>9} {'errors':>7}")
    totals = Run()
    for number in range(args.runs):
        run = one_run(args.seed + number, args, args.dir)
        stall = max(run.stalls, default=0.0)
        print(f"{number + 1:>3} {len(run.acked):>6} {run.lost:>5} {run.twice:>6} "
              f"{run.back_after:>7.2f} {run.stuck:>6} {stall:>8.3f} "
              f"{run.twice / max(1, len(run.kills)):>9.2f} {len(run.errors):>7}", flush=True)
        for error in run.errors[:3]:
            print(f"    {error}")
        totals.acked += run.acked
        totals.stalls.append(stall)
        totals.kills += run.kills
        totals.lost += run.lost
        totals.stuck += run.stuck
        totals.twice += run.twice
        totals.back_after = max(totals.back_after, run.back_after)
        totals.errors += run.errors
    print(f"all {len(totals.acked):>6} {totals.lost:>5} {totals.twice:>6} "
          f"{totals.back_after:>7.2f} {totals.stuck:>6} {max(totals.stalls, default=0):>8.3f} "
          f"{totals.twice / max(1, len(totals.kills)):>9.2f} {len(totals.errors):>7}")
    print(f"kills {len(totals.kills)}; longest producer stall {max(totals.stalls, default=0):.3f}"
          f" s; jobs run twice {totals.twice} ({totals.twice / max(1, len(totals.kills)):.2f} "
          f"per kill), the latest back {totals.back_after:.2f} s after its kill; lost "
          f"{totals.lost}; stuck {totals.stuck}")


if __name__ == "__main__":
    main()
