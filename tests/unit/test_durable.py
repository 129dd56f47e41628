"""Durable-write helpers on a real disk: create-only writes, and renames that never replace."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.core import crashpoints
from ckptd.core.errors import NoSpace, StoreError
from ckptd.store.local import durable
from ckptd.store.local.durable import (
    fsync_dir,
    io_error,
    open_dir,
    rename_noreplace,
    sync_filesystem,
    unlink_quietly,
    write_new,
)

ROUNDS = 300


@pytest.fixture(params=["renameat2", "link"])
def rename_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with renameat2(RENAME_NOREPLACE), then with the link+unlink fallback."""
    if request.param == "renameat2":
        if not durable._noreplace_works:
            pytest.skip("renameat2(RENAME_NOREPLACE) is not available here")
    else:
        monkeypatch.setattr(durable, "_noreplace_works", False)
    return str(request.param)


def test_write_new_creates_a_complete_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        for sync in (False, True):
            path = tmp_path / f"job-{sync}.json"
            write_new(str(path), b"x" * 300_000, 0o640, sync)
            assert path.read_bytes() == b"x" * 300_000
            assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_write_new_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_new(str(path), b"second", 0o640, True)
    assert path.read_bytes() == b"first"


def test_write_new_removes_its_partial_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    with pytest.raises(TypeError):
        write_new(str(path), "not bytes", 0o640, False)  # type: ignore[arg-type]
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_new_into_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_new(str(tmp_path / "nope" / "job.json"), b"x", 0o640, False)


def test_fsync_dir_and_sync_filesystem(tmp_path: Path) -> None:
    fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        fsync_dir(str(tmp_path / "missing"))
    fd = open_dir(str(tmp_path))
    try:
        sync_filesystem(fd)
    finally:
        os.close(fd)


def test_unlink_quietly(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"")
    unlink_quietly(str(path))
    unlink_quietly(str(path))
    assert not path.exists()


@pytest.mark.parametrize(("code", "kind", "words"), [
    (errno.ENOSPC, NoSpace, "no space left to write"),
    (errno.EDQUOT, NoSpace, "no space left to write"),
    (errno.EACCES, StoreError, "permission denied to write"),
    (errno.EPERM, StoreError, "permission denied to write"),
    (errno.EIO, StoreError, "cannot write"),
])
def test_io_error_names_the_problem(code: int, kind: type, words: str) -> None:
    error = io_error(OSError(code, os.strerror(code)), "write", "/data/q/tmp/x")
    assert type(error) is kind
    assert words in str(error) and "/data/q/tmp/x" in str(error)


def test_rename_noreplace(tmp_path: Path, rename_way: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"new")
    rename_noreplace(str(src), str(dst))
    assert dst.read_bytes() == b"new" and not src.exists()
    src.write_bytes(b"newer")
    with pytest.raises(FileExistsError):
        rename_noreplace(str(src), str(dst))
    assert dst.read_bytes() == b"new" and src.read_bytes() == b"newer"
    with pytest.raises(FileNotFoundError):
        rename_noreplace(str(tmp_path / "missing"), str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def _race(folder: str, me: int, fallback: bool, barrier: object, rounds: int) -> None:
    """Child process: each round, race the other process to rename onto the same name."""
    if fallback:
        durable._noreplace_works = False
    wins = []
    for n in range(rounds):
        src = f"{folder}/src.{n}.{me}"
        with open(src, "wb") as handle:
            handle.write(f"{me}".encode())
        barrier.wait()  # type: ignore[attr-defined]
        try:
            rename_noreplace(src, f"{folder}/target.{n}")
            wins.append(n)
        except FileExistsError:
            pass
    with open(f"{folder}/wins.{me}", "w") as handle:
        handle.write(" ".join(map(str, wins)))


@pytest.mark.slow
def test_two_processes_renaming_to_the_same_name_exactly_one_wins(tmp_path: Path,
                                                                  rename_way: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    racers = [context.Process(target=_race,
                              args=(str(tmp_path), me, rename_way == "link", barrier, ROUNDS))
              for me in (0, 1)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
    assert [r.exitcode for r in racers] == [0, 0]
    wins = [set(map(int, (tmp_path / f"wins.{me}").read_text().split())) for me in (0, 1)]
    assert not wins[0] & wins[1], "both processes won the same round"
    assert wins[0] | wins[1] == set(range(ROUNDS)), "a round had no winner"
    for n in range(ROUNDS):
        winner = 0 if n in wins[0] else 1
        loser = 1 - winner
        assert (tmp_path / f"target.{n}").read_text() == str(winner)
        assert not (tmp_path / f"src.{n}.{winner}").exists()
        assert (tmp_path / f"src.{n}.{loser}").read_text() == str(loser), "loser's file kept"


# -- crash points --------------------------------------------------------------------------

CRASHER = """
from ckptd.core import crashpoints
for n in range(1, 4):
    print(n, flush=True)
    crashpoints.reached("after_rename")
print("end", flush=True)
"""


@pytest.mark.parametrize(("spec", "printed", "killed"), [
    ("after_rename", "1\n", True),
    ("after_rename:1", "1\n", True),
    ("after_rename:3", "1\n2\n3\n", True),
    ("after_rename:4", "1\n2\n3\nend\n", False),
    ("after_write", "1\n2\n3\nend\n", False),
    ("", "1\n2\n3\nend\n", False),
])
@pytest.mark.slow
def test_crash_point_kills_at_the_nth_time(spec: str, printed: str, killed: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CKPTD_CRASH_AT"}
    env["CKPTD_CRASH_AT"] = spec
    done = subprocess.run([sys.executable, "-c", CRASHER], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout == printed
    assert done.returncode == (-9 if killed else 0)


def test_arming_in_process() -> None:
    assert not crashpoints.armed(), "the test run itself must not have a crash armed"
    try:
        crashpoints.arm("never_reached_label:2")
        assert crashpoints.armed()
        crashpoints.reached("after_rename")  # another label: nothing happens
    finally:
        crashpoints.arm(None)
    assert not crashpoints.armed()
