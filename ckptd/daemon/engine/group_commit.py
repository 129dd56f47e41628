"""``fsync = "batch"`` on a local disk, overlapped: the loop gathers the next group while the
last one is flushed, and one flush serves two groups.

Each turn's transaction is staged at once (its files written into ``tmp/``,
:mod:`ckptd.store.local.grouped`). A flush (one ``syncfs``, on a thread of its own) then
makes their data durable and, in the same journal commit, the renames of the groups
published before it began. When a flush ends:

- the groups whose renames it covered are durable: their outcomes go back to the loop,
  which runs their callbacks (replies "accepted", acks of "done", jobs to workers);
- the groups whose data it covered are published (renamed into place, in order) and wait
  for the next flush.

A group without data (removals, moves back) is published at once and waits for one flush.
A group is one transaction: its ops become visible together and are answered together, in
the order the loop made them. The loop never waits for a flush, and a flush never waits
for the loop: while one runs, the loop reads requests and answers and stages what they
make, and the next flush takes all of it. "Accepted" and "done" are still said only after
the flush that made them durable. A group in flight when the process dies is as a group
applied halfway by ``apply``: files in ``tmp/`` (removed by recovery), or renames not
yet durable, never answered.

Claims (pending -> claimed, a plain rename) are the exception: they are renamed at once
and their jobs sent in the same turn, without waiting for a flush. Nobody is told anything
that a lost claim would make untrue: a crash of the process loses no rename, and a power
cut before the next flush puts the job back in ``pending/``, where it runs again, as it
would have after its lease had the claim been flushed (an attempt that a power cut
interrupted runs again either way: its answer was not durable). Waiting for the flush
cost each job a journal commit before it could start (on a journaled ext4 disk, bulk jobs
end to end went from 62 % of ``never`` to 80 % with the daemon and two workers alone, from
60 % to 66 % beside Huey in bench/peers.py). A claim that writes
data (a hand-written file, completed) waits for its flush like any write, and the claims
after it wait with it, so that jobs reach the workers in the order they were claimed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ckptd.core import crashpoints
from ckptd.core.errors import CkptdError, StoreError
from ckptd.core.states import State
from ckptd.daemon.engine.index import Txn
from ckptd.store.base import Move, Outcome, PutNew
from ckptd.store.local.grouped import GroupedWrites, Staged

log = logging.getLogger(__name__)


@dataclass
class _Group:
    txn: Txn
    staged: Staged


class GroupCommit:
    """The groups in flight between the loop and the flushing thread."""

    def __init__(self, store: GroupedWrites, wake: Callable[[], None],
                 settle: Callable[[Txn, list[Outcome]], list[Outcome]],
                 note: Callable[[float], None], in_flight: set[tuple[str, str]],
                 appeared: Callable[[str, str], None]) -> None:
        self.store = store
        # Jobs these groups put into pending/ (or waiting/), which the watcher must leave to
        # them; once a group's callbacks ran, what is not indexed in pending/ yet is
        # announced as the watcher would have (a reduce, a pipeline's next job, a retry
        # that someone undid).
        self.in_flight = in_flight
        self.appeared = appeared
        self.wake = wake  # tells the loop that a flush ended
        self.settle = settle  # the store guard's look at the outcomes (failures kept)
        self.note = note  # how long a flush took (the engine sizes prefetch by it)
        self._waiting_data: list[_Group] = []  # staged; their data waits for a flush
        self._waiting_names: list[_Group] = []  # published; their renames wait for a flush
        self._covered: tuple[list[_Group], list[_Group]] | None = None  # the running flush's
        self._ended: list[tuple[Txn, list[Outcome]]] = []
        self._held_claims: set[int] = set()  # groups in flight with claims (their id())
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requested = False  # the thread is to run a flush
        self._finished = False  # the flush ended, with this error (None: it went through)
        self._error: CkptdError | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="ckptd-flush", daemon=True)
        self._thread.start()
        self.flushes = 0
        self.flushed_ops = 0
        self.flush_seconds = 0.0
        self.last_flush = 0.0  # seconds the last flush took

    def figures(self) -> dict[str, float]:
        """What ``status`` shows of the flushes: how many, how long, how many ops each."""
        return {"count": self.flushes, "seconds": round(self.flush_seconds, 3),
                "ops_per_flush": round(self.flushed_ops / max(1, self.flushes), 1),
                "in_flight": len(self)}

    def __len__(self) -> int:
        """Groups in flight (staged, published or being flushed)."""
        covered = sum(map(len, self._covered)) if self._covered else 0
        return len(self._waiting_data) + len(self._waiting_names) + covered

    def add(self, txn: Txn, behind_data: bool = False) -> None:
        """Stage a transaction (publish it at once when it writes no data, unless
        ``behind_data``: then it goes the way of data, after the groups before it) and see
        that a flush comes for it."""
        staged = self.store.stage(txn.ops)
        group = _Group(txn, staged)
        self.in_flight.update((queue, job_id) for queue, job_id, _ in _into_pending(txn))
        if staged.has_data or behind_data:
            self._waiting_data.append(group)
        else:
            self.store.publish(staged)
            self._waiting_names.append(group)
        self._start_flush()

    def run(self, txn: Txn) -> list[tuple[Txn, list[Outcome]]]:
        """Take a turn's transaction in (when it has ops) and return the transactions
        applied since the last call, in order, with their outcomes: those made durable,
        then the turn's claims, made at once (see the module's docstring)."""
        claimed: list[tuple[Txn, list[Outcome]]] = []
        if txn.ops:
            # Claims go at once only when no claim of this turn or of a group still in
            # flight waits for a flush (a hand-written file is claimed with new data): the
            # jobs must reach the workers in the order they were claimed.
            claims, rest, holds = _claims_apart(txn, hold=bool(self._held_claims))
            if claims.ops:
                staged = self.store.stage(claims.ops)
                self.store.publish(staged)
                claimed.append((claims, self.settle(claims, staged.outcomes)))
            if rest.ops:
                self.add(rest, behind_data=holds and bool(self._held_claims))
                if holds:
                    self._held_claims.add(id(rest))
        return self.take_ended() + claimed

    def take_ended(self) -> list[tuple[Txn, list[Outcome]]]:
        """The transactions made durable since the last call, in order, with their
        outcomes (looked at by the store guard); moves the pipeline on (the next flush
        starts here)."""
        with self._lock:
            finished, self._finished = self._finished, False
            error = self._error
        if finished and self._covered is not None:
            self.note(self.last_flush)
            self._flush_ended(error)
        ended, self._ended = self._ended, []
        for txn, _ in ended:
            self._held_claims.discard(id(txn))
        return [(txn, self.settle(txn, outcomes)) for txn, outcomes in ended]

    def landed(self, ended: list[tuple[Txn, list[Outcome]]]) -> None:
        """The callbacks of ``ended`` ran: the watcher may look at their jobs again, and
        those they put into pending/ that nobody indexed are announced now."""
        for txn, outcomes in ended:
            for (queue, job_id, pending), outcome in zip(_into_pending(txn, all_ops=True),
                                                         outcomes):
                if not job_id:
                    continue
                self.in_flight.discard((queue, job_id))
                if outcome is None and pending:  # (into waiting/: its callback knew it)
                    self.appeared(queue, job_id)

    def drain(self, timeout: float = 30.0) -> list[tuple[Txn, list[Outcome]]]:
        """Wait until every group in flight is durable (a stop); return them all."""
        ended = self.take_ended()
        while len(self):
            with self._lock:
                if not self._finished and not self._changed.wait_for(
                        lambda: self._finished, timeout):
                    break  # the disk does not answer: what is left stays unanswered
            ended += self.take_ended()
        return ended

    def finish(self, take: Callable[[], Txn],
               run_callbacks: Callable[[Txn, list[Outcome]], None], rounds: int = 8) -> None:
        """A stop: apply what ``take`` gives (the loop's last ops, and those the callbacks
        queue, a few rounds deep), make it all durable, run the callbacks, stop the thread."""
        for _ in range(rounds):
            ended = self.run(take()) + self.drain()
            for txn, outcomes in ended:
                run_callbacks(txn, outcomes)
            self.landed(ended)
            if not ended:
                break
        self.close()

    def close(self) -> None:
        """Stop the flushing thread (after :meth:`drain`)."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self._thread.join(10)

    # -- the loop's side -------------------------------------------------------------------

    def _start_flush(self) -> None:
        if self._covered is not None or not (self._waiting_data or self._waiting_names):
            return
        self._covered = (self._waiting_data, self._waiting_names)
        self._waiting_data, self._waiting_names = [], []
        with self._lock:
            self._requested = True
            self._changed.notify_all()

    def _flush_ended(self, error: CkptdError | None) -> None:
        assert self._covered is not None
        data, names = self._covered
        self._covered = None
        self.flushes += 1
        self.flush_seconds += self.last_flush
        self.flushed_ops += sum(len(g.txn.ops) for g in data) + sum(len(g.txn.ops)
                                                                     for g in names)
        for group in names:  # their renames are durable now
            outcomes = group.staged.outcomes
            if error is not None:
                outcomes = [error if o is None else o for o in outcomes]
            self._ended.append((group.txn, outcomes))
        for group in data:  # their data is durable now: into place, in order
            if error is not None:
                self.store.drop_staged(group.staged, error)
                outcomes = [error if o is None else o for o in group.staged.outcomes]
                self._ended.append((group.txn, outcomes))
                continue
            self.store.publish(group.staged)
            self._waiting_names.append(group)
        self._start_flush()

    # -- the flushing thread ---------------------------------------------------------------

    def _serve(self) -> None:
        with self._lock:
            while True:
                while not self._requested and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                self._requested = False
                self._lock.release()
                started = time.perf_counter()
                try:
                    self.store.flush()
                    outcome: CkptdError | None = None
                    crashpoints.reached("after_group_flush")
                except CkptdError as exc:
                    outcome = exc
                except Exception as exc:  # a bug must not stop the daemon's writes for good
                    log.exception("flushing the store failed")
                    outcome = StoreError(f"store failure: {exc}")
                finally:
                    self._lock.acquire()
                self._error = outcome
                self.last_flush = time.perf_counter() - started
                self._finished = True
                self._changed.notify_all()
                self.wake()


