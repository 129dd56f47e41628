"""What every pool offers the worker, and what it asks of it.

A pool runs handlers: :mod:`~ckptd.worker.pools.threads` in threads of the worker's process,
:mod:`~ckptd.worker.pools.processes` in child processes (``--pool process``), and
:mod:`~ckptd.worker.pools.event_loop` as tasks of one event loop (``async def`` handlers). The
worker's I/O thread hands it attempts, tells it when an attempt must stop (a time limit, a
cancel) or be stopped by force, and asks how many slots are written off. The pool calls
back through :class:`PoolHost` to read a job's data, to say when a handler starts, and to
send the attempt's answer.
"""

from __future__ import annotations

import inspect
import queue
import threading
from typing import Any, Protocol

from ckptd.core.errors import CkptdError
from ckptd.worker.around import Around
from ckptd.worker.job import Handler, JobHost
from ckptd.worker.reports import Answer
from ckptd.worker.running import Attempt

POOLS = ("thread", "process", "async")


class AttemptLine:
    """The attempts handed to a pool of slots, in order, until a slot takes them; the ones
    no slot has taken yet can be taken back (a stop skips them)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # put, not yet taken by a slot (a dict: in order, and taken out in O(1))
        self._waiting: dict[Attempt, None] = {}

    def put(self, attempt: Attempt) -> None:
        with self._lock:
            self._waiting[attempt] = None
        self._queue.put(attempt)

    def close_one(self) -> None:
        """Wake one slot with nothing: it returns from :meth:`take`'s loop with None."""
        self._queue.put(None)

    def take(self) -> Attempt | None:
        """The next attempt for a slot to run (blocks), skipping those that ended or were
        taken back meanwhile; None: the slot is to stop."""
        while True:
            attempt = self._queue.get()
            if attempt is None:
                return None
            with self._lock:
                self._waiting.pop(attempt, None)
            if not (attempt.ended or attempt.killed):
                return attempt

    def waiting(self) -> int:
        """How many attempts wait for a slot (read without the lock: a hint)."""
        return len(self._waiting)

    def take_queued(self) -> list[Attempt]:
        """Take back the attempts no slot has taken yet, marked killed: a slot that gets
        one later skips it."""
        with self._lock:
            taken, self._waiting = list(self._waiting), {}
        for attempt in taken:
            attempt.killed = True
        return taken


class PoolHost(Protocol):
    """What a pool asks of its worker."""

    @property
    def job_host(self) -> JobHost:
        """What the handler's Job calls (checkpoint, progress, ...)."""

    @property
    def around(self) -> Around:
        """What runs around the handler: the job's log, trace, codec and hooks."""

    def job_data(self, attempt: Attempt) -> tuple[Any, Any]:
        """The attempt's payload and last checkpoint (read from the store or fetched)."""

    def started(self, attempt: Attempt) -> bool:
        """The attempt's handler starts now (its time limit starts to run); False when it
        must not start (it was cancelled or given back meanwhile)."""

    def finish(self, attempt: Attempt, answer: Answer) -> None:
        """The attempt ended with ``answer`` (the first way of ending it wins)."""

    def store_result(self, attempt: Attempt, answer: Answer) -> Answer:
        """``answer`` with a result too big to send stored as a blob beside the job."""

    def capacity_changed(self) -> None:
        """A slot was written off, or came back: tell the daemon how many are free."""


class Pool(Protocol):
    """Runs handlers on attempts: threads, child processes or an event loop."""

    kind: str
    size: int

    def start(self) -> None:
        """Start the slots (threads, children, the loop); return once they can run jobs."""

    def submit(self, attempt: Attempt) -> None:
        """Run ``attempt`` in the next free slot."""

    def interrupt(self, attempt: Attempt) -> None:
        """The attempt was asked to stop (its flags say why): tell its handler now, where
        that is safe (an exception in a thread or a child, a cancelled task)."""

    def kill(self, attempt: Attempt) -> None:
        """Stop the attempt by force: kill its child, or write its thread or task off."""

    def waiting(self) -> int:
        """How many attempts wait for a slot whose answers, when they come, need not wake
        the I/O thread: a slot goes on with the next one, and the I/O thread looks within
        :data:`~ckptd.worker.bell.ANSWER_DELAY` (0 where a pool cannot tell)."""

    def take_queued(self) -> list[Attempt]:
        """Remove and return the attempts that wait for a slot (a stopping worker gives
        them back)."""

    def stuck(self) -> int:
        """Slots written off now: their handler outlived its hard limit and still runs."""

    def stop(self, now: bool) -> None:
        """Stop the slots; with ``now``, without waiting for running handlers."""


def choose_pool(pool: str | None, handler: Handler) -> str:
    """The pool a handler runs in: as asked, else ``async`` for an ``async def``."""
    is_async = inspect.iscoroutinefunction(handler)
    if pool is None:
        return "async" if is_async else "thread"
    if pool not in POOLS:
        raise CkptdError(f"unknown pool {pool!r}: expected one of {', '.join(POOLS)}")
    if pool == "async" and not is_async:
        raise CkptdError("--pool async needs an 'async def' handler; this one is a plain "
                         "function (use --pool thread or process)")
    if pool == "thread" and is_async:
        raise CkptdError("this handler is 'async def': run it with --pool async (or leave "
                         "--pool out), or --pool process")
    return pool
