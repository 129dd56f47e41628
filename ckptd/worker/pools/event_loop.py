"""The async pool (``--pool async``, the default for ``async def`` handlers): one event loop
in a thread of its own runs up to ``size`` jobs at once, each as a task.

One process can then wait on hundreds of HTTP calls. The handler gets an
:class:`~ckptd.worker.job.AsyncJob`: ``await job.checkpoint(state)`` waits for the daemon
without blocking the loop (the confirmation comes from the worker's I/O thread through
``call_soon_threadsafe``), and so do ``records()``, ``result_of()`` and ``write_output()``
(run in threads). Blocking calls in a handler stall every job of the loop: use the async
form of a library, or ``asyncio.to_thread``.

A time limit cancels the task (the handler sees ``asyncio.CancelledError`` at the await it
is in, as under ``asyncio.timeout``); the attempt is answered as :class:`ckptd.TimeLimit`.
A cancel sets ``job.cancelled`` and raises :class:`ckptd.Cancelled` at the next checkpoint
or progress, and cancels the task after the grace period. A task that swallows the
cancellation (or a loop blocked by a handler) is written off at the hard limit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from msgspec import UNSET

from ckptd.core.outcomes import TimeLimit
from ckptd.worker import reports
from ckptd.worker.job import AsyncJob
from ckptd.worker.pools.base import PoolHost
from ckptd.worker.running import Attempt

log = logging.getLogger(__name__)


class AsyncPool:
    """Async handlers as tasks of one event loop; see the module docstring."""

    kind = "async"

    def __init__(self, host: PoolHost, handler: Callable[[AsyncJob], Awaitable[object]],
                 size: int) -> None:
        self.host = host
        self.handler = handler
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: dict[Attempt, asyncio.Task[None]] = {}
        self._waiting: list[Attempt] = []
        self._written_off: set[Attempt] = set()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Start the event loop's thread; return once the loop runs."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._slots = asyncio.Semaphore(self.size)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=serve, name="ckptd-async", daemon=True)
        self._thread.start()
        ready.wait()

    def submit(self, attempt: Attempt) -> None:
        """Start a task for ``attempt`` (it waits for one of the ``size`` slots)."""
        assert self._loop is not None
        with self._lock:
            self._waiting.append(attempt)
        self._loop.call_soon_threadsafe(self._spawn, attempt)

    def _spawn(self, attempt: Attempt) -> None:
        assert self._loop is not None
        with self._lock:
            self._tasks[attempt] = self._loop.create_task(self._run(attempt))

    async def _run(self, attempt: Attempt) -> None:
        assert self._slots is not None
        async with self._slots:
            with self._lock:
                if attempt not in self._waiting:
                    return  # given back while it waited
                self._waiting.remove(attempt)
            if attempt.ended:
                return
            try:
                answer = await self._attempt(attempt)
            finally:
                with self._lock:
                    self._tasks.pop(attempt, None)
                    back = attempt in self._written_off
                    self._written_off.discard(attempt)
            if answer is not None:
                self.host.finish(attempt, answer)
            if back:
                log.warning("the task of %s ended after it was written off", attempt.label())
                self.host.capacity_changed()

    async def _attempt(self, attempt: Attempt) -> reports.Answer | None:
        body = attempt.body
        job: AsyncJob | None = None
        try:
            if body.payload is not UNSET and not body.payload_ref and not body.state_ref:
                payload, state = body.payload, body.state
            else:
                payload, state = await asyncio.to_thread(self.host.job_data, attempt)
            job = AsyncJob.of(body, payload, state, self.host.job_host, attempt.flags)
            if not self.host.started(attempt):
                return None  # it ended while it waited (cancelled, given back)
            result = await self.host.around.call_async(self.handler, job, body)
            answer = reports.done(body, result)
            if answer[0] == b"done":
                answer = await asyncio.to_thread(self.host.store_result, attempt, answer)
            return answer
        except asyncio.CancelledError:
            stop = attempt.flags.stop
            if stop is None:
                raise  # the pool is stopping: the worker gives the attempt back
            return reports.failed_now(body, stop)
        except BaseException as exc:  # noqa: BLE001 - any handler error fails the attempt
            return reports.failed_now(body, exc, job)

    @staticmethod
    def waiting() -> int:
        """0: every answer wakes the I/O thread (see Pool.waiting)."""
        return 0

    def take_queued(self) -> list[Attempt]:
        """The attempts still waiting for a slot (their tasks return without running)."""
        with self._lock:
            taken, self._waiting = self._waiting, []
        return taken

    def interrupt(self, attempt: Attempt) -> None:
        """A time limit cancels the task now; a cancel waits for the handler's next call."""
        if isinstance(attempt.flags.stop, TimeLimit):
            attempt.flags.raised = True  # it sees the cancellation: its calls work on
            self._cancel(attempt)

    def kill(self, attempt: Attempt) -> None:
        """Cancel the task (again: it may have swallowed the first) and write it off until
        it ends."""
        self._cancel(attempt)
        with self._lock:
            if attempt not in self._tasks or attempt in self._written_off:
                return
            self._written_off.add(attempt)
        log.error("the task of %s outlived its hard limit: written off until it ends (%d of "
                  "%d slots stuck)", attempt.label(), self.stuck(), self.size)
        self.host.capacity_changed()

    def _cancel(self, attempt: Attempt) -> None:
        with self._lock:
            task = self._tasks.get(attempt)
        if task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(task.cancel)

    def stuck(self) -> int:
        """Tasks written off now."""
        with self._lock:
            return len(self._written_off)

    def stop(self, now: bool) -> None:
        """Cancel the tasks that still run (written off, or all of them with ``now``: the
        worker has given their attempts back) and stop the loop."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shut() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), loop)
        self._thread.join(timeout=5.0)
