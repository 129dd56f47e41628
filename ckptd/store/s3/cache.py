"""The pending job files an S3 store keeps in memory until their claim.

A claim reads the pending file (for the job message) and then copies it: on a bucket that
read is one more request per job. The daemon's own submits are remembered when they are
written, and :meth:`~ckptd.store.s3.backend.S3Store.prefetch` reads producers' files ahead of their
claims, many at once; a read of a pending file takes (and forgets) what is remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

CACHE_ENTRIES = 50_000
CACHE_BYTES = 64 * 1024 * 1024


class PendingCache:
    """Job files by (queue, id), bounded in count and bytes; safe between threads."""

    def __init__(self, entries: int = CACHE_ENTRIES, size: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.size = size
        self._files: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def remember(self, queue: str, job_id: str, data: bytes) -> None:
        """Keep ``data`` as the pending file of the job (nothing when full)."""
        with self._lock:
            if len(self._files) >= self.entries or self._bytes + len(data) > self.size:
                return  # full: the oldest are claimed first, so keep them, not the newest
            old = self._files.pop((queue, job_id), None)
            if old is not None:
                self._bytes -= len(old)
            self._files[(queue, job_id)] = data
            self._bytes += len(data)

    def take(self, queue: str, job_id: str) -> bytes | None:
        """Forget the job's file and return it (None when it was not kept)."""
        with self._lock:
            data = self._files.pop((queue, job_id), None)
            if data is not None:
                self._bytes -= len(data)
            return data

    def peek(self, queue: str, job_id: str) -> bytes | None:
        """The job's kept file, kept on (None when it was not kept)."""
        with self._lock:
            return self._files.get((queue, job_id))

    def full(self) -> bool:
        """True when nothing more would be kept (a file of a few KiB, at least)."""
        with self._lock:
            return len(self._files) >= self.entries or self._bytes + 4096 > self.size

    def missing(self, queue: str, ids: list[str]) -> list[str]:
        """The ids of ``ids`` whose files are not kept."""
        with self._lock:
            return [i for i in ids if (queue, i) not in self._files]

    def clear(self) -> None:
        """Forget everything. Idempotent."""
        with self._lock:
            self._files.clear()
            self._bytes = 0
