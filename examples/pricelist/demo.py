"""`make demo`: the price-list example end to end, on a local store under the checkout.

It generates a customer's items file (CSV), starts three simulated suppliers (HTTP servers
on 127.0.0.1 with latency, 503s and timeouts), a ckptd daemon and two workers, and submits
the items as one batch of chunks. Each chunk fans out per supplier (a quote job each) and
waits, holding no worker slot, until they have all ended; when every chunk has ended the
batch's reduce writes the price list as a draft and waits for an approval: a file dropped
into the store. The demo drops that file itself (and says so), the list is published, and
everything stops cleanly. Everything it makes is in .demo/ (the store is .demo/store).

    python examples/pricelist/demo.py [--items 3000] [--chunk 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.dirname(HERE)
REPO = os.path.dirname(EXAMPLES)
sys.path[:0] = [REPO, EXAMPLES]

from ckptd.client.client import Client  # noqa: E402
from pricelist.catalog import SUPPLIERS  # noqa: E402

QUEUE = "price"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_items(path: str, count: int, seed: int = 42) -> None:
    """A customer's items file: sku, name, weight_kg, qty."""
    rng = random.Random(seed)
    words = ["bolt", "gear", "valve", "pump", "belt", "seal", "hose", "fan", "lamp", "cable"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "weight_kg", "qty"])
        for n in range(count):
            name = f"{rng.choice(words)} {rng.choice(words)} {n % 97}"
            writer.writerow([f"SKU-{n:06d}", name, f"{rng.uniform(0.1, 12):.2f}",
                             rng.choice([1, 1, 1, 2, 5, 10, 20])])


def read_items(path: str) -> list[dict[str, Any]]:
    """The items of the file, as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Processes:
    """The demo's child processes, stopped in reverse order of start."""

    def __init__(self, logs: str) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.logs, f"{name}.log"), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        log.close()
        self.started.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see "
                                 f"{os.path.join(self.logs, name + '.log')}")

    def stop(self) -> None:
        # A second Ctrl-C must not leave children behind: stop them all the same.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _, proc in reversed(self.started):  # all at once: each stops on its own
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            for _, proc in reversed(self.started):
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)


