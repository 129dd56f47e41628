"""What the daemon finds at start-up and while running: leftovers, duplicates, bad files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ckptd.core.config import Settings
from ckptd.store.admin import StoreAdmin
from ckptd.store.local.backend import LocalStore
from tests.helpers import wait_for
from tests.procs import Processes, count_files, job_files


def test_start_up_resolves_a_job_left_in_two_states(procs: Processes) -> None:
    daemon = procs.daemon(start=False)
    admin = StoreAdmin(LocalStore(daemon.root), Settings(root=daemon.root))
    job_id = admin.submit("q", {"n": 1}).id
    root = daemon.root
    # A crash between writing done/ and removing claimed/: the done copy has the higher rev.
    pending = json.loads(Path(f"{root}/q/pending/{job_id}.json").read_text())
    os.rename(f"{root}/q/pending/{job_id}.json", f"{root}/q/claimed/{job_id}.json")
    finished = dict(pending, attempts=1, rev=1, result="kept")
    Path(f"{root}/q/done/{job_id}.json").write_text(json.dumps(finished))
    Path(f"{root}/q/tmp/{job_id}.123.0").write_text("half a write")
    old = time.time() - 7200
    os.utime(f"{root}/q/tmp/{job_id}.123.0", (old, old))
    daemon.start()
    assert count_files(root, "q", "claimed") == 0
    assert job_files(root, "q", "done")[job_id]["result"] == "kept"
    assert os.listdir(f"{root}/q/tmp") == []
    assert "keep done" in daemon.log()


def test_a_malformed_file_in_pending_is_quarantined_and_the_rest_runs(procs: Processes,
                                                                      tmp_path: Path) -> None:
    daemon = procs.daemon()
    procs.worker(daemon, "q", "echo")
    root = daemon.root
    with daemon.client() as client:
        first = client.submit("q", {"n": 0})
        assert client.wait("q", first, timeout=30) == "done"
        junk = tmp_path / "junk.json"
        junk.write_text('{"id": "broken", "queue": "q", "payload": ')  # cut short
        old = time.time() - 60
        os.utime(junk, (old, old))  # not a file still being written: it is old
        os.rename(junk, f"{root}/q/pending/broken.json")
        ids = client.submit_many("q", [{"n": i} for i in range(1, 20)])
        client.wait_many("q", ids, timeout=60)
        wait_for(lambda: os.path.exists(f"{root}/q/quarantine/broken.json"), timeout=20,
                 message="the malformed file to be quarantined")
    reason = Path(f"{root}/q/quarantine/broken.json.reason.txt").read_text()
    assert "not valid JSON" in reason
    assert set(job_files(root, "q", "done")) == {first, *ids}
    assert count_files(root, "q", "pending") == 0
