"""The local store against other processes and power cuts: nothing renamed onto an existing
job, folders synced in the order that can only duplicate a job, never lose it, and one
daemon per root (a lock the kernel releases when its holder dies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ckptd.core.config import FsyncMode
from ckptd.core.errors import JobExists, JobNotFound, LockHeld
from ckptd.core.states import State
from ckptd.store.local import backend as local_module
from ckptd.store.local import grouped as grouped_module
from ckptd.store.local.backend import ROOT_LOCK, LocalStore
from ckptd.store.recovery import resolve_duplicate


def job(job_id: str, rev: int = 0) -> bytes:
    return json.dumps({"id": job_id, "queue": "q", "payload": 1, "created": "x",
                       "attempts": 0, "max_attempts": 3, "rev": rev}).encode()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    made = LocalStore(str(tmp_path / "root"), FsyncMode.BATCH)
    yield made
    made.close()


def test_a_claim_never_replaces_a_copy_already_in_claimed(store: LocalStore) -> None:
    store.put_new("q", "a", job("a", rev=1))
    # Another process (or a crash) left a copy of the job in claimed/.
    store.put_new("q", "tmpname", job("a", rev=2))
    Path(store.root, "q", "pending", "tmpname.json").rename(
        Path(store.root, "q", "claimed", "a.json"))
    with pytest.raises(JobExists, match="already there"):
        store.move("q", "a", State.PENDING, State.CLAIMED)
    assert store.find("q", "a") == [State.PENDING, State.CLAIMED], "both copies kept"
    assert json.loads(store.read("q", State.CLAIMED, "a"))["rev"] == 2


def test_a_rewriting_move_never_replaces_a_copy_in_its_target(store: LocalStore) -> None:
    store.put_new("q", "b", job("b"))
    store.move("q", "b", State.PENDING, State.CLAIMED)
    Path(store.root, "q", "done", "b.json").write_bytes(job("b", rev=5))
    with pytest.raises(JobExists):
        store.move("q", "b", State.CLAIMED, State.DONE, job("b", rev=1))
    assert json.loads(store.read("q", State.DONE, "b"))["rev"] == 5, "not replaced"
    assert store.find("q", "b") == [State.CLAIMED, State.DONE]


@pytest.mark.parametrize("mode", [FsyncMode.BATCH, FsyncMode.ALWAYS])
def test_the_new_name_is_synced_before_the_old_one_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: FsyncMode) -> None:
    synced: list[str] = []
    real = local_module.fsync_dir

    def record(path: str) -> None:
        synced.append(Path(path).name)
        real(path)

    monkeypatch.setattr(local_module, "fsync_dir", record)
    monkeypatch.setattr(grouped_module, "fsync_dir", record)  # apply's steps live there
    store = LocalStore(str(tmp_path / "root"), mode)
    try:
        store.put_new("q", "c", job("c"))
        store.move("q", "c", State.PENDING, State.CLAIMED)
        synced.clear()
        store.move("q", "c", State.CLAIMED, State.DONE, job("c", rev=1))
    finally:
        store.close()
    assert "done" in synced and "claimed" in synced
    assert synced.index("done") < synced.index("claimed"), synced


def test_one_holder_of_a_roots_lock(store: LocalStore) -> None:
    held = store.lock(ROOT_LOCK)
    held.describe({"pid": 4242, "host": "vm1", "control": "tcp://127.0.0.1:5550"})
    with pytest.raises(LockHeld, match="pid 4242 on vm1 control tcp://127.0.0.1:5550"):
        store.lock(ROOT_LOCK)
    assert store.lock_holder(ROOT_LOCK) == {"pid": 4242, "host": "vm1",
                                            "control": "tcp://127.0.0.1:5550"}
    held.release()
    assert store.lock_holder(ROOT_LOCK) is None
    again = store.lock(ROOT_LOCK)
    again.release()
    assert ".ckptd" not in store.queues(), "the lock's folder is not a queue"


def _meddle_before_discard(store: LocalStore, monkeypatch: pytest.MonkeyPatch,
                           meddle: Any) -> None:
    """Run ``meddle`` between a rewriting move's new copy and the removal of its old one
    (where another process sees the job in two folders)."""
    real = store._discard

    def discard(queue: str, path: str, job_id: str) -> bool:
        meddle()
        return real(queue, path, job_id)
    monkeypatch.setattr(store, "_discard", discard)


def test_a_retry_stands_when_a_daemon_repairs_the_two_copies_meanwhile(
        store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --root retry beside a running daemon: the daemon sees the job in failed/ and in
    pending/, keeps the new copy (higher rev) and removes the old one. The retry must not
    then take its new copy back: the job would be in no folder."""
    store.put_new("q", "c", job("c", rev=1))
    store.move("q", "c", State.PENDING, State.CLAIMED)
    store.move("q", "c", State.CLAIMED, State.FAILED, job("c", rev=2))
    daemon = LocalStore(str(tmp_path / "root"), FsyncMode.BATCH)
    _meddle_before_discard(store, monkeypatch, lambda: resolve_duplicate(
        daemon, "q", "c", daemon.find("q", "c"), repair=True))
    store.move("q", "c", State.FAILED, State.PENDING, job("c", rev=3))
    assert store.find("q", "c") == [State.PENDING]
    assert json.loads(store.read("q", State.PENDING, "c"))["rev"] == 3