def progress_line(status: dict[str, Any], total: int, started: float) -> str:
    counts = status["queues"].get(QUEUE, {})
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    ended = done + failed
    elapsed = time.monotonic() - started
    rate = ended / elapsed if elapsed > 0 else 0.0
    eta = (total - ended) / rate if rate > 0 else float("inf")
    width = 30
    filled = int(width * ended / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    eta_text = f"{eta:4.0f}s" if eta != float("inf") else "   ?"
    return (f"\r[{bar}] {ended}/{total} jobs  {rate:5.1f}/s  ETA {eta_text}  "
            f"running {counts.get('claimed', 0):3}  retried {counts.get('retried', 0)}  "
            f"failed {failed}  workers {counts.get('workers', 0)}")


def approve(client: Client, store: str, env: dict[str, str], reduce_id: str) -> None:
    """Wait until the price list waits for its approval, show why, then approve it by
    dropping a file into the store (what a person, or their tool, would do); on a bucket,
    by sending the signal through the daemon."""
    deadline = time.monotonic() + 600
    while client.show("pricelist", reduce_id)["state"] != "waiting":
        if time.monotonic() > deadline:
            raise SystemExit(f"the price list {reduce_id} never waited for its approval")
        time.sleep(0.2)
    draft = client.show("pricelist", reduce_id)["checkpoint"]["state"]["draft"]
    print(f"draft:       {draft}")
    explained = subprocess.run([sys.executable, "-m", "ckptd", "--root", store, "explain",
                                "pricelist", reduce_id], env=env, capture_output=True,
                               text=True).stdout
    for line in explained.splitlines():
        if "waits for the signal" in line or "parked" in line:
            print(f"             {line}")
    if "://" in store:  # a bucket: the signal goes through the daemon (as `ckptd signal`)
        client.signal("pricelist", reduce_id, "approved", {"by": "the demo"})
        print("approval:    the demo approves it itself: ckptd signal pricelist "
              f"{reduce_id} approved")
        return
    signals = os.path.join(store, "pricelist", "signals")
    staged = os.path.join(os.path.dirname(store), "approval.json")
    with open(staged, "w") as handle:
        handle.write('{"by": "the demo"}\n')
    target = os.path.join(signals, f"{reduce_id}.approved.json")
    os.rename(staged, target)
    print(f"approval:    the demo approves it itself, by dropping a file into the store: "
          f"{target}")


def main() -> None:
    parser = argparse.ArgumentParser(description="the ckptd price-list demo")
    parser.add_argument("--items", type=int, default=3000, help="items in the customer's file")
    parser.add_argument("--chunk", type=int, default=10, help="items per job")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="jobs in flight per worker")
    parser.add_argument("--dir", default=os.path.join(REPO, ".demo"), help="where to put it all")
    parser.add_argument("--root", default=None,
                        help="the store (default: DIR/store, made afresh); s3://... for a bucket")
    args = parser.parse_args()

    work = os.path.abspath(args.dir)
    store = args.root or os.path.join(work, "store")
    logs = os.path.join(work, "logs")
    if args.root is None:
        shutil.rmtree(store, ignore_errors=True)
    os.makedirs(logs, exist_ok=True)
    items_path = os.path.join(work, "items.csv")
    make_items(items_path, args.items)
    items = read_items(items_path)
    print(f"items file:  {items_path} ({len(items)} items)")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, EXAMPLES]),
               CKPTD_LOG_LEVEL="warning")
    procs = Processes(logs)
    client: Client | None = None
    try:
        shops = {}
        for name in SUPPLIERS:
            port = free_port()
            procs.start(f"supplier-{name}", [sys.executable, "-m", "pricelist.suppliers",
                                             "--name", name, "--port", str(port)], env)
            shops[name] = f"http://127.0.0.1:{port}"
        control = f"tcp://127.0.0.1:{free_port()}"
        ready = os.path.join(work, "daemon.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        procs.start("daemon", [sys.executable, "-m", "ckptd", "--root", store, "serve",
                               "--control", control,
                               "--dispatch", f"tcp://127.0.0.1:{free_port()}",
                               "--ready-file", ready], env)
        deadline = time.monotonic() + 30
        while not os.path.exists(ready):
            procs.check()
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not start; see " + logs)
            time.sleep(0.05)
        worker_env = dict(env, PRICELIST_SUPPLIERS=",".join(f"{n}={u}" for n, u in shops.items()))
        for number in range(1, args.workers + 1):
            procs.start(f"worker-{number}", [
                sys.executable, "-m", "ckptd", "worker", "--connect", control, "--queue", QUEUE,
                "--queue", "quote", "--queue", "pricelist",
                "--concurrency", str(args.concurrency), "--name", f"worker-{number}",
                "pricelist.tasks:handle"], worker_env)
        print(f"daemon:      {control}, store {store}")
        print(f"suppliers:   {', '.join(f'{n} {u}' for n, u in shops.items())}")

        client = Client(control, timeout=30)
        # The customer's file becomes one batch of jobs, chunks of --chunk items each; each
        # chunk fans out per supplier; when every chunk (and every quote) has ended, the
        # daemon submits the reduce job to the pricelist queue.
        command = [sys.executable, "-m", "ckptd", "--root", store, "submit-file", QUEUE,
                   items_path, "--chunk", str(args.chunk), "--then", "pricelist"]
        shown = ".demo/store" if args.root is None else store
        print(f"submitting:  ckptd --root {shown} submit-file price .demo/items.csv "
              f"--chunk {args.chunk} --then pricelist")
        started = time.monotonic()
        batch = subprocess.run(command, env=env, check=True, capture_output=True,
                               text=True).stdout.strip()
        total = (len(items) + args.chunk - 1) // args.chunk
        print(f"batch:       {batch} ({total} jobs)")
        tty = sys.stdout.isatty()
        last_print = 0.0
        while True:
            procs.check()
            status = client.status(QUEUE)
            counts = status["queues"].get(QUEUE, {})
            progress = counts.get("batches", {}).get(batch, {})
            finished = bool(progress) and progress.get("open") == 0
            if tty or finished or time.monotonic() - last_print >= 2.0:
                line = progress_line(status, total, started)
                print(line if tty else line.lstrip("\r"), end="" if tty else "\n", flush=True)
                last_print = time.monotonic()
            if finished:
                break
            time.sleep(0.25)
        if tty:
            print()
        reduce_id = f"{batch}.reduce"
        approve(client, store, env, reduce_id)
        state = client.wait("pricelist", reduce_id, timeout=120)
        elapsed = time.monotonic() - started
        if state != "done":
            raise SystemExit(f"the reduce job {reduce_id} {state}; see ckptd --root {store} "
                             f"show pricelist {reduce_id}")
        summary = client.result("pricelist", reduce_id)
        print(f"published:   {summary['location']} ({summary['priced']} priced, "
              f"{summary['unavailable']} unavailable, {len(summary['failed_jobs'])} chunk(s) "
              f"failed) in {elapsed:.1f}s, approved by {summary['approved']}")
        print(f"the store:   {store}" + (f"   (try: .venv/bin/ckptd --root {store} status)"
                                          if args.root is None else ""))
    finally:
        if client is not None:
            client.close()
        procs.stop()
    print("stopped the workers, the daemon and the suppliers")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: main() stopped what it started on its way out
        print("\ninterrupted: stopped the workers, the daemon and the suppliers",
              file=sys.stderr)
        sys.exit(130)
