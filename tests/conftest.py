"""Fixtures for every suite: ``wait_for``, the engine harness, and a guard that fails tests
which leak.

``harness`` is an engine on a fake clock and a memory store (:mod:`tests.harness`);
``make_harness(**settings)`` makes one with settings of the test's own. Both fail the test
when a callback of the commit raised (the daemon only logs that and goes on).

A test that leaves a thread or a child process running fails in its teardown, naming what
it left behind (after a grace period, so something that is already stopping may finish).
Helpers that libraries start once and keep on purpose (fsspec's I/O loop thread,
multiprocessing's resource tracker) are listed in :data:`IGNORED_THREAD_PREFIXES` and
:data:`IGNORED_CHILD_COMMANDS`; extend those lists rather than switching the guard off.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.harness import CallbackErrors, Harness, MakeHarness
from tests.helpers import WaitTimeout, wait_for

LEAK_GRACE_SECONDS = float(os.environ.get("TESTS_LEAK_GRACE", "5"))
IGNORED_THREAD_PREFIXES: list[str] = ["fsspecIO", "asyncio_", "ThreadPoolExecutor-",
                                      "ckptd-job-logs"]  # one per process, on purpose
IGNORED_CHILD_COMMANDS: list[str] = [
    "multiprocessing.resource_tracker",  # started once by multiprocessing, lives on purpose
    "multiprocessing.forkserver",
]


pytest_plugins = ["tests.scheduling"]  # the order of a parallel run

PROCESS_FIXTURES = {"procs", "s3_server", "s3_server_factory", "suppliers"}
"""Fixtures that start real processes: a test that uses one is ``slow`` by that alone."""


def pytest_configure(config: pytest.Config) -> None:
    """Give Ctrl-C back to the commands the tests run: started in the background of a
    non-interactive shell (``make test &``), this process has SIGINT ignored, every command
    it starts would inherit that, and the tests that press Ctrl-C on one would fail."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take what collection made (every module, test item, fixture) out of the garbage
    collector's passes: each full pass walked all of it again. This cut the CPU of the
    tests run inside pytest by about 15 %."""
    del session
    gc.collect()
    gc.freeze()


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start real processes ``slow``, and put the slow ones first (see
    the module docstring); the order is otherwise kept."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    """The :func:`tests.helpers.wait_for` helper, for tests that prefer a fixture."""
    return wait_for


@pytest.fixture
def make_harness() -> Iterator[MakeHarness]:
    """``make_harness(**settings)``: engines on a fake clock, closed at the end."""
    made: list[Harness] = []
    errors = CallbackErrors()
    commit_log = logging.getLogger("ckptd.daemon.engine.commit")
    commit_log.addHandler(errors)

    def make(**settings: object) -> Harness:
        made.append(Harness(**settings))
        return made[-1]

    try:
        yield make
    finally:
        commit_log.removeHandler(errors)
        for harness in made:
            harness.close()
    assert not errors.records, f"a callback of the commit raised: {errors.records[0].exc_info}"


@pytest.fixture
def harness(make_harness: MakeHarness) -> Harness:
    """An engine on a fake clock and a memory store, with the harness's default settings."""
    return make_harness()


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
