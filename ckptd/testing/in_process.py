"""A real daemon and real workers in the test's own process, on a temporary root, with a
fake clock (see :mod:`ckptd.testing`)."""

from __future__ import annotations

import os
import queue as queue_mod
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, Unpack

from ckptd.client.client import Client
from ckptd.core.config import Settings, load_settings
from ckptd.core.errors import CkptdError, JobNotFound
from ckptd.core.states import State
from ckptd.daemon.daemon import Daemon
from ckptd.store import is_local, store_from_settings
from ckptd.store.admin import StoreAdmin
from ckptd.testing.clock import FakeClock
from ckptd.wire.messages import Heartbeat
from ckptd.worker.job import Handler
from ckptd.worker.worker import Worker

STATES = [state.value for state in State]
STOP_WAIT = 10.0  # seconds a worker gets to finish its running jobs when the daemon closes
START_WAIT = 30.0  # seconds a worker gets to say hello


Setting = str | int | float | bool
"""A setting as the command line gives it (``lease="30s"``, ``max_attempts=5``)."""


class WorkerOptions(TypedDict, total=False):
    """What :meth:`InProcessDaemon.worker` passes on to :class:`~ckptd.worker.worker.Worker`."""

    prefetch: int
    name: str
    pool: str
    time_limit: float | None
    grace: float | None
    max_jobs_per_child: int
    max_memory_per_child: int


class WaitTimeout(AssertionError):
    """Raised by :meth:`InProcessDaemon.wait_for` when the job did not get there in time (an
    AssertionError, so that a test runner reports a failure)."""


