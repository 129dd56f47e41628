"""The thread pool (``--pool thread``, the default for plain handlers): ``size`` threads of
the worker's process, each running one handler at a time.

Threads share one interpreter, so CPU-bound handlers share one core (use ``--pool process``
for those); they suit handlers that wait on I/O.

Stopping a thread from outside: a soft stop (a time limit) raises the interrupt in the
thread asynchronously (``PyThreadState_SetAsyncExc``), only while the handler's own code
runs, never in the worker's; it takes effect between two Python bytecodes, so a handler
blocked in one long C call (``time.sleep(600)``, a read without timeout) sees it when that
call returns. A thread cannot be killed: at the hard limit its slot is written off, the
attempt is answered as failed, and the thread is left to finish on its own (its result is
dropped; the slot comes back then). The worker restarts itself when too many slots are
stuck (:meth:`ThreadPool.stuck`).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable

from ckptd.core.outcomes import Interrupt, TimeLimit
from ckptd.worker import reports
from ckptd.worker.job import Job
from ckptd.worker.pools.base import AttemptLine, PoolHost
from ckptd.worker.running import Attempt

log = logging.getLogger(__name__)

LAST_CHANCE = 0.25  # after a stop raised at the hard limit, before the thread is written off


def _raise_in(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Make ``thread_id`` raise ``exc_type`` at its next bytecode (None: no longer)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None)


class _Slot:
    """One thread and the attempt it runs."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.current: Attempt | None = None
        self.in_handler = False  # the handler's own code runs: an interrupt may be raised
        self.raised = False  # an interrupt is pending or was raised in this attempt
        self.written_off = False
        self.idle = threading.Event()  # set while the thread runs no attempt
        self.idle.set()


class ThreadPool:
    """Handlers in ``size`` threads; see the module docstring."""

    kind = "thread"

    def __init__(self, host: PoolHost, handler: Callable[[Job], object], size: int) -> None:
        self.host = host
        self.handler = handler
        self.size = size
        self._line = AttemptLine()
        self._slots = [_Slot(n) for n in range(size)]

    def start(self) -> None:
        """Start the threads."""
        for slot in self._slots:
            slot.thread = threading.Thread(target=self._serve, args=(slot,),
                                           name=f"ckptd-job-{slot.number}", daemon=True)
            slot.thread.start()

    def submit(self, attempt: Attempt) -> None:
        """Run ``attempt`` in the next free thread."""
        self._line.put(attempt)

    def waiting(self) -> int:
        """Attempts no thread has taken yet."""
        return self._line.waiting()

    def take_queued(self) -> list[Attempt]:
        """The attempts no thread has taken yet (they will be skipped)."""
        return self._line.take_queued()

    def interrupt(self, attempt: Attempt) -> None:
        """Raise the attempt's stop in its thread, if its handler is running its own code
        and the stop is a time limit (a cancel waits for the handler's next call)."""
        if isinstance(attempt.flags.stop, TimeLimit):
            self._raise(attempt)

    def kill(self, attempt: Attempt) -> None:
        """Raise the stop one last time (a cancel's first time) and, unless the thread then
        returns at once, write its slot off until it does."""
        slot = self._raise(attempt)
        if slot is None or slot.idle.wait(LAST_CHANCE):
            return
        with slot.lock:
            if slot.current is not attempt or slot.written_off:
                return
            slot.written_off = True
        log.error("attempt %s outlived its hard limit in thread %d: the slot is written off "
                  "until the handler returns (%d of %d slots stuck)", attempt.label(),
                  slot.number, self.stuck(), self.size)
        self.host.capacity_changed()

    def _raise(self, attempt: Attempt) -> _Slot | None:
        stop = attempt.flags.stop
        for slot in self._slots:
            with slot.lock:
                if slot.current is not attempt:
                    continue
                if slot.in_handler and not slot.raised and stop is not None \
                        and slot.thread is not None and slot.thread.ident is not None:
                    slot.raised = True
                    attempt.flags.raised = True  # the handler's calls do not raise it again
                    _raise_in(slot.thread.ident, type(stop))
                return slot
        return None

    def stuck(self) -> int:
        """Threads written off now."""
        return sum(1 for slot in self._slots if slot.written_off)

    def stop(self, now: bool) -> None:
        """Let the threads end (they are daemon threads: with ``now``, nobody waits)."""
        for _ in self._slots:
            self._line.close_one()
        if not now:
            for slot in self._slots:
                if slot.thread is not None and not slot.written_off:
                    slot.thread.join()

    # -- in the threads --------------------------------------------------------------------

    def _serve(self, slot: _Slot) -> None:
        while True:
            attempt = self._line.take()
            if attempt is None:
                return
            try:
                self._run(slot, attempt)
            except Interrupt:
                pass  # a stop that landed after the handler had returned: it has ended anyway
            finally:
                self._leave(slot)
                with slot.lock:
                    slot.current = None
                    slot.idle.set()
                    back = slot.written_off
                    slot.written_off = False
                if back:
                    log.warning("thread %d is free again (its handler of %s returned)",
                                slot.number, attempt.label())
                    self.host.capacity_changed()

    def _run(self, slot: _Slot, attempt: Attempt) -> None:
        with slot.lock:
            slot.current = attempt
            slot.raised = False
            slot.idle.clear()
        job: Job | None = None
        try:
            payload, state = self.host.job_data(attempt)
            body = attempt.body
            job = Job.of(body, payload, state, self.host.job_host, attempt.flags)
            if not self.host.started(attempt):
                return
            with slot.lock:
                slot.in_handler = True
            try:
                result = self.host.around.call(self.handler, job, body)
            finally:
                self._leave(slot)
            answer = self.host.store_result(attempt, reports.done(body, result))
        except BaseException as exc:  # noqa: BLE001 - any handler error fails the attempt
            stop = attempt.flags.stop
            if isinstance(exc, Interrupt) and not exc.reason and stop is not None:
                exc = stop  # raised from outside as a bare class: say why
            answer = reports.failed_now(attempt.body, exc, job)
        self.host.finish(attempt, answer)

    @staticmethod
    def _leave(slot: _Slot) -> None:
        """Leave the handler's code: no interrupt is raised in this thread from now on."""
        while True:
            try:
                with slot.lock:
                    slot.in_handler = False
                    if slot.raised and slot.thread is not None and slot.thread.ident:
                        _raise_in(slot.thread.ident, None)  # one still pending: drop it
                return
            except Interrupt:
                continue  # it landed on the way out; it is cleared now
