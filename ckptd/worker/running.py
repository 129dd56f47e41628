"""The attempts a worker holds: received from the daemon, running, or being stopped.

An :class:`Attempt` is what every part of the worker shares about one job message: the
pools run it, the time limits (:mod:`ckptd.worker.limits`) watch it, a cancel reaches it
through its :class:`~ckptd.worker.job.StopFlags`, and its answer is sent once: the first
way of ending it wins (:meth:`Running.end`), so a handler that comes back after it was
stopped by force changes nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ckptd.wire.messages import JobMessage
from ckptd.worker.job import StopFlags


@dataclass(eq=False)
class Attempt:
    """One attempt of a job, held by this worker."""

    body: JobMessage  # the job message from the daemon
    time_limit: float | None = None  # seconds the handler may run (the job's, else the worker's)
    flags: StopFlags = field(default_factory=StopFlags)
    started: float | None = None  # when its handler started (monotonic), None while queued
    soft_at: float | None = None  # when it is asked to stop (time limit)
    hard_at: float | None = None  # when it is stopped by force (limit + grace, cancel + grace)
    interrupted: bool = False  # the stop was delivered to the pool
    killed: bool = False  # it was stopped by force
    ended: bool = False  # its answer is sent (or it was given back)

    @property
    def queue(self) -> str:
        return self.body.queue

    @property
    def id(self) -> str:
        return self.body.id

    @property
    def number(self) -> int:
        return self.body.attempt

    @property
    def key(self) -> tuple[str, str]:
        return self.queue, self.id

    def ref(self) -> list[str | int]:
        """``[queue, id, attempt]``, as hello and heartbeats name running attempts."""
        return [self.queue, self.id, self.number]

    def label(self) -> str:
        return f"{self.queue}/{self.id} (attempt {self.number})"


class Running:
    """The attempts this worker holds, by (queue, id); safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, str], Attempt] = {}

    def add(self, attempt: Attempt) -> bool:
        """Hold ``attempt``; False when that attempt is held already (a message resent)."""
        with self._lock:
            held = self._attempts.get(attempt.key)
            if held is not None and held.number == attempt.number:
                return False
            self._attempts[attempt.key] = attempt
            return True

    def get(self, queue: str, job_id: str, number: int) -> Attempt | None:
        """The held attempt ``number`` of a job, or None."""
        with self._lock:
            attempt = self._attempts.get((queue, job_id))
        return attempt if attempt is not None and attempt.number == number else None

    def end(self, attempt: Attempt) -> bool:
        """Mark ``attempt`` ended and stop holding it; True for the first caller only."""
        with self._lock:
            if attempt.ended:
                return False
            attempt.ended = True
            if self._attempts.get(attempt.key) is attempt:
                del self._attempts[attempt.key]
            return True

    def all(self) -> list[Attempt]:
        """The attempts held now."""
        with self._lock:
            return list(self._attempts.values())

    def refs(self) -> list[list[str | int]]:
        """``[queue, id, attempt]`` of every attempt held."""
        return [attempt.ref() for attempt in self.all()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._attempts)
