"""Millions of pending jobs in one queue: restart, first job, memory, status, dispatch rate.

Builds a store with N hand-written pending files (``{"payload": "..."}`` named by generated
ids; every 1000th one named with a priority, ``<id>,p-5.json``) on a journaled ext4 loop
image made for small files (``mkfs.ext4 -I 256 -O inline_data,large_dir``: a small file lives
in its inode; tmpfs would spend a 4 KiB page a file and ten million do not fit in memory),
then, for each run: spawns ``ckptd serve`` on it with one worker (no-op handler that stamps
the time it ran), and measures

- the time from spawn to "recovered" (status says the listing ended) and to the first job
  done (the handler's stamp);
- the daemon's RSS (peak over the run, and after recovery);
- ``status`` latency p50/p99 during recovery and after it (one request every 20 ms);
- the dispatch rate after recovery (jobs done per second over ``--rate-for`` seconds),
  against the same queue holding ``--control-n`` (10,000) jobs, measured in the same run.

Images are made once under ``--dir`` (sparse files) and kept for the next runs with
``--keep``; the done jobs of a run are removed before the next. Run as root (mount).

    python bench/scale.py --n 1000000 --runs 3
    python bench/scale.py --n 10000000 --runs 1 --payload 2048
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import filesystem_of, free_port, rss_mib, start_daemon, stop  # noqa: E402
from ckptd.client.client import Client  # noqa: E402

QUEUE = "bulk"
URGENT_EVERY = 1000  # every so many files is named with priority -5


def make_image(path: str, mount: str, files: int, payload: int) -> None:
    """A journaled ext4 image for ``files`` small files, mounted on ``mount``."""
    per_file = 256 + (0 if payload <= 60 else ((payload + 40) // 1024 + 1) * 1024)
    blocks = 1024 if payload > 60 else 4096
    size = int(files * per_file * 1.3) + (2 << 30)
    with open(path, "wb") as handle:
        handle.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", str(blocks), "-I", "256",
                    "-N", str(int(files * 1.1) + 100_000), "-O", "inline_data,large_dir",
                    "-E", "lazy_itable_init=1,lazy_journal_init=1", path], check=True)
    os.makedirs(mount, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", path, mount], check=True)


def write_jobs(pending: str, n: int, payload: int, start: float, writers: int = 2) -> float:
    """Write ``n`` hand-written pending files with generated ids (``writers`` processes, each
    a plain os.open/os.write loop); return the seconds it took."""
    os.makedirs(pending, exist_ok=True)
    began = time.perf_counter()
    step = -(-n // writers)
    with multiprocessing.Pool(writers) as pool:
        pool.starmap(_write_range, [(pending, lo, min(n, lo + step), payload, start)
                                    for lo in range(0, n, step)])
    return time.perf_counter() - began


def _write_range(pending: str, lo: int, hi: int, payload: int, start: float) -> None:
    body = json.dumps({"payload": "x" * payload}).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    random = os.urandom(8 * (hi - lo)).hex()
    second = int(start)
    stamp = ""
    began = time.perf_counter()
    for i in range(lo, hi):
        us = i % 1_000_000
        if us == 0 or not stamp:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(second + i // 1_000_000))
        j = i - lo
        name = f"{stamp}.{us:06d}Z-{random[16 * j:16 * j + 16]}"
        if i % URGENT_EVERY == URGENT_EVERY - 1:
            name += ",p-5"
        fd = os.open(f"{pending}/{name}.json", flags, 0o640)
        os.write(fd, body)
        os.close(fd)
        if j and j % 1_000_000 == 0:
            print(f"  {j:,} files by one writer ({time.perf_counter() - began:.0f}s)",
                  flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Poller(threading.Thread):
    """Times a ``status`` request every ``every`` seconds; samples the daemon's RSS."""

    def __init__(self, control: str, pid: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.control, self.pid, self.every = control, pid, every
        self.samples: list[tuple[float, float, bool, dict[str, Any]]] = []
        self.rss: list[tuple[float, float]] = []
        self.stopping = False

    def run(self) -> None:
        with Client(self.control, timeout=60) as client:
            while not self.stopping:
                began = time.perf_counter()
                answer = client.status(QUEUE)
                took = time.perf_counter() - began
                recovery = answer.get("daemon", {}).get("recovery", {})
                queue = answer.get("queues", {}).get(QUEUE, {})
                self.samples.append((time.time(), took, bool(recovery.get("running")), queue))
                self.rss.append((time.time(), rss_mib(self.pid)))
                time.sleep(max(0.0, self.every - took))


def one_run(root: str, n_label: str, rate_for: float, rate_jobs: int, env: dict[str, str]
            ) -> dict[str, Any]:
    """Spawn a daemon and a worker on ``root``; measure; stop them."""
    stamps = os.path.join(tempfile.mkdtemp(prefix="scale-"), "stamps")
    ready = os.path.join(os.path.dirname(stamps), "ready.json")
    log = os.path.join(os.path.dirname(stamps), "daemon.log")
    wenv = {**env, "BENCH_STAMPS": stamps}
    control, dispatch = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    spawned = time.time()
    # The worker starts with the daemon: it connects as soon as the daemon binds.
    with open(log + ".worker", "wb") as output:
        worker = subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect",
                                   control, "--queue", QUEUE, "-c", "4", "handlers:done_at"],
                                  cwd=HERE, env=wenv, stdout=output, stderr=subprocess.STDOUT)
    fsync = os.environ.get("BENCH_FSYNC", "batch")
    daemon, control = start_daemon(root, ready, env, "--fsync", fsync, timeout=3600, log=log,
                                   control=control, dispatch=dispatch)
    worker_box = [worker]
    poller = Poller(control, daemon.pid)
    poller.start()
    try:
        deadline = time.time() + 3600
        while time.time() < deadline:
            if poller.samples and not poller.samples[-1][2] and len(poller.samples) > 1:
                break
            time.sleep(0.05)
        recovered_at = next((t for t, _, running, _ in poller.samples if not running),
                            float("nan"))
        rss_recovered = rss_mib(daemon.pid)
        until = time.time() + rate_for
        while time.time() < until and _count(stamps) < rate_jobs + 2000:
            time.sleep(0.2)
    finally:
        poller.stopping = True
        poller.join(timeout=60)
        stop(worker_box + [daemon], timeout=120)
    times = _stamps(stamps)
    first = times[0] if times else float("nan")
    # The dispatch rate over ``rate_jobs`` jobs done from half a second after recovery on.
    begin = next((i for i, t in enumerate(times) if t >= recovered_at + 0.5), len(times))
    end = min(len(times) - 1, begin + rate_jobs)
    rate = (end - begin) / (times[end] - times[begin]) \
        if end - begin >= rate_jobs // 2 and times[end] > times[begin] else float("nan")
    during = [took * 1000 for _, took, running, _ in poller.samples if running]
    after = [took * 1000 for t, took, running, _ in poller.samples if not running]
    recovered_line = ""
    with open(log) as handle:
        for line in handle:
            if "recovered the index" in line:
                recovered_line = line.strip()[:200]
    shutil.rmtree(os.path.dirname(stamps), ignore_errors=True)
    return {
        "pending": n_label,
        "recovered_s": recovered_at - spawned,
        "first_job_s": first - spawned,
        "rss_peak_mib": max((r for _, r in poller.rss), default=float("nan")),
        "rss_recovered_mib": rss_recovered,
        "status_during_p50_ms": statistics.median(during) if during else float("nan"),
        "status_during_p99_ms": percentile(during, 0.99),
        "status_during_n": len(during),
        "status_after_p50_ms": statistics.median(after) if after else float("nan"),
        "status_after_p99_ms": percentile(after, 0.99),
        "rate_jobs_s": rate,
        "log": recovered_line,
    }


