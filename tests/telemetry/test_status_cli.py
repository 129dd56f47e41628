"""``ckptd status``: the table, --json with its old keys, and --watch until Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_for
from tests.procs import REPO, Processes, base_env
from tests.telemetry.helpers import ckptd

FIGURES = ("throughput_1m", "delayed", "workers", "lead_p50_s", "lead_p95_s", "cycle_p50_s",
           "cycle_p95_s", "oldest_pending_age_s")


def test_status_through_the_daemon_and_on_the_bare_store(procs: Processes,
                                                          tmp_path: Path) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, "s", "flaky")
    with daemon.client() as client:
        ids = [client.submit("s", {"fail": 0}) for _ in range(5)]
        client.submit("s", {"fail": 9}, max_attempts=1)
        client.submit("idle", {}, delay=3600)
        client.wait_many("s", None, timeout=60)
        assert ids
    answer = json.loads(ckptd("--connect", daemon.control, "status", "--json").stdout)
    s = answer["queues"]["s"]
    assert {k: s[k] for k in ("pending", "claimed", "done", "failed")} == {
        "pending": 0, "claimed": 0, "done": 5, "failed": 1}
    assert set(FIGURES) <= set(s) and s["workers"] == 1 and s["lead_p50_s"] > 0
    assert answer["queues"]["idle"]["delayed"] == 1
    table = ckptd("--connect", daemon.control, "status").stdout
    header = table.splitlines()[1]
    assert header.split() == ["queue", "pending", "delayed", "claimed", "waiting", "done",
                              "failed", "jobs/s", "lead", "p50/p95", "cycle", "p50/p95",
                              "oldest", "workers"]
    assert re.search(r"^s\s+0\s+0\s+0\s+0\s+5\s+1\s", table, re.M), table
    assert re.search(r"^idle\s+1\s+1\s+0\s+0\s+0\s+0\s", table, re.M), table

    bare = ckptd("--root", daemon.root, "status")
    assert bare.returncode == 0 and re.search(r"^s\s+0\s+0\s+0\s+5\s+1\s+0$", bare.stdout,
                                              re.M)
    counts = json.loads(ckptd("--root", daemon.root, "status", "--json").stdout)["queues"]["s"]
    assert counts["done"] == 5 and counts["failed"] == 1


def test_watch_redraws_until_ctrl_c(procs: Processes) -> None:
    daemon = procs.daemon()
    with daemon.client() as client:
        client.submit("w", {})
    proc = subprocess.Popen([sys.executable, "-m", "ckptd", "--connect", daemon.control,
                             "status", "--watch"], stdout=subprocess.PIPE, env=base_env(),
                            cwd=REPO)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)  # so that wait_for keeps its timeout
    seen = b""

    def redrawn_twice() -> bool:
        nonlocal seen
        try:
            seen += proc.stdout.read1(65536) or b""  # type: ignore[union-attr]
        except BlockingIOError:
            pass
        return seen.count(b"\x1b[2J") >= 2

    try:
        wait_for(redrawn_twice, timeout=20, message="two redraws")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)
    assert code == 0, "Ctrl-C ends the watch cleanly"
    assert re.search(rb"^w\s+1\s", seen, re.M)
