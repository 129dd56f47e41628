"""Garbage on every socket while real jobs run: the daemon serves on and counts the drops."""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

import zmq

from tests.procs import Processes, job_files


def garbage_messages(rng: random.Random, count: int) -> list[list[bytes]]:
    messages: list[list[bytes]] = []
    for n in range(count):
        kind = n % 6
        if kind == 0:  # random frames, random count
            messages.append([rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 6))])
        elif kind == 1:  # right version, wrong frame count
            messages.append([b"ckptd/1", b"done"])
        elif kind == 2:  # right shape, bad JSON / bad UTF-8
            messages.append([b"ckptd/1", b"done", b"\xff\xfe{not json"])
        elif kind == 3:  # right shape, wrong types and hostile names
            messages.append([b"ckptd/1", b"done",
                             b'{"queue": "../etc", "id": "x", "attempt": "one"}'])
        elif kind == 4:  # a control-looking request with a bad version
            messages.append([b"", b"ckptd/9", b"submit", b"{}"])
        else:  # unknown kind
            messages.append([b"ckptd/1", b"explode", b"{}"])
    return messages


def blast(endpoints: list[str], stop: threading.Event, sent: list[int]) -> None:
    rng = random.Random(3)
    ctx = zmq.Context()
    socks = []
    for endpoint in endpoints:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(endpoint)
        socks.append(sock)
    big = os.urandom(10 * 1024 * 1024)
    try:
        while not stop.is_set() and sent[0] < 3000:
            for sock in socks:
                for frames in garbage_messages(rng, 20):
                    try:
                        sock.send_multipart(frames, zmq.NOBLOCK)
                        sent[0] += 1
                    except zmq.Again:
                        pass
                try:  # a 10 MiB frame now and then
                    sock.send_multipart([b"ckptd/1", b"done", big], zmq.NOBLOCK)
                    sent[0] += 1
                except zmq.Again:
                    pass
            # and raw bytes that are not ZeroMQ at all
            for endpoint in endpoints:
                host, port = endpoint[len("tcp://"):].rsplit(":", 1)
                try:
                    with socket.create_connection((host, int(port)), timeout=1) as raw:
                        raw.sendall(rng.randbytes(512))
                except OSError:
                    pass
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()


def test_garbage_on_every_socket_while_jobs_run(procs: Processes, tmp_path: Path) -> None:
    daemon = procs.daemon()
    for _ in range(2):
        procs.worker(daemon, "g", "echo", prefetch=2)
    stop = threading.Event()
    sent = [0]
    thread = threading.Thread(target=blast, args=(
        [daemon.control, f"tcp://127.0.0.1:{daemon.dispatch_port}"], stop, sent))
    thread.start()
    try:
        with daemon.client(timeout=30) as client:
            ids = []
            for chunk in range(3):
                ids += client.submit_many("g", [{"n": chunk * 100 + i} for i in range(100)])
            client.wait_many("g", ids, timeout=120)
            stop.set()
            thread.join(60)
            status = client.status()
    finally:
        stop.set()
        thread.join(60)
    assert daemon.alive()
    assert set(job_files(daemon.root, "g", "done")) == set(ids)
    drops = status["drops"]
    assert sum(drops.values()) > 0 and sent[0] > 0
    assert any(k.startswith("dispatch:") for k in drops)
    assert any(k.startswith("control:") for k in drops)
    print(f"\nsent {sent[0]} garbage messages; drops by reason: {drops}")
