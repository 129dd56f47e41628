"""Crash tests at the file level: SIGKILL at every step of a durable write, then recover.

A child process (a fork running ``tests/faults/crash_child.py``) runs store transitions with
the crash point ``<label>:<N>`` armed (``CKPTD_CRASH_AT`` when it runs as a program), so it
kills itself with SIGKILL the N-th time it reaches that step (see
:mod:`ckptd.core.crashpoints`). The parent then runs recovery
(``StoreAdmin.fsck(repair=True)``) and checks that every job is in exactly one state, none
is lost, and a job that was being moved is either still where it was (with its old file) or
where it was going (with its new file).

The negative control runs the same check on a store that is unsafe on purpose (a rewriting
move deletes the old copy before the new one is in place) and shows the check catches the
loss, so a pass above means something.

The bucket backend has no rename and runs in-process (``memory://``), so its crash between
copy and delete ("after_copy") is made in-process: by writing both copies as the crash would
leave them, and by stopping the real store code at that point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptd.core import crashpoints, jobs
from ckptd.core.config import FsyncMode, Settings
from ckptd.core.states import State
from ckptd.store.admin import StoreAdmin
from ckptd.store.base import Move, Op, Store
from ckptd.store.local.backend import LocalStore
from tests.faults import crash_child
from tests.faults.crash_child import (
    BYSTANDERS,
    PLAN,
    Q,
    initial_jobs,
    new_job_bytes,
    plan_ops,
    rewritten,
)
from tests.store.conftest import Backend, drop_backend, make_backend

REPO = Path(__file__).resolve().parents[2]
P, C, D, F = State.PENDING, State.CLAIMED, State.DONE, State.FAILED
LABELS = ["after_write", "after_file_fsync", "after_rename", "after_unlink", "after_dir_fsync"]
MODES = ["always", "batch", "never"]

# How many times the child reaches each crash point (one op per apply, or one group):
# 4 ops write a file, all 5 rename, 3 rewriting moves unlink the old copy. "batch" syncs
# once per apply and "never" not at all, which this table holds the store to.
HITS = {
    ("always", "each"): {"after_write": 4, "after_file_fsync": 4, "after_rename": 5,
                         "after_unlink": 3, "after_dir_fsync": 5},
    ("batch", "each"): {"after_write": 4, "after_file_fsync": 4, "after_rename": 5,
                        "after_unlink": 3, "after_dir_fsync": 5},
    ("never", "each"): {"after_write": 4, "after_file_fsync": 0, "after_rename": 5,
                        "after_unlink": 3, "after_dir_fsync": 0},
    ("always", "group"): {"after_write": 4, "after_file_fsync": 4, "after_rename": 5,
                          "after_unlink": 3, "after_dir_fsync": 5},
    ("batch", "group"): {"after_write": 4, "after_file_fsync": 1, "after_rename": 5,
                         "after_unlink": 3, "after_dir_fsync": 1},
    ("never", "group"): {"after_write": 4, "after_file_fsync": 0, "after_rename": 5,
                         "after_unlink": 3, "after_dir_fsync": 0},
}
REWRITING = {job_id for job_id, src, _, rewrite in PLAN if src is not None and rewrite}


class BrokenLocalStore(LocalStore):
    """Unsafe on purpose: a rewriting move removes the old copy BEFORE the new one is placed."""

    def _commit(self, op: Op, tmp: str | None) -> tuple[str, ...]:
        if not (isinstance(op, Move) and tmp is not None):
            return super()._commit(op, tmp)
        src = self._job_path(op.queue, op.src, op.job_id)
        if not os.path.lexists(src):
            raise self._not_in(op.queue, op.src, op.job_id)
        os.unlink(src)
        crashpoints.reached("after_unlink")
        os.rename(tmp, self._job_path(op.queue, op.dst, op.job_id))
        crashpoints.reached("after_rename")
        q = f"{self.root}/{op.queue}"
        return (f"{q}/{op.src.value}", f"{q}/{op.dst.value}")


# -- set-up, the child, and the check ------------------------------------------------------


def prepare(root: str) -> None:
    """Put the jobs of the plan and the bystanders in place, with attachments."""
    store = LocalStore(root, FsyncMode.NEVER)
    for job_id, (state, data) in initial_jobs().items():
        store.put_new(Q, job_id, data)
        if state is not P:
            store.move(Q, job_id, P, state)
    store.put_checkpoint(Q, "release-me", b'{"rows": 7}')
    store.put_blob(Q, "release-me", "payload", b"[1, 2, 3]")
    store.close()


def run_child(root: str, mode: str, grouping: str, crash_at: str, kind: str = "local"
              ) -> tuple[int, dict[str, str]]:
    """Run the child; return its exit code and each plan op's status: before/during/done.

    The child is a fork of this process running :func:`tests.faults.crash_child.main` (what
    ``python -m tests.faults.crash_child`` runs) with the crash point armed: the same code and
    the same SIGKILL, without starting and importing a new interpreter for each of the
    hundred-odd cases."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 4
        try:
            os.close(read_fd)
            sys.stdout = os.fdopen(write_fd, "w")
            crashpoints.arm(crash_at)
            code = crash_child.main([root, mode, grouping, kind])
            sys.stdout.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        out = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    returncode = os.waitstatus_to_exitcode(wait_status)
    lines = out.split()
    assert "error" not in lines, out
    assert returncode in (0, -9), (returncode, out)
    started = {lines[i + 1] for i, word in enumerate(lines) if word == "start"}
    finished = {lines[i + 1] for i, word in enumerate(lines) if word == "done"}
    status = {}
    for number, (job_id, _, _, _) in enumerate(PLAN, 1):
        label = "group" if grouping == "group" else str(number)
        status[job_id] = ("done" if label in finished else
                          "during" if label in started else "before")
    return returncode, status


