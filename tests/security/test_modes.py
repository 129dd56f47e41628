"""Files ckptd creates are 0640 and its folders 0750, from the daemon and from the CLI.

The processes run with umask 000, so a mode that comes out right was set by ckptd itself and
not left to the umask (a file created with the default 0666 would show it). A stricter umask
(systemd's UMask=0027, for example) may only take permissions away.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.procs import REPO, Processes, base_env

FILE_MODE, DIR_MODE = 0o640, 0o750


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Set the umask that child processes started inside the block inherit."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Mode of everything under ``root`` (and ``root`` itself), by relative path."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def check_modes(root: Path, file_mode: int = FILE_MODE, dir_mode: int = DIR_MODE) -> None:
    wrong = {}
    for rel, mode in modes(root).items():
        path = root / rel
        expected = dir_mode if path.is_dir() else file_mode
        if mode != expected:
            wrong[rel] = f"{mode:04o} (expected {expected:04o})"
    assert not wrong, wrong


def test_the_daemon_creates_files_0640_and_folders_0750(procs: Processes,
                                                         tmp_path: Path) -> None:
    with umask(0):
        daemon = procs.daemon(blob_threshold="1KiB")
        worker = procs.worker(daemon, "m", "steps")
    root = Path(daemon.root)
    with daemon.client() as client:
        running = client.submit("m", {"steps": 20, "sleep": 0.05})
        checkpoint = root / "m" / "state" / f"{running}.json"
        wait_for(checkpoint.exists, timeout=30, message="a checkpoint file")
        assert stat.S_IMODE(checkpoint.stat().st_mode) == FILE_MODE
        big = client.submit("m", {"steps": 1, "pad": "x" * 4096})  # stored as a blob
        failed = client.submit("m", {"steps": "many"}, max_attempts=1)  # ends in failed/
        for job_id in (running, big, failed):
            client.wait("m", job_id, timeout=60)
        client.submit("m", {"steps": 1}, delay=3600)  # stays in pending/
    junk = root / "m" / "pending" / "junk.json"  # moved to quarantine/, a reason beside it
    junk.write_bytes(b"not json")
    os.chmod(junk, FILE_MODE)  # written by this test, not by the daemon
    os.utime(junk, (1, 1))  # old: no grace period for a file still being written
    wait_for(lambda: (root / "m" / "quarantine" / "junk.json").exists(), timeout=60,
             message="the malformed file to be quarantined")
    worker.terminate()
    assert daemon.terminate() == 0
    kinds = {rel.split("/")[1] for rel in modes(root) if rel.count("/") == 2}
    assert {"pending", "done", "failed", "blobs", "quarantine"} <= kinds, kinds
    check_modes(root)


@pytest.mark.slow
def test_the_cli_creates_files_0640_and_folders_0750(tmp_path: Path) -> None:
    root = tmp_path / "store"

    def ckptd(*args: str, **env: str) -> None:
        result = subprocess.run([sys.executable, "-m", "ckptd", "--root", str(root), *args],
                                capture_output=True, text=True, timeout=60, cwd=REPO,
                                env=base_env(**env), preexec_fn=lambda: os.umask(0))
        assert result.returncode == 0, result.stderr

    ckptd("submit", "c", '{"a": 1}')
    ckptd("submit", "c", '{"pad": "' + "x" * 4096 + '"}', CKPTD_INLINE_LIMIT="1KiB")
    ckptd("submit", "c", "{}", "--delay", "1h")
    check_modes(root)


@pytest.mark.slow
def test_the_modes_are_settings(tmp_path: Path) -> None:
    root = tmp_path / "store"
    result = subprocess.run([sys.executable, "-m", "ckptd", "--root", str(root), "submit", "c",
                             "{}"], capture_output=True, text=True, timeout=60, cwd=REPO,
                            env=base_env(CKPTD_FILE_MODE="0600", CKPTD_DIR_MODE="0700"),
                            preexec_fn=lambda: os.umask(0))
    assert result.returncode == 0, result.stderr
    check_modes(root, 0o600, 0o700)
