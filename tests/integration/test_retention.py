"""Retention with real processes: done jobs go (or move to archive/) within keep_done and
the sweep interval, while thousands of jobs flow; status and the metrics count them.

Which jobs go and where archived ones go (by age, keep_last, per state, per queue, only
while leading) is checked on a fake clock in tests/unit/test_retention.py; these runs prove
the sweep's thread, the daemon's counts and the metrics in a real daemon."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.worker_helpers import config_file
from tests.procs import Processes, count_files, free_port

Q = "flow"
JOBS = 10_000  # issue 14: "while 10,000 jobs flow"
KEEP, INTERVAL = 2.0, 1.0
# How late a sweep may be here: a loaded 2-core machine running other tests beside this one
# starts sweeps late, and its disk removes files slowly (10,000 unlinks took 18 s on a loaded
# ext4 without a journal). The bound adds the seconds the daemon says its sweeps took
# (status: retention.sweeping_s), the disk's share. The exact rule (a job older than
# keep_done goes at the next sweep, one sweep per interval) is checked on a fake clock in
# tests/unit/test_retention.py; this bound still fails a daemon that ignores the interval
# (60 s by default) or keeps done jobs.
MARGIN = 10.0


class OldestDone(threading.Thread):
    """Samples the age of the oldest file in done/ (by its last change: when it ended)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.oldest = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            try:
                names = os.listdir(self.folder)
            except FileNotFoundError:
                names = []
            for name in names[:2000]:
                try:
                    info = os.stat(self.folder / name)
                except FileNotFoundError:
                    continue
                self.oldest = max(self.oldest, now - max(info.st_mtime, info.st_ctime))
            time.sleep(0.2)  # a sample every 200 ms


def _flow(procs: Processes, tmp_path: Path, archive: bool, jobs: int) -> tuple[object, int]:
    config = (f'retention_interval = "{INTERVAL:g}s"\n[queues.{Q}]\nkeep_done = "{KEEP:g}s"\n'
              f'archive = {"true" if archive else "false"}\n')
    port = free_port()
    daemon = procs.daemon(env=config_file(tmp_path, config), metrics_port=str(port))
    for _ in range(2):
        procs.worker(daemon, Q, "noop", concurrency=4)
    return daemon, port


@pytest.mark.slow
def test_done_jobs_go_within_keep_done_and_the_interval_while_thousands_flow(
        procs: Processes, tmp_path: Path) -> None:
    daemon, port = _flow(procs, tmp_path, archive=False, jobs=JOBS)
    done = Path(daemon.root) / Q / "done"
    sampler = OldestDone(done)
    sampler.start()
    try:
        with daemon.client(timeout=60) as client:
            for start in range(0, JOBS, 500):
                client.submit_many(Q, [{"n": n} for n in range(start, start + 500)])
            assert client.wait_many(Q, None, timeout=240)["open"] == 0
        finished = time.time()
        wait_for(lambda: count_files(daemon.root, Q, "done") == 0,
                 timeout=KEEP + INTERVAL + MARGIN + 240, message="done/ to empty")
        emptied = time.time() - finished
    finally:
        sampler.stop.set()
        sampler.join()
    with daemon.client() as client:
        status = client.status(Q)["queues"][Q]
    sweeping = status["retention"]["sweeping_s"]
    assert 0 < sweeping, "the sweeps' time is counted"
    bound = KEEP + INTERVAL + MARGIN + sweeping
    assert emptied <= bound, \
        f"the last done jobs went after {emptied:.1f}s (sweeps took {sweeping:.1f}s)"
    assert sampler.oldest <= bound, \
        f"a done job stayed {sampler.oldest:.1f}s (sweeps took {sweeping:.1f}s)"
    assert status["retention"]["keep_done"] == "2s"
    assert status["retention"]["removed_done"] == JOBS
    assert status["done"] == 0
    line = b'ckptd_retention_jobs_total{action="removed",queue="flow",state="done"} ' \
        + f"{JOBS:.1f}".encode()
    wait_for(lambda: line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                    timeout=10).read(),
             timeout=10, message="the metric of the removed jobs")


@pytest.mark.slow
def test_archive_moves_done_jobs_under_archive_date(procs: Processes, tmp_path: Path) -> None:
    daemon, _ = _flow(procs, tmp_path, archive=True, jobs=200)
    with daemon.client() as client:
        ids = client.submit_many(Q, [{"n": n} for n in range(200)])
        assert client.wait_many(Q, None, timeout=60)["open"] == 0
    wait_for(lambda: count_files(daemon.root, Q, "done") == 0,
             timeout=KEEP + INTERVAL + MARGIN + 60, message="done/ to empty")
    archived = {p.name[:-5] for p in (Path(daemon.root) / Q / "archive").glob("*/*.json")}
    assert archived == set(ids)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert (Path(daemon.root) / Q / "archive" / day).is_dir()