def test_a_retry_stands_when_its_new_copy_ran_and_was_repaired_meanwhile(
        store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --root retry beside a fast daemon (seen in CI): before the old copy is removed,
    the daemon claims the new copy from pending/, its attempt fails at once, and the move
    to failed/ finds the old copy there; the daemon keeps the claimed copy (higher rev) and
    removes the old one. The retry took effect: it must report success, not 'not in
    failed/', and leave the job where the daemon put it."""
    store.put_new("q", "e", job("e", rev=1))
    store.move("q", "e", State.PENDING, State.CLAIMED)
    store.move("q", "e", State.CLAIMED, State.FAILED, job("e", rev=2))
    daemon = LocalStore(str(tmp_path / "root"), FsyncMode.BATCH)

    def claim_then_repair() -> None:
        daemon.move("q", "e", State.PENDING, State.CLAIMED)
        with pytest.raises(JobExists):
            daemon.move("q", "e", State.CLAIMED, State.FAILED, job("e", rev=4))
        resolve_duplicate(daemon, "q", "e", daemon.find("q", "e"), repair=True)
    _meddle_before_discard(store, monkeypatch, claim_then_repair)
    store.move("q", "e", State.FAILED, State.PENDING, job("e", rev=3))
    assert store.find("q", "e") == [State.CLAIMED]
    assert json.loads(store.read("q", State.CLAIMED, "e"))["rev"] == 3


def test_a_move_whose_job_was_moved_on_meanwhile_takes_its_copy_back(
        store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's mv of the old copy (failed/ to done/) during a retry: the job is in
    done/, and the retry's new copy is taken back (one copy, where the operator put it)."""
    store.put_new("q", "d", job("d", rev=1))
    store.move("q", "d", State.PENDING, State.CLAIMED)
    store.move("q", "d", State.CLAIMED, State.FAILED, job("d", rev=2))
    root = Path(store.root, "q")
    _meddle_before_discard(store, monkeypatch, lambda: (root / "failed" / "d.json").rename(
        root / "done" / "d.json"))
    with pytest.raises(JobNotFound, match="not in q/failed/"):
        store.move("q", "d", State.FAILED, State.PENDING, job("d", rev=3))
    assert store.find("q", "d") == [State.DONE]


def _claim_at_once(store: LocalStore, monkeypatch: pytest.MonkeyPatch, job_id: str) -> None:
    """A daemon that claims a new pending file right after it appears (before the PutNew
    looks in the other folders)."""
    real = local_module.crashpoints.reached
    root = Path(store.root, "q")

    def reached(label: str) -> None:
        if label == "after_rename" and (root / "pending" / f"{job_id}.json").exists():
            (root / "pending" / f"{job_id}.json").rename(root / "claimed" / f"{job_id}.json")
        real(label)
    monkeypatch.setattr(local_module.crashpoints, "reached", reached)


def _made(job_id: str, created: str) -> bytes:
    return json.dumps({"id": job_id, "queue": "q", "payload": 1, "created": created,
                       "attempts": 0, "max_attempts": 3}).encode()


def test_a_new_job_claimed_at_once_is_not_taken_for_another(
        store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _claim_at_once(store, monkeypatch, "e")
    store.put_new("q", "e", _made("e", "2026-12-06T08:00:00.000001Z"))
    assert store.find("q", "e") == [State.CLAIMED]


def test_a_job_made_again_is_refused_even_when_claimed_at_once(
        store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A submit-file run again with --root beside a daemon: the job ended long ago; the
    daemon claims the new copy at once. The put is refused (nothing new), and the daemon's
    two-state rule keeps the ended copy."""
    Path(store.root, "q", "done").mkdir(parents=True, exist_ok=True)
    Path(store.root, "q", "done", "f.json").write_bytes(_made("f", "2026-12-06T07:00:00Z"))
    _claim_at_once(store, monkeypatch, "f")
    with pytest.raises(JobExists):
        store.put_new("q", "f", _made("f", "2026-12-06T08:00:00Z"))
