"""Recovery in a thread, while the loop answers and dispatches.

At start-up each queue's ``claimed/`` is listed in the loop (its jobs get leases at once),
then a thread lists ``pending/`` of every queue in chunks, cut into sorted runs of compact ids
(:class:`~ckptd.daemon.engine.indexing.RunCutter`): the first run of a queue is handed over
after a few thousand names, so its first job is dispatched while the listing goes on.
Then, queue by queue, ``done/`` and ``failed/`` are listed (counts, batches, the newest
failures, copies a crash left in two folders) and ``tmp/`` is cleaned. The loop files what
the thread found at each turn (:meth:`Indexer.apply`), a few runs at a time.

Until the listing of ``pending/`` ends, the dispatch order is the best among the ids listed
so far (a directory lists in its own order, not by id): a job listed later may be older or
more urgent. After that it is exact.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from ckptd.core.answer_types import RecoveryView
from ckptd.core.config import LiveSettings
from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.daemon.engine.engine import Engine, adoption_grace
from ckptd.daemon.engine.indexing import (
    CHUNK,
    ORDER_IDS,
    ORDER_WAIT,
    ListedEnded,
    ListedPending,
    RunCutter,
    list_ended,
)
from ckptd.store import recovery
from ckptd.store.packed_ids import IdRun

log = logging.getLogger(__name__)

_numbers = itertools.count(1)
SWITCH_INTERVAL = 0.0005
START_WAIT = 0.5  # seconds start-up waits for a small store's recovery to end, at most
APPLY_PER_TURN = 16  # results filed per turn of the loop


class Indexer:
    """One recovery of some queues, listed in a thread (see the module docstring); the
    watcher's side starts one for a local root, the bucket role one per queue it takes."""

    def __init__(self, engine: Engine, live: LiveSettings, *, wake: Callable[[], None]
                 ) -> None:
        self.engine = engine
        self.store = engine.store
        self.live = live
        self.wake = wake
        self.started: float | None = None  # monotonic, when the recovery began
        self.ended: float | None = None
        self.error: str | None = None
        self._results: deque[ListedPending | ListedEnded | None] = deque()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.number = next(_numbers)  # the queues' index says which recovery files them

    @property
    def running(self) -> bool:
        """True from the start of a recovery until everything it found is filed."""
        return self.started is not None and self.ended is None

    def start(self, queues: list[str], now: float) -> None:
        """Begin every queue (claimed jobs get their leases here), then list in a thread."""
        # The loop waits this long at most for the interpreter's lock while the thread lists
        # (5 ms by default: with a claim's few system calls each, dispatch would crawl).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self.started = time.monotonic()
        self.ended = None
        engine = self.engine
        for name in queues:
            claimed = self.store.ids(name, State.CLAIMED)
            engine.indexing.begin(name, claimed, now,
                                  adoption_grace(self.live.current, name), self.number)
        since = {name: engine.index.queue(name).ready.clock() for name in queues}
        self._thread = threading.Thread(target=self._list, args=(queues, since, now),
                                        name="ckptd-recovery", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = START_WAIT) -> None:
        """Wait for the thread a while (a small store is then recovered before ready)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop listing (the daemon stops). Idempotent."""
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- the thread ------------------------------------------------------------------------

    def _list(self, queues: list[str], since: dict[str, float], now: float) -> None:
        runs: dict[str, list[IdRun]] = {}
        try:
            for name in queues:
                runs[name] = self._list_pending(name, since[name])
            for name in queues:
                if self._stop:
                    return
                findings = recovery.clean_leftovers(self.store, name, now,
                                                    self.live.current.tmp_max_age, repair=True)
                index = self.engine.queues.get(name)
                claimed = list(index.claimed) if index is not None else []
                ended = list_ended(self.store, name, runs.pop(name, []), claimed)
                ended.findings = findings + ended.findings
                self._hand(ended)
        except CkptdError as exc:
            self.error = str(exc)
            log.error("recovery: cannot list %s: %s; the rescan tries again", self.store.url,
                      exc)
        finally:
            self._hand(None)

    def _list_pending(self, name: str, since: float) -> list[IdRun]:
        cutter = RunCutter(since)
        mine: list[IdRun] = []
        held, listed, began = True, 0, time.monotonic()
        for names in self.store.listing_chunks(name, State.PENDING, CHUNK):
            if self._stop:
                return mine
            listed += len(names)
            full = cutter.add(names)
            release = held and (listed >= ORDER_IDS or time.monotonic() - began >= ORDER_WAIT)
            if release:  # a long listing: dispatch what is listed so far, meanwhile
                held = False
                for level, runs in cutter.rest().items():
                    full.setdefault(level, []).extend(runs)
            for level, runs in full.items():
                mine += runs
                self._hand(ListedPending(name, level, runs))
            if release:
                self._hand(ListedPending(name, 0, [], release=True))
        for level, runs in cutter.rest().items():
            mine += runs
            self._hand(ListedPending(name, level, runs))
        self._hand(ListedPending(name, 0, [], release=True))
        return mine

    def _hand(self, result: ListedPending | ListedEnded | None) -> None:
        self._results.append(result)
        self.wake()

    # -- the loop --------------------------------------------------------------------------

    def apply(self, now: float, most: int = APPLY_PER_TURN) -> int:
        """File what the thread found (at most ``most`` results); return how many."""
        indexing = self.engine.indexing
        filed = 0
        while self._results and filed < most:
            result = self._results.popleft()
            filed += 1
            if result is None:
                self._finish(now)
                continue
            name = result.queue
            index = self.engine.queues.get(name)
            if index is None or index.recovery != self.number:
                continue  # the queue was dropped, or is recovered again by another listing
            if isinstance(result, ListedPending):
                indexing.pending(result, now)
            else:
                indexing.ended(result, now)
        if self._results:
            self.wake()  # more next turn, after the loop's other work
        return filed

    def _finish(self, now: float) -> None:
        assert self.started is not None
        self.ended = time.monotonic()
        for index in self.engine.queues.values():
            if index.recovery == self.number:
                index.recovering = None  # a listing that failed: the rescan catches up
                index.ending = None
                index.holding = False
        counts = {q: i.counts() for q, i in self.engine.queues.items()}
        log.info("recovered the index from %s in %.3fs", self.store.url,
                 self.ended - self.started,
                 extra={"fields": {"queues": len(counts),
                                   "pending": sum(c["pending"] for c in counts.values()),
                                   "claimed": sum(c["claimed"] for c in counts.values())}})

    def view(self) -> RecoveryView:
        """What ``status`` shows of the recovery: running or not, how long, per queue."""
        if self.started is None:
            return {"running": False}
        end = self.ended if self.ended is not None else time.monotonic()
        return {"running": self.ended is None, "seconds": round(end - self.started, 3),
                "queues": self.engine.indexing.progress(), "error": self.error}
