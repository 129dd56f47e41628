"""The end of a turn on a bucket: the round's group started, the groups that ended finished.

On a local disk the daemon applies a turn's group and waits (a flush is fast). On a store
whose requests cross a network (:class:`~ckptd.store.background.Background`) waiting would
leave about one group in flight, so :meth:`Groups.commit` does what the waiting commit does
in another order, and nothing in it waits on the store:

1. the groups that ended since the last turn (the store's thread woke the loop) get their
   callbacks, in the order they were started: replies, jobs for workers, acks;
2. what those callbacks have to say is delivered (replies first, then the workers' batch);
3. the round's ops, and those the callbacks and the delivery queued, are started, in groups
   of at most :data:`GROUP_JOBS` jobs, and the loop goes on. A group ends with its slowest
   request (and the one request that deletes its old copies), so a round of a hundred
   claims is sent to workers group by group as each ends, not all after the slowest.

So "accepted" and "done" are still said only once the store has answered for the write
(a callback runs after its group ended), and a job's ops keep their order across groups
(the store chains them). Groups share the store's bound of requests in flight
(``store_concurrency``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.index import Txn
from ckptd.daemon.engine.store_guard import StoreGuard
from ckptd.store.base import Outcome

log = logging.getLogger(__name__)

GROUP_JOBS = 16  # jobs per group: a claim waits for its group's slowest request, not a round's


def run_callbacks(txn: Txn, outcomes: Sequence[Outcome]) -> None:
    """Run each op's callback with its outcome; one that raises is logged and the others
    still run (one bad callback must not cost the round)."""
    for callback, outcome in zip(txn.callbacks, outcomes):
        if callback is not None:
            try:
                callback(outcome)
            except Exception:
                log.exception("callback failed")


def split(txn: Txn, chains: int) -> list[Txn]:
    """``txn`` in parts of at most ``chains`` jobs each (a job's ops stay in one part, in
    their order): each part ends by itself, so a claim is not held back by the slowest
    request of a big round."""
    if len(txn.ops) <= chains:
        return [txn]
    parts: dict[tuple[str, str], int] = {}
    found: list[Txn] = []
    for op, callback in zip(txn.ops, txn.callbacks):
        key = (op.queue, op.job_id)
        number = parts.get(key)
        if number is None:
            number = parts[key] = len(parts) // chains
            if number == len(found):
                found.append(Txn())
        found[number].ops.append(op)
        found[number].callbacks.append(callback)
    return found


class Groups:
    """Starts the rounds' groups of one daemon and finishes them when they end."""

    def __init__(self, engine: Engine, guard: StoreGuard, writable: Callable[[], bool]
                 ) -> None:
        self.engine = engine
        self.guard = guard
        self.writable = writable

    @property
    def in_flight(self) -> int:
        """Groups started and not finished yet."""
        return self.guard.in_flight

    def commit(self, deliver: Callable[[], None]) -> None:
        """Finish the groups that ended, deliver, start the round's group (module
        docstring)."""
        engine = self.engine
        engine.off_loop.collect()  # reads that requests made beside the loop
        for txn, outcomes, seconds in self.guard.ended():
            engine.index.note_apply(seconds)
            run_callbacks(txn, outcomes)
        deliver()  # may queue ops: a vanished worker's jobs go back
        txn = engine.index.take_txn()
        if txn.ops:
            writable = self.writable()
            for part in split(txn, GROUP_JOBS):
                self.guard.start(part, writable)

    def finish(self, deliver: Callable[[], None], timeout: float) -> None:
        """At a stop: wait (up to ``timeout``) for the groups in flight and finish them, so
        that their replies and acks still go out. Ops their callbacks queue are started
        and waited for too, within the same time."""
        deadline = time.monotonic() + timeout
        while self.in_flight or self.engine.index.txn.ops:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%d group(s) of store operations still in flight at the stop: "
                            "their answers are sent again by the workers", self.in_flight)
                return
            self.guard.drain(left)
            self.commit(deliver)
            if self.in_flight:
                time.sleep(0.005)  # a group's end is handed over just after it ended
