"""``ckptd wait``: exit 0 when all is done, 8 when some failed or the wait timed out."""

from __future__ import annotations

from pathlib import Path

from tests.procs import Processes
from tests.telemetry.helpers import ckptd


def test_wait_through_the_daemon_and_on_the_bare_store(procs: Processes,
                                                       tmp_path: Path) -> None:
    daemon = procs.daemon(backoff_base="0.05s", backoff_cap="0.1s")
    procs.worker(daemon, "q", "flaky", concurrency=2)
    connect = ("--connect", daemon.control)
    with daemon.client() as client:
        good = [client.submit("q", {"fail": n % 2}) for n in range(10)]
        bad = client.submit("q", {"fail": 9}, max_attempts=2)
        idle = client.submit("nobody", {})  # no worker serves this queue

    ok = ckptd(*connect, "wait", "q", *good, "--progress")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "10 job(s): 10 done, 0 failed"
    assert "ETA" in ok.stderr and "10/10" in ok.stderr, "the progress bar was drawn"

    mixed = ckptd(*connect, "wait", "q", *good, bad, "--timeout", "1m")
    assert mixed.returncode == 8
    assert "11 job(s): 10 done, 1 failed" in mixed.stdout and f"failed: {bad}" in mixed.stderr

    everything = ckptd(*connect, "wait", "q", "--all", "--timeout", "30s")
    assert everything.returncode == 0, everything.stdout + everything.stderr

    late = ckptd(*connect, "wait", "nobody", idle, "--timeout", "1s")
    assert late.returncode == 8 and "1 still open (timed out)" in late.stdout
    late_all = ckptd(*connect, "wait", "nobody", "--all", "--timeout", "1s")
    assert late_all.returncode == 8 and "(timed out)" in late_all.stdout

    bare = ("--root", daemon.root)
    assert ckptd(*bare, "wait", "q", *good).returncode == 0
    assert ckptd(*bare, "wait", "q", bad, good[0]).returncode == 8
    assert ckptd(*bare, "wait", "nobody", idle, "--timeout", "1s").returncode == 8
    assert ckptd(*bare, "wait", "q", "--all", "--timeout", "10s").returncode == 0
    missing = ckptd(*bare, "wait", "q", "no-such-job")
    assert missing.returncode == 3 and "no job" in missing.stderr
    usage = ckptd(*bare, "wait", "q")
    assert usage.returncode == 2 and "--all" in usage.stderr
