"""The console's port holds against abuse: a huge URL gets 414 and no traceback, a thousand
idle connections neither stop /metrics nor make threads, and uploads beyond their bounds
are refused (per client and in all)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from ckptd.core.errors import CkptdError
from ckptd.wire.uploads import encode_part
from tests.helpers import wait_for
from tests.procs import Processes
from tests.telemetry.console_helpers import Browser, console_daemon

IDLE = 1000


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return int(next(line for line in handle if line.startswith("Threads:")).split()[1])


def test_a_huge_url_gets_414_and_no_traceback(procs: Processes, tmp_path: Path) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    web = Browser(port)
    for size in (70_000, 9_000):
        answer = web.request("GET", "/" + "a" * size)
        assert answer.status == 414, size
    assert web.request("GET", "/job/q/" + "x" * 70_000).status == 414
    assert web.request("GET", "/" + "a" * 300_000).status in (400, 414)  # past the parser's
    assert web.request("GET", "/healthz").status == 200  # and it goes on serving
    log = daemon.log()
    assert "Traceback" not in log and "Error handling request" not in log


def test_idle_connections_cost_no_thread_and_metrics_answers(procs: Processes,
                                                             tmp_path: Path) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    assert daemon.proc is not None
    web = Browser(port)
    assert web.request("GET", "/metrics").status == 200
    before = threads_of(daemon.proc.pid)
    idle = []
    try:
        for _ in range(IDLE):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(sock)
        half = socket.create_connection(("127.0.0.1", port), timeout=10)
        idle.append(half)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            answer = web.request("GET", "/metrics")
            timings.append(time.perf_counter() - started)
            assert answer.status == 200 and "ckptd_info" in answer.body
        during = threads_of(daemon.proc.pid)
        print(f"/metrics with {IDLE} idle connections: "
              f"{', '.join(f'{t * 1000:.1f}' for t in timings)} ms; threads {before} -> "
              f"{during}")
        assert during <= before + 4, (before, during)  # the I/O pool at most, not per socket
    finally:
        for sock in idle:
            sock.close()
    assert daemon.alive()


def test_idle_connections_are_closed_by_the_server(procs: Processes, tmp_path: Path) -> None:
    daemon, port = console_daemon(procs, tmp_path)
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET / HTTP/1.1\r\n")  # a slow client: half a request, then nothing
    try:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server (its idle timeout, 15 s)
        assert time.monotonic() - started < 60
    finally:
        sock.close()


def test_uploads_beyond_their_bounds_are_refused(procs: Processes, tmp_path: Path) -> None:
    daemon, _ = console_daemon(procs, tmp_path, upload_limit_client="3MiB",
                               upload_limit_total="5MiB")
    part = encode_part(os.urandom(1024 * 1024))
    with daemon.client() as first, daemon.client() as second:
        for offset in range(3):
            assert first.request("upload", {"upload": "up-a", "offset": offset * 2 ** 20,
                                            "data": part})["size"] == (offset + 1) * 2 ** 20
        with pytest.raises(CkptdError, match="upload_limit_client"):
            first.request("upload", {"upload": "up-a", "offset": 3 * 2 ** 20, "data": part})
        with pytest.raises(CkptdError, match="upload_limit_client"):
            first.request("upload", {"upload": "up-b", "offset": 0, "data": part})
        second.request("upload", {"upload": "up-c", "offset": 0, "data": part})
        second.request("upload", {"upload": "up-c", "offset": 2 ** 20, "data": part})
        with pytest.raises(CkptdError, match="upload_limit_total"):
            second.request("upload", {"upload": "up-c", "offset": 2 * 2 ** 20, "data": part})
        # What was taken is whole and usable: a submit of it works.
        batch = first.request("submit_file", {"upload": "up-a", "size": 3 * 2 ** 20,
                                              "queue": "files", "format": "lines",
                                              "chunk": 100000})
        assert batch["jobs"] >= 1
    wait_for(lambda: daemon.alive(), timeout=1)
