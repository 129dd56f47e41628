"""A child process of the process pool: runs one handler at a time, on the jobs its parent
(the worker) sends over a pipe.

The parent reads each job's payload and checkpoint and sends them with the job; what the
handler's Job asks (checkpoint, progress, records, results, outputs) goes back over the
same pipe and the parent carries it out, so a child needs no socket and no store of its own.
The answer (done or failed) goes back with the child's resident memory, which the parent
compares with ``--max-memory-per-child``.

Signals from the parent: ``SIGUSR1`` means the time limit ran out, and raises
:class:`ckptd.TimeLimit` in the handler's own code (in the worker's code, such as a
checkpoint being confirmed, it is raised as that call returns); ``SIGUSR2`` means the job was
cancelled (``job.cancelled``; :class:`ckptd.Cancelled` at the next checkpoint or progress).
At the hard limit the parent kills the child. SIGINT and SIGTERM are the parent's to handle
(a Ctrl-C reaches the whole process group): the child ignores them, and exits by itself when
its parent is gone.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import resource
import signal
import sys
import threading
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, TypedDict

from ckptd.core.errors import CkptdError, remote_error
from ckptd.core.outcomes import Cancelled, Interrupt, TimeLimit
from ckptd.wire.messages import JobMessage
from ckptd.worker import reports
from ckptd.worker.around import Around
from ckptd.worker.job import AsyncJob, Handler, Job, SpawnOptions, StopFlags
from ckptd.worker.limits import over_limit

SOFT_SIGNAL = signal.SIGUSR1  # the time limit ran out
CANCEL_SIGNAL = signal.SIGUSR2  # the job was cancelled
ORPHAN_EXIT = 70


class ChildJob(TypedDict):
    """A job as the parent sends it to a child: the job message, its payload and last
    checkpoint as the parent read them, and its time limit."""

    body: JobMessage
    payload: Any  # the user's JSON
    state: Any
    time_limit: float | None


def resident_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


class _Child:
    """The child's side of the pipe, and the JobHost its handlers' jobs call."""

    def __init__(self, conn: Connection, handler: Handler, around: Around) -> None:
        self.conn = conn
        self.handler = handler
        self.around = around
        self.is_async = inspect.iscoroutinefunction(handler)
        self.lock = threading.Lock()
        self.flags = StopFlags()
        self.limit: float | None = None
        self.in_handler = False  # the handler's own code runs: a time limit may be raised
        self.deferred = False  # a time limit arrived during a call to the parent
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[object] | None = None

    # -- signals ---------------------------------------------------------------------------

    def on_time_limit(self, signum: int, frame: FrameType | None) -> None:
        stop = TimeLimit(over_limit(self.limit))
        self.flags.ask(stop)
        if self.task is not None and self.loop is not None:
            self.flags.raised = True
            self.loop.call_soon_threadsafe(self.task.cancel)
        elif self.in_handler:
            self.flags.raised = True
            raise stop
        else:
            self.deferred = True

    def on_cancel(self, signum: int, frame: FrameType | None) -> None:
        self.flags.ask(Cancelled("the job was cancelled"))

    # -- what a Job asks (ckptd.worker.job.JobHost), through the parent --------------------

    def _call(self, name: str, *args: object) -> Any:  # what the parent's call returned
        was, self.in_handler = self.in_handler, False
        try:
            with self.lock:
                self.conn.send(("call", name, args))
                reply = self.conn.recv()
        finally:
            self.in_handler = was
        if self.deferred and not self.is_async:
            self.deferred = False
            self.flags.check()
        if reply[0] == "ok":
            return reply[1]
        _, family, kind, message = reply
        if family == "interrupt":
            raise (Cancelled if kind == "Cancelled" else TimeLimit)(message)
        if family == "ckptd":
            raise remote_error(kind, message)
        raise CkptdError(f"{kind}: {message}")

    def checkpoint(self, job: Job, seq: int, state: object, timeout: float) -> None:
        self._call("checkpoint", job.queue, job.id, job.attempt, seq, state, timeout)

    async def checkpoint_async(self, job: AsyncJob, seq: int, state: object,
                               timeout: float) -> None:
        await asyncio.to_thread(self._call, "checkpoint", job.queue, job.id, job.attempt, seq,
                                state, timeout)

    def send(self, kind: bytes, body: dict[str, object]) -> None:
        with self.lock:
            self.conn.send(("send", kind, body))

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        return bytes(self._call("source_range", queue, batch, start, end))

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        return str(self._call("write_output", queue, name, data))

    def result_of(self, queue: str, job_id: str) -> Any:
        return self._call("result_of", queue, job_id)

    def spawn(self, parent: str, batch: str | None, queue: str, payload: object, key: str,
              options: SpawnOptions) -> str:
        return str(self._call("spawn", parent, batch, queue, payload, key, options))

    # -- running a job ---------------------------------------------------------------------

    def run(self, job_info: ChildJob) -> None:
        body = job_info["body"]
        self.flags = StopFlags()
        self.deferred = False
        self.limit = job_info.get("time_limit")
        kind = AsyncJob if self.is_async else Job
        job = kind.of(body, job_info["payload"], job_info["state"], self, self.flags)
        try:
            if self.is_async:
                result = asyncio.run(self._run_async(job, body))  # type: ignore[arg-type]
            else:
                self.in_handler = True
                try:
                    result = self.around.call(self.handler, job, body)  # type: ignore[arg-type]
                finally:
                    self.in_handler = False
            answer = reports.done(body, result)
        except BaseException as exc:  # noqa: BLE001 - any handler error fails the attempt
            answer = reports.failed_now(body, exc, job)
        self.deferred = False
        with self.lock:
            self.conn.send(("end", answer, resident_bytes()))

    async def _run_async(self, job: AsyncJob, body: JobMessage) -> Any:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        try:
            return await self.around.call_async(self.handler, job, body)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            stop = self.flags.stop
            if stop is not None:
                raise type(stop)(stop.reason) from None
            raise
        finally:
            self.task = self.loop = None


def _exit_when_orphaned(alive: Connection) -> None:
    """Exit as soon as the parent is gone (its end of ``alive`` closes)."""
    try:
        alive.recv()
    except (EOFError, OSError):
        pass
    os._exit(ORPHAN_EXIT)


def child_main(conn: Connection, alive: Connection, handler: Handler,
               log_level: str = "info", log_format: str = "auto",
               around: Around | None = None) -> None:
    """The child's life: say ready, then run each job the parent sends until told to stop."""
    from ckptd.core import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(log_level, log_format)
    around = around or Around()
    around.load()  # the hooks named in the config, imported in this child
    child = _Child(conn, handler, around)
    signal.signal(SOFT_SIGNAL, child.on_time_limit)
    signal.signal(CANCEL_SIGNAL, child.on_cancel)
    threading.Thread(target=_exit_when_orphaned, args=(alive,), name="ckptd-orphan-watch",
                     daemon=True).start()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            around.close()
            return
        if message[0] != "job":
            around.close()
            return
        try:
            child.run(message[1])
        except Interrupt:
            pass  # a time limit that landed after the answer went out: nothing to undo
