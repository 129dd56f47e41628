"""The store commands of the ``ckptd`` CLI, run as a real process against a temporary root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.core import jobs
from ckptd.core.config import FsyncMode
from ckptd.core.names import is_valid_name
from ckptd.core.states import State
from ckptd.store import LocalStore

REPO = Path(__file__).resolve().parents[2]
Q = "price"

pytestmark = pytest.mark.slow  # every test runs the ckptd command (a process)


def clean_env() -> dict[str, str]:
    """The environment without any CKPTD_* setting, so only the flags given count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CKPTD_")}


def ckptd(*args: str, root: Path | None = None, cwd: Path | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ckptd"]
    if root is not None:
        command += ["--root", str(root)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=60,
                          env=clean_env(), cwd=cwd or REPO, input=stdin)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(root: Path) -> LocalStore:
    return LocalStore(str(root), FsyncMode.NEVER)


def submit(root: Path, payload: str = '{"sku": "A-1"}', *more: str) -> str:
    out = ok(ckptd("submit", Q, payload, *more, root=root))
    job_id = out.strip()
    assert "\n" not in job_id and is_valid_name(job_id)
    return job_id


def test_submit_prints_the_id_and_writes_the_job(root: Path, store: LocalStore) -> None:
    job_id = submit(root)
    job = jobs.decode(store.read(Q, State.PENDING, job_id), Q, job_id)
    assert job["payload"] == {"sku": "A-1"}
    assert (root / Q / "pending" / f"{job_id}.json").is_file()
    from_stdin = ok(ckptd("submit", Q, "--payload-file", "-", root=root, stdin='[1, 2]')).strip()
    assert jobs.decode(store.read(Q, State.PENDING, from_stdin))["payload"] == [1, 2]


def test_status_json_shape(root: Path, store: LocalStore) -> None:
    first = submit(root)
    submit(root)
    store.move(Q, first, State.PENDING, State.CLAIMED)
    answer = json.loads(ok(ckptd("status", "--json", root=root)))
    counts = answer["queues"][Q]
    assert {k: counts[k] for k in ("pending", "claimed", "done", "failed")} == {
        "pending": 1, "claimed": 1, "done": 0, "failed": 0}
    table = ok(ckptd("status", root=root))
    assert re.search(r"price\s+1\s+1\s+0\s+0", table), table


def test_ls_and_show(root: Path, store: LocalStore) -> None:
    first, second = submit(root), submit(root, '{"sku": "B"}')
    store.move(Q, second, State.PENDING, State.CLAIMED)
    assert ok(ckptd("ls", Q, root=root)).splitlines() == [
        f"pending  {first}", f"claimed  {second}"]
    assert ok(ckptd("ls", Q, "claimed", root=root)).splitlines() == [second]
    info = json.loads(ok(ckptd("show", Q, second, "--json", root=root)))
    assert info["state"] == "claimed" and info["job"]["payload"] == {"sku": "B"}
    text = ok(ckptd("show", Q, first, root=root))
    assert "state:      pending" in text and '"sku": "A-1"' in text


def test_retry(root: Path, store: LocalStore) -> None:
    job_id = submit(root)
    store.move(Q, job_id, State.PENDING, State.CLAIMED)
    job = jobs.decode(store.read(Q, State.CLAIMED, job_id))
    job["attempts"] = 3
    store.move(Q, job_id, State.CLAIMED, State.FAILED, jobs.encode(jobs.bump(job)))
    assert ok(ckptd("retry", Q, job_id, root=root)).strip() == "1 job(s) moved back to pending"
    job = jobs.decode(store.read(Q, State.PENDING, job_id))
    assert (job["attempts"], job["max_attempts"]) == (3, 6)
    assert ckptd("retry", Q, root=root).returncode == 2, "IDs or --all is required"
    assert ok(ckptd("retry", Q, "--all", root=root)).startswith("0 job(s)")


def test_cancel_and_purge(root: Path, store: LocalStore) -> None:
    pending, claimed, done = submit(root), submit(root), submit(root)
    assert ok(ckptd("cancel", Q, pending, root=root)).strip() == "removed"
    assert store.find(Q, pending) == []
    store.move(Q, claimed, State.PENDING, State.CLAIMED)
    assert "moved to failed" in ok(ckptd("cancel", Q, claimed, root=root))
    store.move(Q, done, State.PENDING, State.CLAIMED)
    store.move(Q, done, State.CLAIMED, State.DONE)
    assert_one_line_error(ckptd("cancel", Q, done, root=root), 4)
    assert ok(ckptd("purge", Q, "done", "--older-than", "7d", root=root)).startswith("0 job(s)")
    assert ok(ckptd("purge", Q, "done", root=root)).strip() == "1 job(s) purged"
    assert ok(ckptd("purge", Q, "failed", root=root)).strip() == "1 job(s) purged"
    assert store.ids(Q, State.DONE) == [] and store.ids(Q, State.FAILED) == []


def test_fsck(root: Path, store: LocalStore) -> None:
    job_id = submit(root)
    (root / Q / "pending" / "broken.json").write_bytes(b"{")
    found = ckptd("fsck", root=root)
    assert found.returncode == 9, "problems found"
    assert "malformed pending/broken.json" in found.stdout and "1 left to fix" in found.stdout
    fixed = ok(ckptd("fsck", "--repair", root=root))
    assert fixed.startswith("repaired") and "0 left to fix" in fixed
    assert (root / Q / "quarantine" / "broken.json").exists()
    assert ok(ckptd("fsck", root=root)).strip() == "0 finding(s), 0 left to fix"
    assert store.ids(Q, State.PENDING) == [job_id]


@pytest.mark.parametrize("args", [
    ("submit", "../x", "{}"),
    ("submit", "/abs", "{}"),
    ("submit", "price", "{}", "--id", "../../escape"),
    ("ls", "../x"),
    ("status", "../x"),
    ("show", "../x", "a"),
    ("show", "price", "../a"),
    ("cancel", "price", "a/b"),
    ("retry", "..", "--all"),
    ("purge", "../x", "done"),
])
def test_bad_names_exit_5_before_touching_the_disk(tmp_path: Path, root: Path,
                                                   args: tuple[str, ...]) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = tree(tmp_path)
    line = assert_one_line_error(ckptd(*args, root=root, cwd=cwd), 5)
    assert "invalid" in line
    assert tree(tmp_path) == before, "nothing created, not even the root"
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "escape.json").exists()


