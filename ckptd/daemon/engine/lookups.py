"""Where jobs are, for requests that wait on them, without the loop waiting on the store.

A ``wait`` on ids asks, for each job that is not open in the index (pending, claimed or
waiting), in which folder it is: done, failed, or not there at all. On a local disk that is
a ``stat`` or two. On a bucket each is a request (20 ms on a real region), and a
``wait_many`` of a thousand jobs asked them one by one in the loop: tens of seconds without
an answer to anyone. :class:`Lookups` asks such a store in the background
(:meth:`~ckptd.store.background.Background.locate_later`, many at once) and answers from
what came back; the request waits (parked, like any ``wait``) until it came, and keeps what
it learnt. Answers are kept :data:`FRESH` seconds for other requests: a job that is not open
in the index has ended, and an ended job stays where it is unless an operator moves it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from ckptd.core.states import State
from ckptd.daemon.engine.index import Index
from ckptd.store.background import Background

FRESH = 2.0  # seconds a looked-up state is used before it is asked again
KEEP = 200_000  # looked-up states kept at most

Found = dict[str, str | None]


class Lookups:
    """The states of jobs, from the index and (where they are not open) the store."""

    def __init__(self, index: Index, clock: Callable[[], float] = time.monotonic) -> None:
        self.index = index
        self.clock = clock
        store = index.store
        self.background = store if isinstance(store, Background) else None
        self._found: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._failed: dict[tuple[str, str], float] = {}  # asked again only after FRESH
        self._asking: set[tuple[str, str]] = set()
        # from the store's thread: (queue, states found, ids whose look failed)
        self._arrived: deque[tuple[str, Found, list[str]]] = deque()

    def where_many(self, queue: str, ids: Sequence[str]) -> Found:
        """{id: state or None (in no folder)} for ``ids``; ids being looked up in the store
        are left out (ask again for them after the loop was woken)."""
        index = self.index.queues.get(queue)
        found: Found = {}
        closed = []
        for job_id in ids:
            if index is not None and job_id in index.pending:
                found[job_id] = State.PENDING.value
            elif index is not None and job_id in index.claimed:
                found[job_id] = State.CLAIMED.value
            elif index is not None and job_id in index.waiting:
                found[job_id] = State.WAITING.value
            else:
                closed.append(job_id)
        if self.background is None:
            found.update((i, self.index.where(queue, i)) for i in closed)
            return found
        self._take_arrived()
        now = self.clock()
        missing = []
        for job_id in closed:
            known = self._found.get((queue, job_id))
            if known is None or now - known[0] > FRESH:
                missing.append(job_id)
            else:
                found[job_id] = known[1]
        ask = [i for i in missing if (queue, i) not in self._asking
               and now - self._failed.get((queue, i), -FRESH) > FRESH]
        if ask:
            self._asking.update((queue, i) for i in ask)
            self.background.locate_later(queue, ask, lambda got, failed: self._arrived.append(
                (queue, got, failed)))
        return found

    def _take_arrived(self) -> None:
        now = self.clock()
        while self._arrived:
            queue, got, failed = self._arrived.popleft()
            for job_id, state in got.items():
                self._asking.discard((queue, job_id))
                self._failed.pop((queue, job_id), None)
                self._found[(queue, job_id)] = (now, state)
            for job_id in failed:  # the store did not answer: asked again after a while
                self._asking.discard((queue, job_id))
                self._failed[(queue, job_id)] = now
        if len(self._found) > KEEP:  # the oldest go
            for key in sorted(self._found, key=lambda k: self._found[k][0])[:KEEP // 2]:
                del self._found[key]
        if len(self._failed) > KEEP:
            self._failed.clear()