def test_the_child_runs_as_a_program_too(tmp_path: Path) -> None:
    """``python -m tests.faults.crash_child`` (how to run one case by hand) kills itself at
    its armed crash point as the forked child does."""
    root = str(tmp_path / "store")
    prepare(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}
    env["CKPTD_CRASH_AT"] = "after_rename:2"
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.crash_child", root, "batch", "each", "local"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, (done.returncode, done.stdout, done.stderr)
    assert done.stdout.split() == ["start", "1", "done", "1", "start", "2"]


Version = tuple[State, bytes] | None  # where a job is, and its file; None = nowhere


def versions(job_id: str) -> tuple[Version, Version]:
    """The job before and after its move in the plan."""
    start = initial_jobs()
    for plan_id, src, dst, rewrite in PLAN:
        if plan_id != job_id:
            continue
        if src is None:
            return None, (dst, new_job_bytes())
        data = start[job_id][1]
        return (src, data), (dst, rewritten(job_id, data) if rewrite else data)
    raise KeyError(job_id)


def check_recovered(store: Store, status: dict[str, str]) -> list[str]:
    """Return what is wrong after recovery: lost, doubled or wrong jobs; [] when all is well."""
    problems = []
    start = initial_jobs()
    expected: dict[str, list[Version]] = {}
    for job_id, _, _, _ in PLAN:
        old, new = versions(job_id)
        expected[job_id] = {"before": [old], "during": [old, new], "done": [new]}[status[job_id]]
    for job_id in BYSTANDERS:
        expected[job_id] = [start[job_id]]
    for job_id, allowed in expected.items():
        states = store.find(Q, job_id)
        if len(states) > 1:
            problems.append(f"{job_id}: in {[s.value for s in states]} after recovery")
        elif not states:
            if None not in allowed:
                problems.append(f"{job_id}: lost (it was {status.get(job_id, 'untouched')})")
        elif (states[0], store.read(Q, states[0], job_id)) not in allowed:
            problems.append(f"{job_id}: found in {states[0].value} with a file that is "
                            f"neither its old nor its new one")
    if store.leftovers(Q, 0.0):
        problems.append(f"leftovers in tmp/: {store.leftovers(Q, 0.0)}")
    if store.read_checkpoint(Q, "release-me") != b'{"rows": 7}':
        problems.append("release-me lost its checkpoint")
    if store.blob_ids(Q) != [("release-me", "payload")]:
        problems.append(f"blobs are {store.blob_ids(Q)}")
    return problems


def crash_and_recover(tmp_path: Path, mode: str, grouping: str, label: str, n: int,
                      kind: str = "local") -> tuple[int, dict[str, str], list[str]]:
    root = str(tmp_path / "store")
    prepare(root)
    code, status = run_child(root, mode, grouping, f"{label}:{n}", kind)
    store = LocalStore(root, FsyncMode(mode))
    before = {job_id: store.find(Q, job_id) for job_id, _, _, _ in PLAN}
    if (kind == "local" and grouping == "each" and label == "after_rename" and code == -9):
        in_flight = [j for j, s in status.items() if s == "during"]
        assert len(in_flight) == 1
        if in_flight[0] in REWRITING:  # killed between the new copy's rename and the unlink
            assert len(before[in_flight[0]]) == 2, before
    admin = StoreAdmin(store, Settings(tmp_max_age=0.0))
    admin.fsck(repair=True)
    problems = check_recovered(store, status)
    if not problems:
        assert admin.fsck(repair=False) == [], "recovery left something to fix"
    store.close()
    return code, status, problems


# -- the tests -----------------------------------------------------------------------------


def _cases(fast: bool) -> list[object]:
    cases = []
    for (mode, grouping), hits in HITS.items():
        for label in LABELS:
            total = hits[label]
            every = range(1, total + 2)  # each crash point, and one count too many
            quick = {1, total} if total else {1}
            if grouping == "group" and mode != "batch":
                quick = set()  # one group or one op per apply only differ in batch mode
            for n in every:
                if (n in quick) == fast:
                    marks = () if fast else (pytest.mark.slow,)
                    cases.append(pytest.param(mode, grouping, label, n, total,
                                              id=f"{mode}-{grouping}-{label}:{n}", marks=marks))
    return cases


