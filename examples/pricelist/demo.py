"""`make demo`: the price-list example end to end, on a local store under the checkout.

It generates a customer's items file (CSV), starts three simulated suppliers (HTTP servers
on 127.0.0.1 with latency, 503s and timeouts), a ckptd daemon and two workers, submits the
items as jobs, shows progress, writes the price list when every item is priced, and stops
everything cleanly. Everything it makes is in .demo/ (the store is .demo/store).

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
from datetime import date
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.dirname(HERE)
REPO = os.path.dirname(EXAMPLES)
sys.path[:0] = [REPO, EXAMPLES]

from ckptd.client import Client  # noqa: E402
from pricelist.catalog import SUPPLIERS  # noqa: E402
from pricelist.tasks import write_price_list  # noqa: E402

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
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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


def main() -> None:
    parser = argparse.ArgumentParser(description="the ckptd price-list demo")
    parser.add_argument("--items", type=int, default=3000, help="items in the customer's file")
    parser.add_argument("--chunk", type=int, default=10, help="items per job")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument("--dir", default=os.path.join(REPO, ".demo"), help="where to put it all")
    args = parser.parse_args()

    work = os.path.abspath(args.dir)
    store = os.path.join(work, "store")
    logs = os.path.join(work, "logs")
    shutil.rmtree(store, ignore_errors=True)
    os.makedirs(logs, exist_ok=True)
    items_path = os.path.join(work, "items.csv")
    make_items(items_path, args.items)
    items = read_items(items_path)
    print(f"items file:  {items_path} ({len(items)} items)")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, EXAMPLES]),
               CKPTD_LOG_LEVEL="warning")
    procs = Processes(logs)
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
                "--concurrency", str(args.concurrency), "--name", f"worker-{number}",
                "pricelist.tasks:price"], worker_env)
        print(f"daemon:      {control}, store {store}")
        print(f"suppliers:   {', '.join(f'{n} {u}' for n, u in shops.items())}")

        client = Client(control, timeout=30)
        batch = f"pricelist-{date.today():%Y%m%d}"
        chunks = [items[i:i + args.chunk] for i in range(0, len(items), args.chunk)]
        started = time.monotonic()
        ids: list[str] = []
        for start in range(0, len(chunks), 200):
            ids += client.submit_many(QUEUE, [{"items": c, "batch": batch}
                                              for c in chunks[start:start + 200]])
        print(f"submitted:   {len(ids)} jobs of up to {args.chunk} items (batch {batch})")
        tty = sys.stdout.isatty()
        last_print = 0.0
        while True:
            procs.check()
            status = client.status(QUEUE)
            counts = status["queues"][QUEUE]
            finished = counts["pending"] == 0 and counts["claimed"] == 0
            if tty or finished or time.monotonic() - last_print >= 2.0:
                line = progress_line(status, len(ids), started)
                print(line if tty else line.lstrip("\r"), end="" if tty else "\n", flush=True)
                last_print = time.monotonic()
            if finished:
                break
            time.sleep(0.25)
        if tty:
            print()
        lines: list[dict[str, Any]] = []
        failed = 0
        for job_id in ids:
            state = client.wait(QUEUE, job_id, timeout=60)
            if state != "done":
                failed += 1
                continue
            lines += client.result(QUEUE, job_id)["lines"]
        out_dir = os.path.join(store, "pricelists")
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, f"pricelist-{date.today():%Y-%m-%d}.csv")
        with open(out, "w") as handle:
            handle.write(write_price_list(lines))
        elapsed = time.monotonic() - started
        ok = sum(1 for line in lines if line["status"] == "ok")
        print(f"price list:  {out} ({ok} priced, {len(lines) - ok} unavailable, "
              f"{failed} job(s) failed) in {elapsed:.1f}s")
        print(f"the store:   {store}   (try: .venv/bin/ckptd --root {store} status)")
        client.close()
    finally:
        procs.stop()
    print("stopped the workers, the daemon and the suppliers")


if __name__ == "__main__":
    main()
