"""Finding jobs for the console: by state with paging, and by payload field, error type and
time range, within a bound on what it costs.

Ids come from the folders' listing (sorted, so creation order for generated ids), cached
for a few seconds so that paging does not list again. A filter that only the ids can
answer (none, or a time range that rules out ids created later) reads no job file; one on
the payload or the error reads job files, at most ``max_reads`` per search (fewer on a
bucket, where each read is a request): the answer then says how far it got and where to go
on from. The same :class:`~ckptd.core.job_filter.JobFilter` picks the jobs of bulk actions
and replays, so a confirm step counts what the action will take.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ckptd.codec import decode_job
from ckptd.core.errors import JobNotFound, MalformedJob
from ckptd.core.job_filter import JobFilter
from ckptd.core.states import State
from ckptd.store import is_local
from ckptd.store.base import Store

LISTING_TTL = 5.0  # seconds a listing is reused for the next page
READS_LOCAL = 50_000  # job files one search reads at most, on a local disk
READS_BUCKET = 2_000  # ... and in a bucket (each one a request)
PAGE = 50


def max_reads(store: Store) -> int:
    """How many job files one search may read in ``store``."""
    return READS_LOCAL if is_local(store.url) else READS_BUCKET


@dataclass
class Found:
    """What a search found."""

    ids: list[str] = field(default_factory=list)  # the page of matches
    matched: int = 0  # matches up to where it stopped
    looked: int = 0  # job files read
    listed: int = 0  # ids in the listing
    complete: bool = True  # every id was looked at
    resume_after: str | None = None  # where a search stopped by its bound goes on from
    by_files: bool = False  # it had to read job files


class Listings:
    """Sorted id listings of (queue, state), reused for :data:`LISTING_TTL` seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, State], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def ids(self, queue: str, state: State) -> list[str]:
        """The ids of ``state`` in ``queue``, sorted (listed at most every few seconds)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((queue, state))
        if cached is not None and now - cached[0] < LISTING_TTL:
            return cached[1]
        ids = sorted(self.store.ids(queue, state))
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[(queue, state)] = (now, ids)
        return ids


def find(listings: Listings, queue: str, state: State, flt: JobFilter, *,
         offset: int = 0, page: int = PAGE, after: str | None = None,
         reads: int | None = None, everything: bool = False) -> Found:
    """The jobs of ``queue`` in ``state`` that ``flt`` takes: the page from ``offset``, the
    count, and how far it looked. ``after``: go on past this id. ``everything``: collect
    every match (a bulk action), not only a page."""
    store = listings.store
    ids = listings.ids(queue, state)
    found = Found(listed=len(ids))
    if after is not None:
        ids = [i for i in ids if i > after]
    if not flt.needs_file and flt.since is None and flt.until is None:
        found.matched = len(ids)
        found.ids = ids if everything else ids[offset:offset + page]
        return found
    budget = max_reads(store) if reads is None else reads
    found.by_files = True
    for job_id in ids:
        if not flt.id_may_match(job_id):
            continue
        if found.looked >= budget:
            found.complete = False
            found.resume_after = _previous(ids, job_id)
            break
        try:
            job = decode_job(store.read(queue, state, job_id), queue, job_id)
        except (JobNotFound, MalformedJob):
            continue
        found.looked += 1
        if flt.matches(job):
            if everything or offset <= found.matched < offset + page:
                found.ids.append(job_id)
            found.matched += 1
    return found


def _previous(ids: list[str], job_id: str) -> str | None:
    position = ids.index(job_id)
    return ids[position - 1] if position else None