@pytest.mark.parametrize(("mode", "grouping", "label", "n", "hits"),
                         _cases(fast=True) + _cases(fast=False))
def test_kill_at_every_step_loses_nothing(tmp_path: Path, mode: str, grouping: str,
                                          label: str, n: int, hits: int) -> None:
    code, status, problems = crash_and_recover(tmp_path, mode, grouping, label, n)
    assert code == (-9 if n <= hits else 0), f"crash point {label}:{n} reached {hits} times?"
    if code == 0:
        assert set(status.values()) == {"done"}
    else:
        assert "during" in status.values()
    assert problems == []


@pytest.mark.parametrize("mode", MODES)
def test_negative_control_an_unsafe_store_loses_a_job_and_the_check_says_so(
        tmp_path: Path, mode: str) -> None:
    code, status, problems = crash_and_recover(tmp_path, mode, "each", "after_unlink", 1,
                                               kind="broken")
    assert code == -9 and status["finish-me"] == "during"
    assert any(p.startswith("finish-me: lost") for p in problems), problems
    # The same kill on the real store loses nothing.
    code, status, problems = crash_and_recover(tmp_path / "good", mode, "each",
                                               "after_unlink", 1)
    assert code == -9 and status["finish-me"] == "during" and problems == []


# -- the bucket backend: copy, then delete -------------------------------------------------


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[Backend]:
    backend = make_backend("memory", tmp_path)
    yield backend
    drop_backend(backend)


def _prepare_bucket(backend: Backend) -> None:
    store = backend.store
    for job_id, (state, data) in initial_jobs().items():
        store.put_new(Q, job_id, data)
        if state is not P:
            store.move(Q, job_id, P, state)
    store.put_checkpoint(Q, "release-me", b'{"rows": 7}')
    store.put_blob(Q, "release-me", "payload", b"[1, 2, 3]")


@pytest.mark.parametrize("job_id", [j for j, src, _, _ in PLAN if src is not None])
def test_bucket_copy_without_delete_is_resolved(bucket: Backend, job_id: str) -> None:
    """The state a crash between copy and delete leaves: both copies. Recovery keeps one."""
    _prepare_bucket(bucket)
    old, new = versions(job_id)
    assert old is not None and new is not None
    bucket.put(f"{Q}/{new[0].value}/{job_id}.json", new[1])  # the copy; the delete never ran
    assert sorted(bucket.store.find(Q, job_id)) == sorted([old[0], new[0]])
    StoreAdmin(bucket.store, Settings(tmp_max_age=0.0)).fsck(repair=True)
    status = {j: ("done" if j == job_id else "before") for j, _, _, _ in PLAN}
    status["new-job"] = "before"
    assert check_recovered(bucket.store, status) == []
    assert bucket.store.find(Q, job_id) == [new[0]], "the move completes: the new copy wins"


class _Crash(BaseException):
    """Stands for the process dying at a crash point (in-process, for the memory store)."""


@pytest.mark.parametrize("job_id", [j for j, src, _, _ in PLAN if src is not None])
def test_bucket_store_stopped_after_copy_is_resolved(bucket: Backend, job_id: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The real store code, stopped at "after_copy", then recovery."""
    _prepare_bucket(bucket)

    def reached(label: str) -> None:
        if label == "after_copy":
            raise _Crash(label)

    monkeypatch.setattr(crashpoints, "reached", reached)
    op = next(o for o in plan_ops() if o.job_id == job_id)
    with pytest.raises(_Crash):
        bucket.store.apply([op])
    monkeypatch.undo()
    old, new = versions(job_id)
    assert old is not None and new is not None
    assert sorted(bucket.store.find(Q, job_id)) == sorted([old[0], new[0]])
    StoreAdmin(bucket.store, Settings(tmp_max_age=0.0)).fsck(repair=True)
    status = {j: ("during" if j == job_id else "before") for j, _, _, _ in PLAN}
    assert check_recovered(bucket.store, status) == []
    assert bucket.store.find(Q, job_id) == [new[0]]
    assert bucket.store.read(Q, new[0], job_id) == new[1]


def test_the_check_catches_a_doubled_and_a_wrong_job(tmp_path: Path) -> None:
    """The checker itself can fail: a job left in two states, or with a stranger's file."""
    root = str(tmp_path / "store")
    prepare(root)
    store = LocalStore(root, FsyncMode.NEVER)
    status = {j: "before" for j, _, _, _ in PLAN}
    assert check_recovered(store, status) == []
    store.put_new(Q, "keep-x", b"{}")  # not part of the plan: ignored
    Path(root, Q, "done", "claim-me.json").write_bytes(initial_jobs()["claim-me"][1])
    Path(root, Q, "failed", "keep-f.json").write_bytes(jobs.encode({"id": "keep-f"}))
    problems = check_recovered(store, status)
    assert any(p.startswith("claim-me: in") for p in problems)
    assert any(p.startswith("keep-f: found in failed with a file") for p in problems)
