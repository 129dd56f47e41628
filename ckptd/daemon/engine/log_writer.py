"""Jobs' own logs, as workers send them: written into the store by a thread of the daemon.

Workers never write into the store on their own account for this: every pool of every
worker, on any host, sends the pieces of a running attempt's log with its other messages
(``log``, :mod:`ckptd.worker.job_logs`), and the daemon that leads the queue writes them
(:mod:`ckptd.store.job_logs`: appended to a file on a local disk, an object per piece in a
bucket). The loop only checks that the piece is for the attempt it has claimed and hands it
to the writer's thread, so a job that logs a lot costs the loop no I/O. Pieces are not
acknowledged: the lines a worker had not sent when it died are lost with it (at most
:data:`ckptd.worker.job_logs.FLUSH_EVERY` seconds of them), never the job.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from dataclasses import dataclass

from ckptd.core.config import LiveSettings
from ckptd.core.errors import CkptdError
from ckptd.store.base import Store
from ckptd.store.job_logs import JobLogs, job_logs, remove_logs

log = logging.getLogger(__name__)

BACKLOG = 10_000  # pieces waiting for the thread; more are dropped and counted
WARN_EVERY = 60.0  # seconds between two warnings about failed writes


@dataclass(frozen=True)
class Piece:
    """A piece of an attempt's log, from byte ``offset``."""

    queue: str
    job_id: str
    attempt: int
    offset: int
    text: str


@dataclass(frozen=True)
class Removal:
    """The logs of jobs to remove (they were purged)."""

    queue: str
    job_ids: list[str]


class LogWriter:
    """Writes the pieces of jobs' logs into the store (see the module docstring)."""

    def __init__(self, store: Store, live: LiveSettings) -> None:
        self.live = live
        self._store = store
        try:
            self.logs: JobLogs | None = job_logs(store)
        except CkptdError as exc:
            log.warning("jobs' logs are not kept: %s", exc)
            self.logs = None
        self._pieces: queue_mod.SimpleQueue[Piece | Removal | None] = queue_mod.SimpleQueue()
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counts = {"written": 0, "skipped": 0, "dropped": 0, "failed": 0}
        self._warned_at = float("-inf")

    def add(self, piece: Piece | Removal) -> None:
        """Hand a piece to the thread (dropped and counted when too many wait)."""
        if self.logs is None:
            return
        with self._lock:
            if self._waiting >= BACKLOG:
                self.counts["dropped"] += 1
                return
            self._waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ckptd-log-writer",
                                                daemon=True)
                self._thread.start()
        self._pieces.put(piece)

    def remove(self, queue: str, job_ids: list[str]) -> None:
        """Remove the logs of removed jobs (a purge), in the thread."""
        self.add(Removal(queue, list(job_ids)))

    def close(self) -> None:
        """Write what waits, then stop the thread. Idempotent."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._pieces.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        assert self.logs is not None
        while True:
            piece = self._pieces.get()
            if piece is None:
                return
            with self._lock:
                self._waiting -= 1
            if isinstance(piece, Removal):
                remove_logs(self._store, piece.queue, piece.job_ids)
                continue
            try:
                written = self.logs.append(piece.queue, piece.job_id, piece.attempt,
                                           piece.offset, piece.text,
                                           self.live.current.job_log_limit)
                self.counts["written" if written else "skipped"] += 1
            except CkptdError as exc:
                self.counts["failed"] += 1
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY:
                    self._warned_at = now
                    log.warning("cannot write the log of %s/%s: %s (%d failed so far)",
                                piece.queue, piece.job_id, exc, self.counts["failed"])
