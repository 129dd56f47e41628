"""Hostile names and planted symlinks: nothing reaches outside the store's root.

Every hostile name is tried as a queue name and as a job id against every store call of both
backends (the local disk, and the bucket store on ``memory://``), then through a running
daemon's control socket. A canary folder beside the root must stay empty, and nothing may
appear anywhere outside the root. Planted symlinks (a queue folder, a state folder, a job
file) are refused or moved as links, never followed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from ckptd.client.client import Client
from ckptd.core.errors import InvalidName, MalformedJob, RemoteError, StoreError
from ckptd.core.states import State
from ckptd.store import BucketStore, LocalStore, Store
from ckptd.store.base import (
    Delete,
    DeleteCheckpoint,
    Move,
    Op,
    PutBlob,
    PutCheckpoint,
    PutNew,
)
from tests.helpers import wait_for
from tests.procs import Processes, job_files

HOSTILE: dict[str, Any] = {
    "dot": ".",
    "dotdot": "..",
    "parent": "../x",
    "parent-canary": "../canary/x",
    "deep-parent": "../../../../../../tmp/x",
    "absolute": "/abs",
    "slash": "a/b",
    "trailing-slash": "a/",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "nul-only": "\x00",
    "too-long": "a" * 300,
    "just-too-long": "a" * 129,
    "leading-dot": ".hidden",
    "colon": "c:x",
    "drive": "C:",
    "empty": "",
    "space": "a b",
    "newline": "a\nb",
    "tab": "a\tb",
    "tilde": "~root",
    "percent": "%2e%2e",
    "glob": "*",
    "url": "s3://bucket/x",
    "fullwidth": "\uff50\uff52\uff49\uff43\uff45",  # looks like "price"
    "cyrillic": "pri\u0441e",  # a Cyrillic 'с'
    "fullwidth-dots": "\uff0e\uff0e",
    "one-dot-leaders": "\u2024\u2024",
    "division-slash": "a\u2215b",
    "fraction-slash": "a\u2044b",
    "right-to-left": "a\u202eb",
    "zero-width": "a\u200bb",
    "combining": "e\u0301",
    "surrogate": "a\ud800",
    "none": None,
    "number": 7,
    "bytes": b"..",
}

GOOD_QUEUE, GOOD_ID = "q", "ok"
JOB = json.dumps({"id": GOOD_ID, "queue": GOOD_QUEUE, "payload": 1,
                  "created": "2026-01-01T00:00:00Z", "attempts": 0}).encode()


def calls_with_queue(q: Any) -> list[Callable[[Store], object]]:
    """Every store call, with ``q`` as the queue."""
    return [
        lambda s: s.ensure_queue(q),
        lambda s: s.ids(q, State.PENDING),
        lambda s: s.count(q, State.DONE),
        lambda s: s.read(q, State.PENDING, GOOD_ID),
        lambda s: s.exists(q, State.PENDING, GOOD_ID),
        lambda s: s.mtime(q, State.PENDING, GOOD_ID),
        lambda s: s.read_checkpoint(q, GOOD_ID),
        lambda s: s.read_blob(q, GOOD_ID, "payload"),
        lambda s: s.leftovers(q, 0.0),
        lambda s: s.remove_leftover(q, "x"),
        lambda s: s.foreign(q),
        lambda s: s.quarantine(q, "pending", "x.json", "why"),
        lambda s: s.quarantined(q),
        lambda s: s.blob_ids(q),
        lambda s: s.checkpoint_ids(q),
        lambda s: s.put_new(q, GOOD_ID, JOB),
    ]


def calls_with_id(i: Any) -> list[Callable[[Store], object]]:
    """Every store call, with ``i`` as the job id (in a queue that exists)."""
    return [
        lambda s: s.read(GOOD_QUEUE, State.PENDING, i),
        lambda s: s.exists(GOOD_QUEUE, State.PENDING, i),
        lambda s: s.mtime(GOOD_QUEUE, State.PENDING, i),
        lambda s: s.read_checkpoint(GOOD_QUEUE, i),
        lambda s: s.read_blob(GOOD_QUEUE, i, "payload"),
        lambda s: s.put_new(GOOD_QUEUE, i, JOB),
        lambda s: s.move(GOOD_QUEUE, i, State.PENDING, State.CLAIMED),
        lambda s: s.delete(GOOD_QUEUE, State.PENDING, i),
        lambda s: s.put_checkpoint(GOOD_QUEUE, i, b"{}"),
        lambda s: s.delete_checkpoint(GOOD_QUEUE, i),
        lambda s: s.put_blob(GOOD_QUEUE, i, "payload", b"x"),
    ]


def ops_with(queue: Any, job_id: Any) -> list[Op]:
    """Every kind of store operation, for Store.apply."""
    return [PutNew(queue, job_id, JOB), Move(queue, job_id, State.PENDING, State.DONE, JOB),
            Move(queue, job_id, State.PENDING, State.CLAIMED), Delete(queue, State.DONE, job_id),
            PutCheckpoint(queue, job_id, b"{}"), DeleteCheckpoint(queue, job_id),
            PutBlob(queue, job_id, "result", b"x")]


class Sandbox:
    """A store root with a canary folder beside it, and a way to see all that changed."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        if kind == "local":
            self.base = str(tmp_path)
            self.root = str(tmp_path / "root")
            os.makedirs(self.root)
            os.makedirs(tmp_path / "canary")
            self.store: Store = LocalStore(self.root)
            self.fs: Any = None
        else:
            self.base = f"/ckptd-sec-{uuid.uuid4().hex}"
            self.root = f"{self.base}/root"
            self.fs = fsspec.filesystem("memory")
            self.fs.pipe_file(f"{self.base}/canary/.keep", b"")
            self.store = BucketStore(f"memory://{self.root}")
        self.store.put_new(GOOD_QUEUE, GOOD_ID, JOB)

    def outside(self) -> set[str]:
        """Every path outside the root (the canary included), across the whole file system
        for memory://, under the test's folder for the local disk."""
        if self.fs is None:
            found = set()
            for folder, dirs, names in os.walk(self.base):
                if folder == self.root:
                    dirs.clear()
                    continue
                found.update(os.path.join(folder, n) for n in dirs + names)
            return found
        return {p for p in self.fs.store if not p.startswith(self.root + "/")} | \
            {p for p in self.fs.pseudo_dirs if not p.startswith(self.root)}

    def canary(self) -> list[str]:
        if self.fs is None:
            return os.listdir(os.path.join(self.base, "canary"))
        return [p for p in self.fs.find(f"{self.base}/canary") if not p.endswith("/.keep")]

    def close(self) -> None:
        self.store.close()
        if self.fs is not None and self.fs.exists(self.base):
            self.fs.rm(self.base, recursive=True)


