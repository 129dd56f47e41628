"""Console benchmark: the queue page at a million jobs, and dispatch during a bulk retry.

Two measurements, each against its control in the same run (the store on tmpfs unless
``--root`` says otherwise):

- ``page``: a daemon holding ``--queues`` queues with ``--jobs`` pending jobs in all (files
  written straight into the folders, then recovered); the console's queue page (``/``) and
  ``/metrics`` are fetched ``--fetches`` times each; then again with 1,000 idle
  connections open. Printed: p50 / p95 of each, in ms.
- ``bulk``: jobs are submitted to queue ``flow`` at ``--rate`` per second and run by 2
  workers (handlers:stamped records submit -> handler start: the dispatch latency); after
  2 s an operator's bulk retry of ``--failed`` failed jobs of queue ``old`` is sent through
  the console (logged in, with its confirm step). Printed: the p99 dispatch latency of the
  jobs that started while the retry ran, next to the same run's p99 before it, and the
  control: the same load with no retry.

    python bench/console.py                        # 100 queues, 1,000,000 jobs; 10,000 failed
    python bench/console.py --only bulk --runs 3
    python bench/console.py --jobs 100000 --root /mnt/x/ckptd-console   # another disk
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    filesystem_of,
    free_port,
    settle,
    start_daemon,
    stop,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402
from ckptd.core.ids import new_id  # noqa: E402
from ckptd.core.jobs import encode, new_job  # noqa: E402
from ckptd.daemon.telemetry.console_auth import set_user  # noqa: E402


def write_jobs(root: str, queue: str, state: str, count: int, at: float) -> None:
    """``count`` job files of ``queue`` written straight into ``state``/."""
    for name in ("pending", "claimed", "done", "failed", "state", "blobs", "tmp"):
        os.makedirs(os.path.join(root, queue, name), exist_ok=True)
    folder = os.path.join(root, queue, state)
    for n in range(count):
        job_id = new_id(at + n * 1e-6)
        job = new_job(queue, job_id, {"n": n}, at, max_attempts=1)
        if state == "failed":
            job["attempts"] = 1
            job["last_error"] = {"type": "ValueError", "message": "bench"}
        with open(os.path.join(folder, f"{job_id}.json"), "wb") as handle:
            handle.write(encode(job))


def get(port: int, path: str, cookies: str = "", method: str = "GET",
        form: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Host": f"127.0.0.1:{port}", "Cookie": cookies}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    text = answer.read().decode(errors="replace")
    conn.close()
    return answer.status, text, {k.lower(): v for k, v in answer.getheaders()}


def timed(port: int, path: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        status, _, _ = get(port, path)
        out.append((time.perf_counter() - started) * 1000)
        assert status == 200, (path, status)
    return sorted(out)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def page_run(base: str, args: argparse.Namespace) -> None:
    root = os.path.join(base, "store")
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    per = args.jobs // args.queues
    for q in range(args.queues):
        write_jobs(root, f"q{q:03d}", "pending", per, time.time() - 3600)
    print(f"wrote {per * args.queues} pending jobs in {args.queues} queues in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    settle()
    port = free_port()
    env = dict(os.environ, CKPTD_LOG_LEVEL="warning", CKPTD_METRICS_PORT=str(port))
    started = time.perf_counter()
    daemon, _ = start_daemon(root, os.path.join(base, "ready"), env, "--fsync", "never",
                             timeout=600)
    print(f"daemon ready (recovered) in {time.perf_counter() - started:.1f}s", flush=True)
    try:
        time.sleep(1.0)  # a snapshot with every queue
        _, page, _ = get(port, "/")
        assert page.count("data-row=") == args.queues, "not every queue on the page"
        for label, idle_count in (("no other connection", 0), ("1,000 idle connections",
                                                               1000)):
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle_count)]
            try:
                home = timed(port, "/", args.fetches)
                metrics = timed(port, "/metrics", args.fetches)
            finally:
                for sock in idle:
                    sock.close()
            print(f"{label}: queue page (/) p50 {pct(home, 0.5):.1f} ms, p95 "
                  f"{pct(home, 0.95):.1f} ms; /metrics p50 {pct(metrics, 0.5):.1f} ms, p95 "
                  f"{pct(metrics, 0.95):.1f} ms ({args.fetches} each, {args.queues} queues, "
                  f"{per * args.queues} jobs)", flush=True)
    finally:
        stop([daemon])


def bulk_run(base: str, args: argparse.Namespace, retry: bool) -> dict[str, float]:
    root = os.path.join(base, "store")
    shutil.rmtree(root, ignore_errors=True)
    write_jobs(root, "old", "failed", args.failed, time.time() - 86400)
    settle()
    users = os.path.join(base, "users")
    if not os.path.exists(users):
        set_user(users, "bench", "operator", "bench-password")
    log = os.path.join(base, "latency.log")
    for stale in (log, os.path.join(base, "ready")):  # the last run's
        if os.path.exists(stale):
            os.unlink(stale)
    port = free_port()
    env = dict(os.environ, CKPTD_LOG_LEVEL="warning", BENCH_LOG=log,
               CKPTD_METRICS_PORT=str(port), CKPTD_CONSOLE_ACTIONS="true",
               CKPTD_CONSOLE_USERS=users, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE),
                                                                      HERE]))
    daemon, control = start_daemon(root, os.path.join(base, "ready"), env, "--fsync", "never",
                                   log=os.path.join(base, "daemon.log"))
    workers = [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                                 "--queue", "flow", "-c", "4", "handlers:stamped"], cwd=HERE,
                                env=env) for _ in range(2)]
    window: list[float] = []
    try:
        cookies = log_in(port)
        with Client(control, timeout=60) as client:
            wait_for_workers(client, 2)
            thread = threading.Thread(target=operator, args=(port, cookies, retry, window))
            batch = max(1, args.rate // 20)
            started = time.monotonic()
            sent = 0
            launched = False
            while time.monotonic() - started < args.seconds:
                if not launched and time.monotonic() - started >= 2.0:
                    thread.start()
                    launched = True
                due = started + sent / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                client.submit_many("flow", [{"at": time.time()} for _ in range(batch)])
                sent += batch
            thread.join(600)
            client.wait_many("flow", None, timeout=120)
            moved = client.status("old")["queues"]["old"]["pending"]
    finally:
        stop([*workers, daemon])
    with open(log) as handle:
        rows = [(float(a), float(b)) for a, b in (line.split() for line in handle)]
    if not window:
        window = [0.0, 0.0]
    during = sorted(b - a for a, b in rows if window[0] <= b <= window[1])
    before = sorted(b - a for a, b in rows if b < window[0] or not retry)
    return {"during_p99_ms": 1000 * pct(during, 0.99) if during else float("nan"),
            "during_jobs": len(during), "before_p99_ms": 1000 * pct(before, 0.99),
            "retry_s": window[1] - window[0], "moved": moved}


def log_in(port: int) -> str:
    _, page, headers = get(port, "/login")
    visitor = headers["set-cookie"].split(";", 1)[0]
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    status, _, headers = get(port, "/login", visitor, "POST",
                             {"user": "bench", "password": "bench-password",
                              "csrf": token.group(1)})
    assert status == 303, status
    return f"{visitor}; {headers['set-cookie'].split(';', 1)[0]}"


def operator(port: int, cookies: str, retry: bool, window: list[float]) -> None:
    """Bulk-retry every failed job of queue old through the console (count, confirm)."""
    _, page, _ = get(port, "/", cookies)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    form = {"action": "retry", "queue": "old", "state": "failed", "csrf": token.group(1)}
    status, confirm, _ = get(port, "/bulk", cookies, "POST", form)
    assert status == 200 and "data-count" in confirm, status
    started = time.time()
    if retry:
        status, _, _ = get(port, "/bulk", cookies, "POST", {**form, "confirm": "yes"})
        assert status == 303, status
    else:
        time.sleep(1.0)
    window += [started, time.time()]


def turns_run(base: str, args: argparse.Namespace) -> None:
    from ckptd.core.config import load_settings
    from ckptd.daemon.daemon import Daemon

    root = os.path.join(base, "store")
    shutil.rmtree(root, ignore_errors=True)
    write_jobs(root, "old", "failed", args.failed, time.time() - 86400)
    settle()
    control = f"tcp://127.0.0.1:{free_port()}"
    settings = load_settings(None, env={}, flags={
        "root": root, "fsync": "never", "control": control,
        "dispatch": f"tcp://127.0.0.1:{free_port()}"})
    daemon = Daemon(settings)
    daemon.start()
    took: list[float] = []

    def ask() -> None:
        ids = sorted(n[:-5] for n in os.listdir(os.path.join(root, "old", "failed")))
        with Client(control, timeout=600, direct=False) as client:
            started = time.perf_counter()
            for at in range(0, len(ids), 5000):
                client.request("retry", {"queue": "old", "ids": ids[at:at + 5000]},
                               timeout=600)
            took.append(time.perf_counter() - started)

    thread = threading.Thread(target=ask)
    turns = []
    try:
        thread.start()
        while thread.is_alive():
            started = time.perf_counter()
            daemon.step(0.01)
            turns.append((time.perf_counter() - started) * 1000)
        thread.join()
    finally:
        daemon.close()
    turns.sort()
    print(f"loop turns during a retry of {args.failed} jobs (in-process, no other load): "
          f"the retry took {took[0]:.2f} s over {len(turns)} turns; turn p50 "
          f"{pct(turns, 0.5):.1f} ms, p99 {pct(turns, 0.99):.1f} ms, max {turns[-1]:.1f} ms",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["page", "bulk", "turns"])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--fetches", type=int, default=30)
    parser.add_argument("--failed", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500, help="flow jobs submitted per s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", default=None, help="where (default: a folder in /dev/shm)")
    args = parser.parse_args()
    base = args.root or tempfile.mkdtemp(prefix="ckptd-console-",
                                         dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.makedirs(base, exist_ok=True)
    print(f"store on {filesystem_of(base)} ({base}); load {os.getloadavg()[0]:.2f}",
          flush=True)
    try:
        if args.only in (None, "page"):
            page_run(base, args)
        if args.only in (None, "turns"):
            for _ in range(args.runs):
                turns_run(base, args)
        if args.only in (None, "bulk"):
            results: dict[str, list[dict[str, float]]] = {"retry": [], "control": []}
            for run in range(args.runs):
                for name in (("retry", "control") if run % 2 else ("control", "retry")):
                    result = bulk_run(base, args, name == "retry")
                    results[name].append(result)
                    print(f"run {run + 1} {name:>7}: dispatch p99 {result['during_p99_ms']:.1f}"
                          f" ms over {result['during_jobs']} jobs while the operator acted "
                          f"({result['retry_s']:.2f} s), {result['before_p99_ms']:.1f} ms "
                          f"before; {result['moved']} old jobs now pending", flush=True)
            summary = {k: statistics.median(r["during_p99_ms"] for r in v)
                       for k, v in results.items()}
            print(f"dispatch latency p99, median of {args.runs} runs "
                  f"({filesystem_of(base)}): during a bulk retry of {args.failed} failed "
                  f"jobs {summary['retry']:.1f} ms; control (no retry) "
                  f"{summary['control']:.1f} ms")
            print(json.dumps({"p99_ms_median": summary}))
    finally:
        if args.root is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
