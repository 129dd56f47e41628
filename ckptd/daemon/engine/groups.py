"""The end of a turn on a bucket: the round's group started, the groups that ended finished.

On a local disk the daemon applies a turn's group and waits (a flush is fast). On a store
whose requests cross a network (:class:`~ckptd.store.background.Background`) waiting would
leave about one group in flight, so :meth:`Groups.commit` does what the waiting commit does
in another order, and nothing in it waits on the store:

1. the groups that ended since the last turn (the store's thread woke the loop) get their
   callbacks, in the order they were started: replies, jobs for workers, acks;
2. what those callbacks have to say is delivered (replies first, then the workers' batch);
3. the round's ops, and those the callbacks and the delivery queued, are started as one
   group, and the loop goes on.

So "accepted" and "done" are still said only once the store has answered for the write
(a callback runs after its group ended), and a job's ops keep their order across groups
(the store chains them). Groups share the store's bound of requests in flight
(``store_concurrency``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.store_guard import StoreGuard

log = logging.getLogger(__name__)


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
        for txn, outcomes, seconds in self.guard.ended():
            engine.index.note_apply(seconds)
            for callback, outcome in zip(txn.callbacks, outcomes):
                if callback is not None:
                    try:
                        callback(outcome)
                    except Exception:
                        log.exception("callback failed")
        deliver()  # may queue ops: a vanished worker's jobs go back
        txn = engine.index.take_txn()
        if txn.ops:
            self.guard.start(txn, self.writable())

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
            self.guard.settle(left)
            self.commit(deliver)
            if self.in_flight:
                time.sleep(0.005)  # a group's end is handed over just after it ended