def _stamps(path: str) -> list[float]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return sorted(float(line) for line in handle if line.strip())


def _count(path: str) -> int:
    try:
        return os.path.getsize(path) // 19  # about one stamp line each
    except OSError:
        return 0


def tidy(root: str, payload: int) -> None:
    """Put what a run finished (done/, failed/, claimed/) back into pending/ as the
    hand-written file it was, named as it was, so that every run starts alike."""
    body = json.dumps({"payload": "x" * payload}).encode()
    pending = os.path.join(root, QUEUE, "pending")
    for state in ("done", "failed", "claimed"):
        folder = os.path.join(root, QUEUE, state)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as handle:
                    priority = json.load(handle).get("priority")
            except (OSError, ValueError):
                priority = None
            stem = name[:-len(".json")]
            target = f"{stem},p{priority}.json" if priority else name
            with open(os.path.join(pending, target), "wb") as handle:
                handle.write(body)
            os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="pending jobs")
    parser.add_argument("--control-n", type=int, default=10_000,
                        help="pending jobs of the control store (dispatch rate)")
    parser.add_argument("--payload", type=int, default=20, help="payload bytes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate-jobs", type=int, default=5000,
                        help="jobs the dispatch rate is measured over, after recovery")
    parser.add_argument("--rate-for", type=float, default=60.0,
                        help="seconds to wait for them at most")
    parser.add_argument("--dir", default=os.path.join(REPO, ".bench-scale"),
                        help="where the images are made")
    parser.add_argument("--keep", action="store_true", help="keep the images for next time")
    parser.add_argument("--build-only", action="store_true",
                        help="build the stores (with --keep) and stop")
    parser.add_argument("--tmpfs", action="store_true",
                        help="build the stores in /dev/shm instead (small N only)")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env["CKPTD_LOG_LEVEL"] = "info"
    env["PYTHONPATH"] = REPO
    mounts = []
    try:
        stores = {}
        for label, n in (("big", args.n), ("control", args.control_n)):
            name = f"{label}-{n}-{args.payload}"
            if args.tmpfs:
                mount = os.path.join("/dev/shm", f"ckptd-scale-{name}")
            else:
                image, mount = os.path.join(args.dir, name + ".img"), os.path.join(
                    args.dir, name)
                if not os.path.exists(image):
                    make_image(image, mount, n, args.payload)
                elif not os.path.ismount(mount):
                    os.makedirs(mount, exist_ok=True)
                    subprocess.run(["mount", "-o", "loop", image, mount], check=True)
                mounts.append((image, mount))
            root = os.path.join(mount, "store")
            marker = os.path.join(mount, "built")
            if not os.path.exists(marker):
                print(f"writing {n:,} pending files into {root} ...", flush=True)
                took = write_jobs(os.path.join(root, QUEUE, "pending"), n, args.payload,
                                  time.time() - 86400)
                print(f"  {n / took:,.0f} files/s")
                open(marker, "w").close()
            stores[label] = (root, n)
        os.sync()
        if args.build_only:
            return
        subprocess.run(["uptime"])
        results = []
        for _ in range(args.runs):
            for label in ("big", "control"):
                root, n = stores[label]
                tidy(root, args.payload)
                os.sync()
                result = one_run(root, f"{n:,}", args.rate_for, args.rate_jobs, env)
                result["store"] = label
                result["filesystem"] = filesystem_of(root)
                results.append(result)
                print(json.dumps(result), flush=True)
        print()
        print(f"pending {args.n:,}, payload {args.payload} bytes, {args.runs} run(s); "
              f"filesystem: {results[0]['filesystem']}")
        for key in ("recovered_s", "first_job_s", "rss_peak_mib", "rss_recovered_mib",
                    "status_during_p50_ms", "status_during_p99_ms", "status_after_p50_ms",
                    "status_after_p99_ms", "rate_jobs_s"):
            big = [r[key] for r in results if r["store"] == "big"]
            small = [r[key] for r in results if r["store"] == "control"]
            print(f"  {key:24} big: median {statistics.median(big):10.3f}  "
                  f"({', '.join(f'{v:.3f}' for v in big)})   control ({args.control_n:,}): "
                  f"{statistics.median(small):10.3f}")
        big = statistics.median(r["rate_jobs_s"] for r in results if r["store"] == "big")
        small = statistics.median(r["rate_jobs_s"] for r in results if r["store"] == "control")
        print(f"  dispatch rate: {big:.0f} vs {small:.0f} jobs/s with {args.control_n:,}: "
              f"{100 * (big / small - 1):+.1f}%")
        subprocess.run(["uptime"])
    finally:
        for image, mount in mounts:
            if not args.keep:
                subprocess.run(["umount", mount], check=False)
                os.unlink(image)
        if not args.keep and not args.tmpfs:
            shutil.rmtree(args.dir, ignore_errors=True)
        if args.tmpfs and not args.keep:
            for label in ("big", "control"):
                n = args.n if label == "big" else args.control_n
                shutil.rmtree(f"/dev/shm/ckptd-scale-{label}-{n}-{args.payload}",
                              ignore_errors=True)


if __name__ == "__main__":
    main()
