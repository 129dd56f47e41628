"""``ckptd replay``: finished jobs copied as new pending jobs with their lineage, into a
sandbox root or the same one; the source store is only read (hashed before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ckptd.codec import encode_job
from ckptd.core.config import Settings
from ckptd.core.edits import attempt_failed, finished
from ckptd.core.ids import new_id
from ckptd.core.job_filter import make_filter
from ckptd.core.jobs import error_record, new_job
from ckptd.core.states import State
from ckptd.store import open_store
from ckptd.store.base import PutCheckpoint, PutNew
from ckptd.store.replay import replay
from tests.procs import REPO, base_env


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes (and its mode and mtime)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = f"{digest} {stat.st_mode} {stat.st_mtime_ns}"
    return found


def finished_store(root: Path, done: int, failed: int) -> dict[str, str]:
    """A store with ``done`` done and ``failed`` failed jobs of queue price; return each
    id's sku."""
    store = open_store(str(root), "never")
    now = time.time() - 60
    skus = {}
    ops = []
    for n in range(done + failed):
        job_id = new_id(now + n / 1000)
        sku = f"S-{n % 10}"
        skus[job_id] = sku
        job = new_job("price", job_id, {"sku": sku, "n": n}, now, max_attempts=2)
        ops.append(PutNew("price", job_id, encode_job(job)))
        if n % 7 == 0:
            ops.append(PutCheckpoint("price", job_id, json.dumps({"state": n}).encode()))
    store.apply(ops)
    moves = []
    for n, job_id in enumerate(skus):
        job = json.loads(store.read("price", State.PENDING, job_id))
        if n < done:
            job = finished(job, attempt=1, claimed_at=now, now=now + 1, worker="w",
                           result={"ok": n})
            moves.append((job_id, State.DONE, job))
        else:
            error = error_record("supplier timed out", "TimeoutError", None, 2, now + 1, "w")
            job = attempt_failed(job, attempt=2, claimed_at=now, now=now + 1, error=error,
                                 outcome="error", retry_at=None)
            moves.append((job_id, State.FAILED, job))
    from ckptd.store.base import Move

    store.apply([Move("price", i, State.PENDING, s, encode_job(j)) for i, s, j in moves])
    store.close()
    return skus


def test_replay_1000_jobs_into_a_sandbox_leaves_the_source_as_it_was(tmp_path: Path) -> None:
    source_root, sandbox_root = tmp_path / "store", tmp_path / "sandbox"
    finished_store(source_root, done=1000, failed=200)
    before = tree_hash(source_root)
    source, sandbox = open_store(str(source_root), "never"), open_store(str(sandbox_root),
                                                                        "never")
    answer = replay(source, sandbox, Settings(root=str(source_root)), "price", State.DONE,
                    make_filter(now=time.time()), now=time.time(), keep_checkpoint=True)
    assert (answer.matched, answer.created, answer.skipped) == (1000, 1000, 0)
    assert answer.checkpoints == len([i for i in range(1000) if i % 7 == 0])
    assert tree_hash(source_root) == before, "the source store changed"
    copies = sandbox.ids("price", State.PENDING)
    assert len(copies) == 1000
    originals = set(source.ids("price", State.DONE))
    seen = set()
    for job_id in copies:
        job = json.loads(sandbox.read("price", State.PENDING, job_id))
        lineage = job["replay_of"]
        assert lineage["id"] in originals and lineage["state"] == "done"
        assert lineage["root"] == source.url and lineage["queue"] == "price"
        original = json.loads(source.read("price", State.DONE, lineage["id"]))
        assert job["payload"] == original["payload"] and job["attempts"] == 0
        assert "result" not in job and job["id"] != lineage["id"]
        seen.add(lineage["id"])
        if original["payload"]["n"] % 7 == 0:  # its checkpoint came along
            assert json.loads(sandbox.read_checkpoint("price", job_id) or b"{}") == {
                "state": original["payload"]["n"]}
    assert seen == originals  # each job copied once
    source.close()
    sandbox.close()


def test_replay_filters_and_dry_runs_through_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "store"
    skus = finished_store(root, done=30, failed=20)
    before = tree_hash(root)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ckptd", "--root", str(root), *args],
                              capture_output=True, text=True, env=base_env(), cwd=REPO,
                              timeout=60)

    dry = cli("replay", "price", "--from", "failed", "--where", "sku=S-3", "--dry-run",
              "--json")
    assert dry.returncode == 0, dry.stderr
    wanted = [i for n, i in enumerate(skus) if n >= 30 and skus[i] == "S-3"]
    answer = json.loads(dry.stdout)
    assert answer["matched"] == len(wanted) == 2 and answer["created"] == 0
    assert tree_hash(root) == before  # a dry run writes nothing
    real = cli("replay", "price", "--from", "failed", "--error", "TimeoutError",
               "--since", "1h")
    assert real.returncode == 0, real.stderr
    assert "copied 20 failed job(s) of price" in real.stdout
    store = open_store(str(root), "never")
    pending = [json.loads(store.read("price", State.PENDING, i))
               for i in store.ids("price", State.PENDING)]
    assert len(pending) == 20 and all(j["replay_of"]["state"] == "failed" for j in pending)
    assert all("root" not in j["replay_of"] for j in pending)  # the same store
    assert len(store.ids("price", State.FAILED)) == 20  # the originals stay where they are
    none = cli("replay", "price", "--from", "done", "--since", "2026-01-01T00:00:00Z",
               "--until", "2026-01-02T00:00:00Z", "--json")
    assert json.loads(none.stdout)["matched"] == 0
    bad = cli("replay", "price", "--from", "done", "--where", "nofield")
    assert bad.returncode == 5 and "FIELD=VALUE" in bad.stderr
    store.close()
