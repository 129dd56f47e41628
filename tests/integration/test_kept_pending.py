"""The daemon keeps the pending files it writes in memory until their claim; a file that
someone else replaces or rewrites in the meantime is read again, so what runs is what is on
disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ckptd.core.config import Settings
from ckptd.store.admin import StoreAdmin
from ckptd.store.local.backend import LocalStore
from tests.procs import Processes, job_files


def test_a_pending_file_changed_by_hand_after_its_submit_runs_as_changed(
        procs: Processes, tmp_path: Path) -> None:
    daemon = procs.daemon(fsync="never", start=False)
    # The queue exists before the daemon starts, so its pending/ is watched from the start
    # and the daemon keeps what it writes there.
    StoreAdmin(LocalStore(daemon.root), Settings()).submit("q", {"v": 0})
    daemon.start()
    with daemon.client() as client:
        replaced = client.submit("q", {"v": 1})
        rewritten = client.submit("q", {"v": 1})
        untouched = client.submit("q", {"v": 1})
    pending = Path(daemon.root) / "q" / "pending"
    for job_id, how in ((replaced, "mv"), (rewritten, "in place")):
        job = json.loads((pending / f"{job_id}.json").read_text())
        job["payload"] = {"v": 2, "how": how}
        if how == "mv":  # the README's way: written elsewhere, then moved in
            staged = tmp_path / "staged.json"
            staged.write_text(json.dumps(job))
            os.rename(staged, pending / f"{job_id}.json")
        else:
            (pending / f"{job_id}.json").write_text(json.dumps(job))
    procs.worker(daemon, "q", "echo")
    with daemon.client() as client:
        client.wait_many("q", [replaced, rewritten, untouched], timeout=60)
    done = job_files(daemon.root, "q", "done")
    assert done[replaced]["result"]["echo"] == {"v": 2, "how": "mv"}
    assert done[rewritten]["result"]["echo"] == {"v": 2, "how": "in place"}
    assert done[untouched]["result"]["echo"] == {"v": 1}
