"""The dashboard in a real headless Chromium: it loads, shows the daemon's counts, escapes
user data, and nothing it does changes state (every request it makes is a GET or HEAD)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.procs import Processes, free_port
from tests.telemetry.helpers import artifacts_dir, fetch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); "
    ".ci/run installs it")
XSS = "<script>alert(1)</script>"


def browse(url: str, profile: Path, *, screenshot: str | None = None) -> str:
    """Load ``url`` in headless Chromium; return the rendered DOM (and save a screenshot)."""
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,900"]
    if screenshot:
        subprocess.run(args + [f"--screenshot={screenshot}", url], check=True,
                       capture_output=True, timeout=120)
        assert os.path.getsize(screenshot) > 10_000
    done = subprocess.run(args + ["--dump-dom", url], check=True, capture_output=True,
                          text=True, timeout=120)
    return done.stdout


def job_counts(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Jobs per state per queue, from a status answer."""
    return {q: {s: c[s] for s in ("pending", "delayed", "claimed", "done", "failed")}
            for q, c in status["queues"].items()}


def counts_in(dom: str) -> dict[tuple[str, str], int]:
    """The per-state counts of the queue table, as the browser rendered them."""
    found = re.findall(r'data-queue="([^"]+)" data-state="([^"]+)">(?:<a [^>]*>)?(\d+)<', dom)
    return {(q, s): int(n) for q, s, n in found}


def test_the_dashboard_shows_the_counts_and_changes_nothing(procs: Processes,
                                                            tmp_path: Path) -> None:
    port = free_port()
    daemon = procs.daemon(metrics_port=port, log_level="debug")
    procs.worker(daemon, "price", "poison")
    with daemon.client() as client:
        good = client.submit_many("price", [{"n": n} for n in range(12)])
        bad = client.submit("price", {"poison": True, "note": XSS}, max_attempts=1,
                            batch="b1")
        client.submit("later", {}, delay=3600)
        client.wait_many("price", good + [bad], timeout=60)
        before = job_counts(client.status())
    wait_for(lambda: counts_in(fetch(port, "/")[2].decode()).get(("price", "done")) == 12,
             timeout=10, message="a snapshot with every job")

    profile = tmp_path / "chromium"
    out = artifacts_dir()
    dom = browse(f"http://127.0.0.1:{port}/", profile,
                 screenshot=os.path.join(out, "dashboard.png"))
    shown = counts_in(dom)
    for queue, counts in before.items():
        for state in ("pending", "delayed", "claimed", "done", "failed"):
            assert shown[(queue, state)] == counts[state], (queue, state)
    queue_dom = browse(f"http://127.0.0.1:{port}/queue/price", profile,
                       screenshot=os.path.join(out, "dashboard-queue.png"))
    assert "Latest failures" in queue_dom and bad in queue_dom
    assert "<script>alert" not in queue_dom
    assert html.escape(XSS, quote=False) in queue_dom
    assert "<svg" in dom and "jobs/min" in dom

    job_dom = browse(f"http://127.0.0.1:{port}/job/price/{bad}", profile,
                     screenshot=os.path.join(out, "dashboard-job.png"))
    assert "is FAILED" in job_dom and "poisoned payload" in job_dom
    assert "<script>alert" not in job_dom
    done_dom = browse(f"http://127.0.0.1:{port}/job/price/{good[0]}", profile)
    assert "is DONE" in done_dom and "Lead time" in done_dom

    # Nothing changed state: only GET and HEAD reached the server, and the jobs are as before.
    with daemon.client() as client:
        assert job_counts(client.status()) == before
    requests = re.findall(r"http request method=(\S+) path=(\S+) code=(\d+)", daemon.log())
    assert len(requests) >= 5, requests
    assert {method for method, _, _ in requests} <= {"GET", "HEAD"}, requests
    assert fetch(port, "/", "POST")[0] == 405
    assert fetch(port, "/job/price/" + bad, "DELETE")[0] == 405
    assert fetch(port, "/job/price/no-such-job")[0] == 404
    assert fetch(port, "/job/price/..%2F..%2Fetc")[0] in (400, 404)
