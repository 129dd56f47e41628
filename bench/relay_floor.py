"""The raw floor of a submit through a daemon: the least a Python process can do per request.

A bare ZeroMQ ROUTER in its own process polls, receives a request, decodes its JSON, writes a
job file into ``tmp/`` and renames it into ``pending/`` (as ckptd does with ``fsync never``),
and replies; a DEALER sends the requests one at a time, as a producer on another machine
does. The server's CPU per request (from /proc, its ZeroMQ I/O thread included) is what a
daemon written this way cannot go below: it has no index, no checks, no recovery, no
workers. ``bench/submits.py`` prints it next to ckptd's daemon, in the same run.

    python bench/relay_floor.py --n 10000 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import msgspec
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import cpu_seconds, filesystem_of, free_port, stop  # noqa: E402

WARM_UP = 200


def serve(endpoint: str, root: str) -> None:
    """Answer requests until one says ``stop``: each becomes one file in ``root/pending``."""
    os.makedirs(f"{root}/tmp", exist_ok=True)
    os.makedirs(f"{root}/pending", exist_ok=True)
    encode, decode = msgspec.json.encode, msgspec.json.decode
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    number = 0
    while True:
        if not poller.poll(250):
            continue
        identity, _, kind, body = sock.recv_multipart()
        if kind == b"stop":
            break
        job_id = f"{number:012d}"
        record = encode({"id": job_id, "queue": "floor", "payload": decode(body),
                         "created": time.time(), "attempts": 0})
        tmp = f"{root}/tmp/{job_id}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
        os.rename(tmp, f"{root}/pending/{job_id}.json")
        sock.send_multipart([identity, b"", b"ok", encode({"id": job_id})])
        number += 1
    sock.close(linger=0)
    ctx.term()


def measure(n: int, folder: str, payload: object) -> dict[str, float]:
    """Run the floor server on ``folder`` for ``n`` requests sent one at a time; return the
    requests/s and the CPU per request (µs) of the server and of this process's bare
    producer."""
    root = tempfile.mkdtemp(prefix="floor-", dir=folder)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", endpoint, "--root", root])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    body = msgspec.json.encode(payload)
    try:
        for _ in range(WARM_UP):  # connected, imports done: not counted
            sock.send_multipart([b"", b"submit", body])
            sock.recv_multipart()
        cpu0, mine0, started = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
        for _ in range(n):
            sock.send_multipart([b"", b"submit", body])
            sock.recv_multipart()
        took = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu0
        producer = time.process_time() - mine0
        sock.send_multipart([b"", b"stop", b""])
        server.wait(timeout=30)
    finally:
        sock.close(linger=0)
        ctx.term()
        stop([server])
        shutil.rmtree(root, ignore_errors=True)
    return {"rate": n / took, "daemon_us": 1e6 * cpu / n, "producer_us": 1e6 * producer / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dir", default="/dev/shm", help="where the files go")
    parser.add_argument("--serve", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.root)
        return
    row = measure(args.n, args.dir, {"data": "x" * 88})
    print(f"floor ({filesystem_of(args.dir)}): {row['rate']:,.0f} requests/s, server CPU "
          f"{row['daemon_us']:.0f} us per request")


if __name__ == "__main__":
    main()
