"""Reads that would make the daemon's loop wait on a bucket, run beside it instead.

A request such as ``fetch`` (a job's result or payload, read for a producer or a worker
without credentials) is a few store reads. On a local disk they take microseconds and are
done in the loop; on a bucket each is a round trip, and a producer fetching a thousand
results one by one held every other client's answer back. :class:`OffLoop` runs such a
read in a few threads of its own when the store's requests cross a network
(:class:`~ckptd.store.background.Background`), and hands the result back to the loop, which
replies at its next turn (the store's requests stay bounded by ``store_concurrency``).
The work given must only read the store: it runs beside the loop, and touches no index.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ckptd.core.errors import CkptdError
from ckptd.store.background import Background
from ckptd.store.base import Store
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

THREADS = 8  # reads beside the loop at once (their requests share the store's bound)

Result = Body  # an answer to a request
Then = Callable[[Result | CkptdError], None]


class OffLoop:
    """Runs store reads beside the loop on a bucket; the loop collects their results."""

    def __init__(self, store: Store, wake: Callable[[], None]) -> None:
        self.wake = wake
        self._pool = (ThreadPoolExecutor(THREADS, thread_name_prefix="ckptd-read")
                      if isinstance(store, Background) else None)
        self._done: deque[tuple[Then, Result | CkptdError]] = deque()

    def start(self, work: Callable[[], Result], then: Then) -> bool:
        """Run ``work()`` beside the loop and give ``then`` its result (or its CkptdError)
        at a later :meth:`collect`; False when the store is local (run it now)."""
        if self._pool is None:
            return False

        def ended(future: Future[Result]) -> None:  # in a thread of the pool
            error = future.exception()
            if error is not None and not isinstance(error, CkptdError):
                log.error("a read beside the loop failed: %s", error, exc_info=error)
                error = CkptdError(f"internal error: {error}")
            self._done.append((then, error if error is not None else future.result()))
            self.wake()
        self._pool.submit(work).add_done_callback(ended)
        return True

    def collect(self) -> None:
        """Hand the results that came to their ``then`` (in the loop)."""
        while self._done:
            then, result = self._done.popleft()
            try:
                then(result)
            except Exception:
                log.exception("handing a read's result back failed")

    def close(self) -> None:
        """Wait for the reads in flight (their results are dropped). Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
