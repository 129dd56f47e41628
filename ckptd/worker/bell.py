"""The worker's I/O thread and the threads that ring it (:mod:`ckptd.worker.worker`).

Handlers run on other threads (or an event loop, or children behind slot threads) and hand
their answers to the I/O thread through a queue; a ring (a byte in a pipe the I/O thread
polls) wakes it to send them. A ring costs two thread switches, about as much as a short
job itself. So while attempts wait for a slot, the answer of a short one (under
:data:`SHORT_ANSWER`) is not rung: its slot goes on with the next attempt, and the I/O
thread, which knows attempts wait, looks every :data:`ANSWER_DELAY` and sends the answers
that gathered in one batch. Long jobs, and answers when nothing waits, ring as before; an
attempt that starts while the I/O thread may sleep longer rings it (:meth:`Bell.may_sleep`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ckptd.worker.running import Attempt

ANSWER_DELAY = 0.002  # seconds an unrung answer may wait for the I/O thread to look
SHORT_ANSWER = 0.005  # seconds: the answer of a shorter attempt may go unrung


class Bell:
    """The I/O thread's wake-up pipe, and whether it may sleep longer than ANSWER_DELAY."""

    def __init__(self) -> None:
        self.fd, self._fd_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._rung = False
        self._may_sleep = False

    def ring(self) -> None:
        """Wake the I/O thread (from any thread); once until it has looked."""
        if self._rung:
            return
        self._rung = True
        try:
            os.write(self._fd_w, b"\0")
        except OSError:
            pass

    def heard(self) -> None:
        """The I/O thread saw the ring: drain the pipe, and ring again from now on. (Before
        it sends what was queued: what is queued after rings again.)"""
        try:
            while os.read(self.fd, 4096):
                pass
        except OSError:
            pass
        self._rung = False

    def woke(self) -> None:
        """The I/O thread returned from its poll."""
        self._may_sleep = False

    def timeout(self, look: Callable[[], tuple[float, bool]]) -> float:
        """How long the I/O thread may sleep, by ``look()`` (its timeout, and whether it
        looks within ANSWER_DELAY for unrung answers). Looked at twice when the answer is
        long: from the first look on, an attempt that starts rings (:meth:`may_sleep`),
        and one that started before is seen by the second; no ring is lost between."""
        timeout, soon = look()
        if not soon:
            self._may_sleep = True
            timeout, soon = look()
            self._may_sleep = not soon
        return timeout

    @property
    def may_sleep(self) -> bool:
        """Whether the I/O thread may sleep longer than ANSWER_DELAY now."""
        return self._may_sleep

    def close(self) -> None:
        for fd in (self.fd, self._fd_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self._fd_w = -1


def answers_unrung(now: float, attempts: Iterable[Attempt], waiting: int, slots: int) -> bool:
    """Whether an answer may come unrung: attempts wait for a slot (``waiting``), and one
    started less than SHORT_ANSWER ago or a slot is about to start one (not while long jobs
    fill the ``slots``: their answers ring)."""
    if not waiting:
        return False
    young = now - SHORT_ANSWER
    long_running = 0
    for attempt in attempts:
        if attempt.started is not None:
            if attempt.started > young:
                return True
            long_running += 1
    return long_running < slots