class InProcessDaemon:
    """``ckptd serve`` in a thread of this process, on a temporary root, on a fake clock.

    ``root``: the store's folder (default: a new temporary one, removed by :meth:`close`).
    ``config_file`` / ``config_text``: a ``ckptd.toml`` (queues, schedules, retention...),
    by path or as text. ``settings``: more settings as the command line gives them
    (``lease="30s"``). The environment's ``CKPTD_*`` variables are not read, so a test runs
    the same on every machine. The sockets are bound to 127.0.0.1 on ports the system
    picks: nothing to choose, no port to collide with a test running beside it.

    The daemon sees only :attr:`clock` (a :class:`FakeClock`, frozen until :meth:`advance`):
    delays, backoffs, leases, schedules and retention wait for it. Workers started with
    :meth:`worker` are real :class:`~ckptd.worker.worker.Worker` objects in threads of
    this process, over the real sockets; their handlers run as in production.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 config_file: str | os.PathLike[str] | None = None,
                 config_text: str | None = None, clock: FakeClock | None = None,
                 **settings: Setting) -> None:
        self._folder = tempfile.mkdtemp(prefix="ckptd-testing-")
        self.root = str(root) if root is not None else os.path.join(self._folder, "root")
        if not is_local(self.root):
            raise CkptdError(f"InProcessDaemon runs on a local folder, not {self.root!r}")
        if config_text is not None:
            config_file = os.path.join(self._folder, "ckptd.toml")
            Path(config_file).write_text(config_text)
        # Ports the system picks when the sockets are bound: none to choose, none to collide.
        flags = {"control": "tcp://127.0.0.1:*", "dispatch": "tcp://127.0.0.1:*", **settings,
                 "root": self.root}
        self.settings: Settings = load_settings(str(config_file) if config_file else None,
                                                env={}, flags=flags)
        self.clock = clock or FakeClock()
        self.daemon = Daemon(self.settings, clock=self.clock)
        self.admin = StoreAdmin(store_from_settings(self.settings), self.settings, self.clock)
        self.workers: list[tuple[Worker, threading.Thread]] = []
        self._client: Client | None = None
        self._calls: queue_mod.SimpleQueue[Callable[[], None]] = queue_mod.SimpleQueue()
        self._turns = 0
        self._turned = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> InProcessDaemon:
        """Start the daemon's loop in a thread; return once it serves (raise what stopped
        it from starting)."""
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,),
                                        name="ckptd-testing-daemon", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self, started: threading.Event) -> None:
        try:
            self.daemon.start()
        except BaseException as exc:
            self._error = exc
            self.daemon.close()
            started.set()
            return
        started.set()
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        self._calls.get_nowait()()
                    except queue_mod.Empty:
                        break
                self.daemon.step()
                with self._turned:
                    self._turns += 1
                    self._turned.notify_all()
        except BaseException as exc:  # shown by the next call of the test
            self._error = exc
        finally:
            self.daemon.close()
            with self._turned:
                self._turns = -1
                self._turned.notify_all()

    def close(self) -> None:
        """Stop the workers (running jobs finish first), the client and the daemon, and
        remove the temporary folders. Idempotent."""
        for worker, _ in self.workers:
            worker.stop()
        for worker, thread in self.workers:
            thread.join(STOP_WAIT)
            if thread.is_alive():
                worker.stop_now()
                thread.join(STOP_WAIT)
        self.workers.clear()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._thread is not None:
            self._stop.set()
            self.daemon.wake()
            self._thread.join()
            self._thread = None
        self.admin.store.close()
        shutil.rmtree(self._folder, ignore_errors=True)  # the root too, unless it was given

    def __enter__(self) -> InProcessDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producing and working -------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The control socket's address, for a :class:`~ckptd.client.client.Client` or a
        :class:`~ckptd.worker.worker.Worker` of your own."""
        return self.daemon.endpoints.get("control", self.settings.control)

    @property
    def client(self) -> Client:
        """A client of this daemon (made on first use, closed by :meth:`close`). It submits
        through the daemon, never straight into the store."""
        if self._client is None:
            self._client = Client(self.endpoint, direct=False)
        return self._client

    def worker(self, queues: str | list[str], handler: Handler, *, concurrency: int = 1,
               **options: Unpack[WorkerOptions]) -> Worker:
        """Start a worker of ``queues`` running ``handler`` in a thread, and return it once
        the daemon knows it (its slots are free for the next turn); stopped by
        :meth:`close`. ``options`` go to :class:`~ckptd.worker.worker.Worker` (``pool``,
        ``time_limit``, ``name``...)."""
        self._check()
        worker = Worker(self.endpoint, queues, handler, concurrency=concurrency, **options)
        thread = threading.Thread(target=worker.run, name=f"ckptd-testing-{worker.name}",
                                  daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        deadline = time.monotonic() + START_WAIT
        while worker.name not in self.daemon.engine.workers:
            self._check()
            if not thread.is_alive() or time.monotonic() >= deadline:
                raise CkptdError(f"worker {worker.name} did not connect to the in-process "
                                 f"daemon within {START_WAIT:g}s (see its log)")
            time.sleep(0.002)
        return worker

    # -- time ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> float:
        """Let ``seconds`` pass for the daemon; return the new time.

        Returns once the daemon has taken a turn at the new time: a delayed job or a retry
        that became due is claimed by then when a worker has a free slot, a schedule's tick
        is submitted, a lease with no worker behind it has run out. The workers started here
        are alive all along: their leases are kept as their heartbeats would keep them.
        """
        moved: list[float] = []

        def move() -> None:
            moved.append(self.clock.advance(seconds))
            self._keep_workers(moved[0])

        self._call(move)
        return moved[0]

    def _keep_workers(self, now: float) -> None:
        """What the heartbeats of connected workers would have done while the time passed."""
        engine = self.daemon.engine
        for info in list(engine.workers.values()):
            engine.workers_part.worker_for(info.identity, now)  # seen now
            running = []
            for queue, job_id in info.running:
                index = engine.queues.get(queue)
                lease = index.claimed.get(job_id) if index is not None else None
                if lease is not None:
                    running.append((queue, job_id, lease.attempt))
            engine.workers_part.heartbeat(info, Heartbeat(jobs=running), now)

    def _call(self, function: Callable[[], None], timeout: float = 30.0) -> None:
        """Run ``function`` in the daemon's thread before its next turn; return after that
        turn."""
        self._check()
        with self._turned:
            self._calls.put(function)
            self.daemon.wake()
            target = self._turns + 2  # the turn in progress may have missed the call
            deadline = time.monotonic() + timeout
            while 0 <= self._turns < target or (0 <= self._turns and self._in_flight()):
                if self._turns >= target:  # a group is being flushed: the turn after it
                    target = self._turns + 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"the daemon took no turn in {timeout:g}s")
                self._turned.wait(min(left, 0.01))
        self._check()

    def _in_flight(self) -> bool:
        """Whether a group of the daemon's is still being made durable (fsync batch on a
        local disk overlaps the flush with the next turns): its changes are not done yet."""
        overlap = self.daemon.overlap
        return overlap is not None and len(overlap) > 0

    def _check(self) -> None:
        if self._error is not None:
            raise CkptdError(f"the in-process daemon stopped: {self._error!r}") \
                from self._error
        if self._thread is None:
            raise CkptdError("the in-process daemon is not started (use it in a with block "
                             "or call start())")

    # -- looking -------------------------------------------------------------------------

    def state(self, queue: str, job_id: str) -> str | None:
        """The job's state (``pending``, ``claimed``, ``done``, ``failed``...), None when
        there is no such job."""
        try:
            return str(self.admin.show(queue, job_id)["state"])
        except JobNotFound:
            return None

    def job(self, queue: str, job_id: str) -> dict[str, Any]:
        """The job's file as it is now (``result``, ``attempts``, ``last_error``...)."""
        return dict(self.admin.show(queue, job_id)["job"])

    def wait_for(self, queue: str, job_id: str, state: str = "done", *,
                 attempts: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the job is in ``state`` (with ``attempts`` attempts used, when given)
        and return its file. Raises :class:`WaitTimeout` after ``timeout`` seconds of real
        time, and at once when the job ended in another final state (done or failed)."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}: expected one of {', '.join(STATES)}")
        deadline = time.monotonic() + timeout
        seen: tuple[str | None, object] = (None, None)
        while True:
            self._check()
            try:
                shown = self.admin.show(queue, job_id)
            except JobNotFound:
                shown = None
            if shown is not None:
                job = dict(shown["job"])
                seen = (shown["state"], job.get("attempts"))
                if shown["state"] == state and (attempts is None
                                                or job.get("attempts") == attempts):
                    return job
                if shown["state"] in ("done", "failed") and shown["state"] != state:
                    raise WaitTimeout(f"job {job_id} of {queue} ended {shown['state']}, not "
                                      f"{state}: {job.get('last_error') or job.get('result')}")
            if time.monotonic() >= deadline:
                what = f"{state}" + (f" after {attempts} attempt(s)" if attempts else "")
                raise WaitTimeout(f"job {job_id} of {queue} is not {what} after {timeout:g}s "
                                  f"(state {seen[0]}, attempts {seen[1]}); advance() the "
                                  "clock if it waits for a delay, a backoff or a lease")
            time.sleep(0.005)