def _claims_apart(txn: Txn, hold: bool) -> tuple[Txn, Txn, bool]:
    """The claims of ``txn`` to make at once, the rest, and whether the rest holds claims.
    None go at once with ``hold`` (claims in flight wait for a flush), nor when one of them
    writes new data (it waits for a flush, and so must those claimed after it)."""
    claims, rest = Txn(), Txn()
    for op, then in zip(txn.ops, txn.callbacks):
        if isinstance(op, Move) and op.src is State.PENDING and op.dst is State.CLAIMED:
            if hold or op.data is not None:
                return Txn(), txn, True
            claims.ops.append(op)
            claims.callbacks.append(then)
        else:
            rest.ops.append(op)
            rest.callbacks.append(then)
    return claims, (rest if claims.ops else txn), False


def _into_pending(txn: Txn, all_ops: bool = False) -> list[tuple[str, str, bool]]:
    """(queue, id, into pending/) of the ops of ``txn`` that put a file into pending/ or
    waiting/ (the watcher leaves both to the op's callback; with ``all_ops``, one entry per
    op, ("", "", False) for the others)."""
    found = []
    for op in txn.ops:
        into = op.state if isinstance(op, PutNew) else \
            op.dst if isinstance(op, Move) and op.src is not op.dst else None
        if into is State.PENDING or into is State.WAITING:
            found.append((op.queue, op.job_id, into is State.PENDING))
        elif all_ops:
            found.append(("", "", False))
    return found