def test_unknown_job_exits_3(root: Path) -> None:
    submit(root)
    for args in (("show", Q, "nosuch"), ("cancel", Q, "nosuch"), ("retry", Q, "nosuch")):
        assert "nosuch" in assert_one_line_error(ckptd(*args, root=root), 3)


def test_existing_id_exits_4_unless_asked_to_return_it(root: Path) -> None:
    assert submit(root, "{}", "--id", "order-42") == "order-42"
    line = assert_one_line_error(ckptd("submit", Q, "{}", "--id", "order-42", root=root), 4)
    assert "already exists" in line
    again = ckptd("submit", Q, "{}", "--id", "order-42", "--if-exists=return", root=root)
    assert again.returncode == 0 and again.stdout.strip() == "order-42"
    assert "already existed, pending" in again.stderr


def test_bad_payload_and_bad_duration_are_one_line(root: Path) -> None:
    assert "not valid JSON" in assert_one_line_error(ckptd("submit", Q, "{not json", root=root), 5)
    assert_one_line_error(ckptd("submit", Q, "{}", "--delay", "soon", root=root), 5)


def _commands() -> list[str]:
    out = ok(ckptd("--help"))
    section = out.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in section.splitlines() if line.strip()]


def test_every_command_help_has_an_example() -> None:
    commands = _commands()
    assert {"submit", "status", "ls", "show", "retry", "cancel", "purge", "fsck"} <= set(commands)
    assert "Example" in ok(ckptd("--help"))
    missing = [c for c in commands if "Example" not in ok(ckptd(c, "--help"))]
    assert missing == [], f"--help without an example: {missing}"


def test_submit_file_to_an_absent_daemon_fails_and_writes_nothing(tmp_path: Path) -> None:
    """With --connect the file goes to the daemon or nowhere: never to a default store."""
    items = tmp_path / "items.txt"
    items.write_text("a\nb\n")
    done = ckptd("--connect", "tcp://127.0.0.1:9", "submit-file", Q, str(items), cwd=tmp_path)
    assert done.returncode == 7 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: no answer from the daemon")
    assert tree(tmp_path) == {"items.txt"}
