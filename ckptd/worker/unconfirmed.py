"""Answers and checkpoints a worker has sent and the daemon has not confirmed yet.

A worker keeps each ``done``/``failed`` answer until the daemon's ``ack`` (sent once the
job's move is durable, or at once for an answer that was stale), and each checkpoint until
its ``saved``. What is kept is sent again after a reconnect (a restarted daemon, or another
one that now leads) and, as a last resort, when it has waited for :data:`RESEND_AFTER`
seconds: an answer that died with a daemon is then not lost, the job is not run again
after its lease, and ``job.checkpoint()`` does not wait out its timeout across a restart.
Sending one twice is safe: the attempt number fences answers, and a checkpoint's ``seq``
already saved is confirmed without being written again.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ckptd.wire.messages import Saved

log = logging.getLogger(__name__)

RESEND_AFTER = 15.0  # seconds without a confirmation before an answer is sent again anyway
MAX_KEPT = 100_000  # answers kept at most (the oldest are dropped beyond, with a warning)

Confirmed = Callable[[Saved], None]


def attempt_key(body: Mapping[str, object], last: str = "attempt") -> tuple[str, str, int]:
    """``(queue, id, attempt)`` of an outgoing body this worker made (``last``: ``seq`` for
    a checkpoint's); TypeError for a body not made that way."""
    queue, job_id, number = body["queue"], body["id"], body[last]
    if not (isinstance(queue, str) and isinstance(job_id, str) and isinstance(number, int)):
        raise TypeError(f"not an attempt's body: {queue!r}, {job_id!r}, {number!r}")
    return queue, job_id, number


@dataclass
class _Kept:
    order: int
    kind: bytes
    body: dict[str, object]
    sent: float
    confirmed: Confirmed | None = None  # checkpoints: who waits for the daemon's saved


class Unconfirmed:
    """What the daemon has not confirmed yet; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, int], _Kept] = {}
        self._checkpoints: dict[tuple[str, str, int], _Kept] = {}
        self._order = itertools.count()
        self.keep_answers = True  # False with a daemon that does not confirm answers

    def add_answer(self, kind: bytes, body: dict[str, object], now: float) -> None:
        """Keep an answer until :meth:`confirm_answer`; forget its attempt's checkpoints."""
        key = attempt_key(body)
        with self._lock:
            for seq_key in [k for k, kept in self._checkpoints.items()
                            if k[:2] == key[:2] and kept.body["attempt"] == key[2]]:
                del self._checkpoints[seq_key]
            if not self.keep_answers:
                return
            self._answers[key] = _Kept(next(self._order), kind, body, now)
            if len(self._answers) > MAX_KEPT:
                oldest = min(self._answers, key=lambda k: self._answers[k].order)
                del self._answers[oldest]
                log.warning("more than %d answers unconfirmed by the daemon: the oldest "
                            "(%s/%s) is no longer kept", MAX_KEPT, oldest[0], oldest[1])

    def confirm_answer(self, queue: str, job_id: str, attempt: int) -> bool:
        """The daemon confirmed an answer: forget it. True if it was kept."""
        with self._lock:
            return self._answers.pop((queue, job_id, attempt), None) is not None

    def add_checkpoint(self, body: dict[str, object], confirmed: Confirmed, now: float) -> None:
        """Keep a checkpoint until the daemon's ``saved``, which goes to ``confirmed``."""
        key = attempt_key(body, "seq")
        with self._lock:
            self._checkpoints[key] = _Kept(next(self._order), b"checkpoint", body, now,
                                           confirmed)

    def confirm_checkpoint(self, reply: Saved) -> None:
        """The daemon's ``saved`` for a checkpoint: hand it to whoever waits for it."""
        with self._lock:
            kept = self._checkpoints.pop((reply.queue, reply.id, reply.seq), None)
        if kept is not None and kept.confirmed is not None:
            kept.confirmed(reply)

    def forget_checkpoint(self, queue: str, job_id: str, seq: int) -> None:
        """Nobody waits for this checkpoint any more (its handler gave up or was stopped)."""
        with self._lock:
            self._checkpoints.pop((queue, job_id, seq), None)

    def forget_answers(self) -> None:
        """Stop keeping answers (the daemon does not confirm them)."""
        with self._lock:
            self.keep_answers = False
            self._answers.clear()

    def everything(self, now: float) -> list[tuple[bytes, dict[str, object]]]:
        """Every kept message, oldest first, to send again (after a reconnect)."""
        with self._lock:
            kept = sorted([*self._answers.values(), *self._checkpoints.values()],
                          key=lambda k: k.order)
            for item in kept:
                item.sent = now
        return [(item.kind, item.body) for item in kept]

    def overdue(self, now: float, after: float = RESEND_AFTER) -> list[tuple[bytes,
                                                                            dict[str, object]]]:
        """The kept messages sent more than ``after`` seconds ago, to send again."""
        with self._lock:
            kept = sorted((k for k in [*self._answers.values(), *self._checkpoints.values()]
                           if now - k.sent >= after), key=lambda k: k.order)
            for item in kept:
                item.sent = now
        return [(item.kind, item.body) for item in kept]

    def answer_refs(self) -> list[list[str | int]]:
        """``[queue, id, attempt]`` of the answers not confirmed yet."""
        with self._lock:
            return [list(key) for key in self._answers]

    def answers(self) -> int:
        """How many answers are not confirmed yet."""
        with self._lock:
            return len(self._answers)
