"""Fixtures for every suite: ``wait_for``, and a guard that fails tests which leak.

A test that leaves a thread or a child process running fails in its teardown, naming what
it left behind (after a grace period, so something that is already stopping may finish).
Helpers that libraries start once and keep on purpose (fsspec's I/O loop thread,
multiprocessing's resource tracker) are listed in :data:`IGNORED_THREAD_PREFIXES` and
:data:`IGNORED_CHILD_COMMANDS`; extend those lists rather than switching the guard off.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import WaitTimeout, wait_for

LEAK_GRACE_SECONDS = float(os.environ.get("TESTS_LEAK_GRACE", "5"))
IGNORED_THREAD_PREFIXES: list[str] = ["fsspecIO", "asyncio_", "ThreadPoolExecutor-",
                                      "ckptd-job-logs"]  # one per process, on purpose
IGNORED_CHILD_COMMANDS: list[str] = [
    "multiprocessing.resource_tracker",  # started once by multiprocessing, lives on purpose
    "multiprocessing.forkserver",
]


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    """The :func:`tests.helpers.wait_for` helper, for tests that prefer a fixture."""
    return wait_for


def _live_children() -> set[int]:
    """Return the ids of this process's children that are not zombies (Linux; else empty)."""
    found: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as handle:
                found.update(int(pid) for pid in handle.read().split())
        except OSError:
            continue
    live = set()
    for pid in found:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and not any(m in _command(pid)
                                                 for m in IGNORED_CHILD_COMMANDS):
            live.add(pid)
    return live


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _describe_child(pid: int) -> str:
    return f"{pid} ({_command(pid)[:120]})"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves threads or child processes behind."""
    threads_before = set(threading.enumerate())
    children_before = _live_children()
    yield

    def leaked_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t not in threads_before and t.is_alive()
                and not t.name.startswith(tuple(IGNORED_THREAD_PREFIXES))]

    def leaked_children() -> set[int]:
        return _live_children() - children_before

    try:
        wait_for(lambda: not leaked_threads() and not leaked_children(),
                 timeout=LEAK_GRACE_SECONDS, interval=0.02, message="threads/processes to end")
        return
    except WaitTimeout:
        pass
    threads = ", ".join(repr(t.name) for t in leaked_threads())
    children = ", ".join(_describe_child(p) for p in sorted(leaked_children()))
    pytest.fail(f"test leaked threads [{threads}] and/or child processes [{children}] "
                f"(still running {LEAK_GRACE_SECONDS:g}s after it ended)", pytrace=False)