@pytest.fixture(params=["local", "memory"])
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(str(request.param), tmp_path)
    try:
        yield box
    finally:
        box.close()


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_a_hostile_name_is_refused_by_every_store_call(sandbox: Sandbox, label: str) -> None:
    name = HOSTILE[label]
    outside = sandbox.outside()
    calls = calls_with_queue(name) + calls_with_id(name)
    for n, call in enumerate(calls):
        with pytest.raises(InvalidName):
            call(sandbox.store)
            pytest.fail(f"call {n} accepted {name!r}")
    for ops in (ops_with(name, GOOD_ID), ops_with(GOOD_QUEUE, name), ops_with(name, name)):
        outcomes = sandbox.store.apply(ops)
        assert all(isinstance(o, InvalidName) for o in outcomes), outcomes
    assert sandbox.canary() == []
    assert sandbox.outside() == outside, "something was created outside the root"
    assert sandbox.store.queues() == [GOOD_QUEUE]
    assert sandbox.store.ids(GOOD_QUEUE, State.PENDING) == [GOOD_ID]


# -- symlinks (local disk) ------------------------------------------------------------------

@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[LocalStore, Path, Path]]:
    """A store and, outside its root, a folder that looks like a queue with a secret job."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (outside / "pending").mkdir(parents=True)
    secret = json.dumps({"id": "secret", "queue": "linked", "payload": "SECRET",
                         "created": "2026-01-01T00:00:00Z", "attempts": 0}).encode()
    (outside / "pending" / "secret.json").write_bytes(secret)
    (outside / "file.json").write_bytes(secret)
    store = LocalStore(str(root))
    store.put_new(GOOD_QUEUE, GOOD_ID, JOB)
    try:
        yield store, root, outside
    finally:
        store.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_symlinked_queue_folder_is_never_followed(
        planted: tuple[LocalStore, Path, Path]) -> None:
    store, root, outside = planted
    before = snapshot(outside)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    assert store.queues() == [GOOD_QUEUE]
    for call in calls_with_queue("linked"):
        with pytest.raises(StoreError):
            call(store)
    assert all(isinstance(o, StoreError) for o in store.apply(ops_with("linked", "secret")))
    assert snapshot(outside) == before


@pytest.mark.parametrize("folder", ["pending", "claimed", "done", "state", "blobs", "tmp"])
def test_a_symlinked_state_folder_is_never_followed(planted: tuple[LocalStore, Path, Path],
                                                    folder: str) -> None:
    _, root, outside = planted
    before = snapshot(outside)
    queue = root / "other"
    queue.mkdir()
    for name in ("pending", "claimed", "done", "failed", "state", "blobs", "tmp"):
        if name == folder:
            (queue / name).symlink_to(outside / "pending", target_is_directory=True)
        else:
            (queue / name).mkdir(parents=True, exist_ok=True)
    store = LocalStore(str(root))  # a fresh process's view: nothing checked yet
    try:
        assert store.queues() == [GOOD_QUEUE], "the queue with a link is skipped"
        for call in calls_with_queue("other"):
            with pytest.raises(StoreError):
                call(store)
        assert all(isinstance(o, StoreError) for o in store.apply(ops_with("other", "secret")))
    finally:
        store.close()
    assert snapshot(outside) == before


def test_a_symlinked_job_file_is_not_read_and_is_quarantined_as_a_link(
        planted: tuple[LocalStore, Path, Path]) -> None:
    store, root, outside = planted
    before = snapshot(outside)
    link = root / GOOD_QUEUE / "pending" / "planted.json"
    link.symlink_to(outside / "file.json")
    with pytest.raises(MalformedJob, match="symlink"):  # not a job file: quarantined below
        store.read(GOOD_QUEUE, State.PENDING, "planted")
    assert [f.name for f in store.foreign(GOOD_QUEUE)] == ["planted.json"]
    moved = store.quarantine(GOOD_QUEUE, "pending", "planted.json", "a symlink")
    assert os.path.islink(moved) and not link.exists()
    assert snapshot(outside) == before, "the link's target was not touched"


def test_a_symlinked_quarantine_folder_is_refused(planted: tuple[LocalStore, Path, Path]) -> None:
    store, root, outside = planted
    before = snapshot(outside)
    (root / GOOD_QUEUE / "quarantine").symlink_to(outside, target_is_directory=True)
    (root / GOOD_QUEUE / "pending" / "junk.json").write_bytes(b"not json")
    with pytest.raises(StoreError, match="symlink"):
        store.quarantine(GOOD_QUEUE, "pending", "junk.json", "malformed")
    assert (root / GOOD_QUEUE / "pending" / "junk.json").exists()
    assert snapshot(outside) == before


# -- through the daemon ---------------------------------------------------------------------

def requests_with(name: Any) -> list[tuple[str, dict[str, Any]]]:
    """Control requests carrying ``name`` as a queue or an id."""
    return [
        ("submit", {"queue": name, "payload": 1}),
        ("submit", {"queue": GOOD_QUEUE, "id": name, "payload": 1}),
        ("submit_many", {"queue": name, "jobs": [{"payload": 1}]}),
        ("submit_many", {"queue": GOOD_QUEUE, "jobs": [{"id": name, "payload": 1}]}),
        ("show", {"queue": name, "id": GOOD_ID}),
        ("show", {"queue": GOOD_QUEUE, "id": name}),
        ("ls", {"queue": name}),
        ("cancel", {"queue": GOOD_QUEUE, "id": name}),
        ("retry", {"queue": GOOD_QUEUE, "ids": [name]}),
        ("purge", {"queue": name, "state": "done"}),
        ("fetch", {"queue": GOOD_QUEUE, "id": name, "what": "payload"}),
        ("wait", {"queue": name, "timeout": 0}),
        ("status", {"queue": name}),
    ]


def test_hostile_names_over_the_control_socket_get_an_error_and_create_nothing(
        procs: Processes, tmp_path: Path) -> None:
    (tmp_path / "canary").mkdir()
    daemon = procs.daemon()
    # JSON cannot carry bytes or a lone surrogate; null is "no id", not a name.
    names = {k: v for k, v in HOSTILE.items() if k not in ("surrogate", "bytes", "none")}
    with Client(daemon.control, timeout=10) as client:
        job_id = client.submit(GOOD_QUEUE, {"n": 1})
        store_before = sorted(p for p in Path(daemon.root).rglob("*") if "tmp" not in p.parts)
        outside_before = sorted(p for p in tmp_path.rglob("*") if daemon.root not in str(p))
        refused = 0
        for name in names.values():
            for kind, body in requests_with(name):
                with pytest.raises(RemoteError) as caught:
                    client.request(kind, body)
                    pytest.fail(f"{kind} {body!r} was accepted")
                assert caught.value.kind == "protocol", (kind, body, caught.value)
                refused += 1
        status = client.status()
    assert refused == len(names) * len(requests_with(None))
    assert sum(v for k, v in status["drops"].items() if k.startswith("control:")) >= refused
    assert os.listdir(tmp_path / "canary") == []
    assert sorted(p for p in Path(daemon.root).rglob("*") if "tmp" not in p.parts) == \
        store_before
    outside_after = sorted(p for p in tmp_path.rglob("*") if daemon.root not in str(p)
                           and not p.name.startswith("daemon1.log"))
    assert outside_after == [p for p in outside_before if not p.name.startswith("daemon1.log")]
    assert set(job_files(daemon.root, GOOD_QUEUE, "pending")) == {job_id}
    assert daemon.alive()


def test_the_daemon_does_not_follow_planted_symlinks(procs: Processes, tmp_path: Path) -> None:
    root, outside = tmp_path / "store", tmp_path / "outside"
    (outside / "pending").mkdir(parents=True)
    secret = json.dumps({"id": "secret", "queue": "linked", "payload": "SECRET",
                         "created": "2026-01-01T00:00:00Z", "attempts": 0}).encode()
    (outside / "pending" / "secret.json").write_bytes(secret)
    (outside / "file.json").write_bytes(secret.replace(b'"secret"', b'"planted"'))
    for name in ("pending", "claimed", "done", "failed", "state", "blobs", "tmp"):
        (root / "real" / name).mkdir(parents=True)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "real" / "pending" / "planted.json").symlink_to(outside / "file.json")
    before = snapshot(outside)

    daemon = procs.daemon(root=str(root))
    procs.worker(daemon, ["real", "linked"], "echo")
    with daemon.client() as client:
        job_id = client.submit("real", {"n": 1})
        assert client.wait("real", job_id, timeout=60) == "done"
        for kind, body in [("show", {"queue": "linked", "id": "secret"}),
                           ("fetch", {"queue": "linked", "id": "secret", "what": "payload"}),
                           ("ls", {"queue": "linked"}),
                           ("submit", {"queue": "linked", "payload": 1}),
                           ("fetch", {"queue": "real", "id": "planted", "what": "payload"})]:
            with pytest.raises(RemoteError) as caught:
                client.request(kind, body)
            # Refused as a link, or not found: the daemon may have set the link aside first
            # (a linked queue is no queue to ls).
            assert any(word in str(caught.value) for word in ("symlink", "no queue", "no job")), \
                caught.value
        wait_for(lambda: not (root / "real" / "pending" / "planted.json").is_symlink()
                 or "symlink" in daemon.log(), timeout=30,
                 message="the planted link to be noticed")
    assert snapshot(outside) == before, "nothing outside the root was read into a job or moved"
    assert os.path.islink(outside.parent / "store" / "linked")
    for path in (root / "real").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"SECRET" not in path.read_bytes(), f"{path} holds what the link pointed at"
    assert daemon.alive()
