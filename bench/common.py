"""What the benchmarks share: free ports, a quiet disk before each run, a process's memory,
starting and stopping a daemon, and the no-op workload (workers, submit, wait)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
NOOP_PAYLOAD = {"data": "x" * 88}  # 100 bytes of JSON
NOOP_QUEUE = "bench"


def filesystem_of(path: str) -> str:
    """The kind of file system ``path`` is on, with its device and mount point; for ext4,
    whether it has a journal (a jbd2 entry exists for its device): the root ext4 of these
    machines has none, and there creating files after deletes costs ~0.5 ms each."""
    path = os.path.realpath(path)
    best = ("", "unknown", "?")
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                device, point, kind = line.split()[:3]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, kind, device)
    except OSError:
        pass
    point, kind, device = best
    if kind == "ext4":
        name = os.path.basename(device)
        try:
            journaled = any(e.startswith(name + "-") for e in os.listdir("/proc/fs/jbd2"))
        except OSError:
            journaled = False
        kind = "journaled ext4" if journaled else "ext4 without a journal"
    return f"{kind} ({device} on {point or '?'})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _disk_busy_ms() -> int | None:
    """Milliseconds the disks have spent on I/O (field 10 of /sys/block/*/stat), if known."""
    total = 0
    try:
        for name in os.listdir("/sys/block"):
            if name.startswith(("loop", "ram")):
                continue
            with open(f"/sys/block/{name}/stat") as handle:
                total += int(handle.read().split()[9])
    except (OSError, IndexError, ValueError):
        return None
    return total


def settle(quiet_for: float = 2.0, limit: float = 60.0) -> None:
    """Let the disk finish what earlier runs left (writeback, deletions and their discards)
    so that every run starts on a quiet disk: sync, then wait until it is idle a while."""
    os.sync()
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    last = _disk_busy_ms()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now_busy = _disk_busy_ms()
        if now_busy is None:
            time.sleep(2)
            return
        if now_busy != last:
            quiet_since = time.monotonic()
            last = now_busy
        elif time.monotonic() - quiet_since >= quiet_for:
            return


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (from /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (NaN when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_for_workers(client: Any, count: int, timeout: float = 60.0) -> None:
    """Wait until the daemon behind ``client`` has ``count`` workers connected."""
    deadline = time.monotonic() + timeout
    while client.status().get("workers", 0) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not connect")
        time.sleep(0.05)


def start_daemon(root: str, ready: str, env: dict[str, str], *options: str,
                 timeout: float = 60.0, log: str | None = None, control: str | None = None,
                 dispatch: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``ckptd --root ROOT [options] serve`` on free loopback ports (or those given;
    its output into ``log`` when given) and wait until it is ready; return the process and
    its control address."""
    control = control or f"tcp://127.0.0.1:{free_port()}"
    dispatch = dispatch or f"tcp://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "ckptd", "--root", root, *options, "serve", "--control",
               control, "--dispatch", dispatch, "--ready-file", ready]
    if log is None:
        daemon = subprocess.Popen(command, env=env)
    else:
        with open(log, "wb") as output:
            daemon = subprocess.Popen(command, env=env, stdout=output,
                                      stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if time.monotonic() > deadline or daemon.poll() is not None:
            stop([daemon])
            said = open(log).read()[-4000:] if log else ""
            raise RuntimeError(f"the daemon did not start\n{said}")
        time.sleep(0.02)
    return daemon, control


def start_noop_workers(control: str, count: int, concurrency: int, prefetch: int,
                       env: dict[str, str], *, queue: str = NOOP_QUEUE, handler: str = "noop",
                       quiet: bool = False) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` workers running ``bench/handlers.py:noop`` (or ``handler``) on
    :data:`NOOP_QUEUE` (or ``queue``); ``quiet`` drops their output."""
    output = subprocess.DEVNULL if quiet else None
    return [subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect", control,
                              "--queue", queue, "-c", str(concurrency), "--prefetch",
                              str(prefetch), f"handlers:{handler}"], cwd=HERE, env=env,
                             stdout=output, stderr=output)
            for _ in range(count)]


def submit_and_wait(client: Any, n: int, chunk: int, timeout: float) -> tuple[float, float]:
    """Submit ``n`` no-op jobs in requests of ``chunk`` while the workers already run, and
    wait until every one has ended; return (seconds to submit, seconds until all ended)."""
    started = time.perf_counter()
    for start in range(0, n, chunk):
        client.submit_many(NOOP_QUEUE, [NOOP_PAYLOAD] * min(chunk, n - start))
    submitted = time.perf_counter()
    client.wait_many(NOOP_QUEUE, None, timeout=timeout)
    return submitted - started, time.perf_counter() - started


def submit_from_threads(client: Any, queue: str, payload: Any, n: int, threads: int) -> None:
    """``n`` submits from ``threads`` threads sharing ``client``, each one at a time."""
    def lane(count: int) -> None:
        for _ in range(count):
            client.submit(queue, payload)

    running = [threading.Thread(target=lane, args=(n // threads + (k < n % threads),))
               for k in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()


async def submit_in_flight(control: str, queue: str, payload: Any, n: int, in_flight: int
                           ) -> None:
    """``n`` submits from an AsyncClient (through the daemon), ``in_flight`` at a time."""
    from ckptd.client.async_client import AsyncClient

    async with AsyncClient(control, timeout=60) as client:
        numbers = iter(range(n))

        async def lane() -> None:
            for _ in numbers:
                await client.submit(queue, payload)

        await asyncio.gather(*(lane() for _ in range(in_flight)))


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM the processes (the last started first), wait, and kill what does not stop."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
