"""submit-file benchmark: split and submit a 1,000,000-line file; then a 10,000-item batch.

Part 1 times ``ckptd submit-file`` (the CLI, as a user runs it) on a 1,000,000-line CSV into
a fresh local store, straight (``--root``) and through a daemon (``--connect``: the file is
sent in parts), and prints records/s and jobs/s next to the floor measured in the same run:
reading the file and writing a copy of it (what storing the source costs at least).

Part 2 (skip with --no-e2e) runs the price-list example for real: 3 suppliers, a daemon, 2
workers, 10,000 items submitted with submit-file, timed until the reduce job has written
the price list.

    python bench/submit_file.py [--lines 1000000] [--chunk 1000] [--items 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXAMPLES = os.path.join(REPO, "examples")
sys.path[:0] = [REPO, EXAMPLES]

from bench.common import free_port, settle, start_daemon, stop  # noqa: E402
from ckptd.client.client import Client  # noqa: E402


def make_file(path: str, lines: int) -> None:
    rng = random.Random(1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "weight_kg", "qty"])
        for n in range(lines):
            writer.writerow([f"SKU-{n:07d}", f"part {n % 977}", f"{rng.uniform(0.1, 12):.2f}",
                             rng.choice([1, 2, 5, 20])])


def floor_copy(path: str, work: str) -> float:
    """Seconds to read the file and write a copy of it (fsync'd, like the source blob)."""
    started = time.perf_counter()
    with open(path, "rb") as handle:
        data = handle.read()
    target = os.path.join(work, "copy")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - started


def time_submit_file(path: str, work: str, chunk: int) -> float:
    store = tempfile.mkdtemp(prefix="store-", dir=work)
    env = dict(os.environ, PYTHONPATH=REPO)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ckptd", "--root", store, "submit-file", "items",
                    path, "--chunk", str(chunk)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    shutil.rmtree(store)
    return elapsed


def time_submit_file_connect(path: str, work: str, chunk: int) -> float:
    """The same through a daemon (``--connect``): the file is sent in parts over ZeroMQ."""
    store = tempfile.mkdtemp(prefix="store-", dir=work)
    env = dict(os.environ, PYTHONPATH=REPO, CKPTD_LOG_LEVEL="warning")
    ready = os.path.join(store, "ready")
    daemon, control = start_daemon(os.path.join(store, "store"), ready, env)
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ckptd", "--connect", control, "submit-file",
                        "items", path, "--chunk", str(chunk)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        stop([daemon], timeout=60)
        shutil.rmtree(store)


def e2e_batch(items: int, chunk: int, work: str) -> float:
    """Seconds from submit-file of ``items`` items to the price list written."""
    from pricelist.catalog import SUPPLIERS
    from pricelist.demo import make_items

    root = tempfile.mkdtemp(prefix="e2e-", dir=work)
    store = os.path.join(root, "store")
    items_path = os.path.join(root, "items.csv")
    make_items(items_path, items)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, EXAMPLES]),
               CKPTD_LOG_LEVEL="warning")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        shops = {}
        for name in SUPPLIERS:
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "pricelist.suppliers",
                                           "--name", name, "--port", str(port)], env=env,
                                          stderr=subprocess.DEVNULL))
            shops[name] = f"http://127.0.0.1:{port}"
        daemon, control = start_daemon(store, os.path.join(root, "ready"), env)
        procs.append(daemon)
        worker_env = dict(env, PRICELIST_SUPPLIERS=",".join(f"{n}={u}"
                                                            for n, u in shops.items()))
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "ckptd", "worker",
                                           "--connect", control, "--queue", "price",
                                           "--queue", "pricelist", "-c", "16",
                                           "pricelist.tasks:handle"], env=worker_env))
        client = Client(control, timeout=30)
        started = time.perf_counter()
        batch = subprocess.run([sys.executable, "-m", "ckptd", "--root", store, "submit-file",
                                "price", items_path, "--chunk", str(chunk), "--then",
                                "pricelist"], env=env, check=True, capture_output=True,
                               text=True).stdout.strip()
        deadline = time.monotonic() + 1800
        while True:
            try:
                state = client.wait("pricelist", f"{batch}.reduce", timeout=30)
                break
            except Exception:  # noqa: BLE001 - not submitted yet: keep waiting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        elapsed = time.perf_counter() - started
        client.close()
        if state != "done":
            raise RuntimeError(f"the reduce job ended {state}")
        return elapsed
    finally:
        stop(procs)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--items-chunk", type=int, default=50)
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--root", default=os.path.join(os.getcwd(), ".bench"))
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    work = tempfile.mkdtemp(prefix="submit-file-", dir=args.root)
    try:
        path = os.path.join(work, "items.csv")
        make_file(path, args.lines)
        size = os.path.getsize(path)
        jobs = (args.lines + args.chunk - 1) // args.chunk
        floors, runs, remote = [], [], []
        for _ in range(args.runs):
            settle()
            floors.append(floor_copy(path, work))
            settle()
            runs.append(time_submit_file(path, work, args.chunk))
            settle()
            remote.append(time_submit_file_connect(path, work, args.chunk))
        floor = statistics.median(floors)
        for how, times in (("--root", runs), ("--connect", remote)):
            took = statistics.median(times)
            verdict = "PASS" if took < 10 else "MISS"
            print(f"submit-file {how}: {args.lines:,} lines ({size / 1e6:.0f} MB), chunk "
                  f"{args.chunk}: {took:.2f}s = {args.lines / took:,.0f} records/s, "
                  f"{jobs / took:,.0f} jobs/s (median of {args.runs}; floor read+copy "
                  f"{floor:.2f}s; [{verdict} < 10s])")
        if not args.no_e2e:
            settle()
            elapsed = e2e_batch(args.items, args.items_chunk, work)
            print(f"price list of {args.items:,} items (chunks of {args.items_chunk}, "
                  f"2 workers x 16 threads, 3 suppliers at 5-60 ms): {elapsed:.1f}s end to end "
                  f"({args.items / elapsed:,.0f} items/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
