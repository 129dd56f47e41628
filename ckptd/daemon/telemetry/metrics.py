"""The daemon's numbers: histograms, rates and recent failures, per queue and per batch.

Everything here that the engine calls per job is O(1) and cheap (a ``bisect`` over a short
tuple, a few integer adds): the engine runs thousands of jobs a second and must not pay for
telemetry nobody reads. The expensive parts (quantiles, sums over rings, the Prometheus text,
the HTML) are computed only when asked for, from a
:class:`~ckptd.daemon.telemetry.snapshot.Snapshot`: an immutable copy of the figures that
the daemon's loop publishes every half second and that the HTTP thread renders without
touching the engine.

What survives a restart: counts per state are rebuilt from the folders by recovery; the
succeeded/failed totals start at the number of files in ``done/`` and ``failed/``; everything
else (submitted, retried, expired, histograms, per-batch figures) counts from the daemon's
start, and the Prometheus HELP text says so.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckptd.codec import decode_job
from ckptd.core.ids import id_time
from ckptd.core.jobs import Job
from ckptd.core.timefmt import time_or_none

if TYPE_CHECKING:
    from ckptd.store.base import Store

# Seconds, 1 ms to 1 day: covers a no-op job's cycle time and a day-long batch's lead time.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
RECENT_SAMPLES = 1000  # status p50/p95 are over the last this-many finished jobs
RECENT_FAILURES = 50
MINUTES_KEPT = 60  # the dashboard's charts cover the last hour
MAX_BATCHES = 1000  # per queue; further batches are counted under OTHER_BATCH
OTHER_BATCH = "_other"
Quantiles = tuple[float, ...] | None
RATE_WINDOW = 60  # seconds of "current throughput"


class Histogram:
    """Counts of observations per bucket (not cumulative), their sum and their number."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation (O(log buckets), no allocation)."""
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def frozen(self) -> HistogramSnapshot:
        """An immutable copy."""
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.sum, self.count)


@dataclass(frozen=True)
class HistogramSnapshot:
    """A histogram at one instant."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) per bucket, ending with (inf, count)."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            total += n
            out.append((bound, total))
        return out

    def minus(self, earlier: HistogramSnapshot) -> HistogramSnapshot:
        """What was observed since ``earlier``."""
        return HistogramSnapshot(self.bounds,
                                 tuple(a - b for a, b in zip(self.counts, earlier.counts)),
                                 self.sum - earlier.sum, self.count - earlier.count)

    def quantile(self, q: float) -> float | None:
        """Estimate a quantile by linear interpolation inside its bucket (None when empty)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        seen = 0
        lower = 0.0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            if n and seen + n >= rank:
                if bound == float("inf"):
                    return lower
                return lower + (bound - lower) * max(0.0, rank - seen) / n
            seen += n
            lower = bound
        return lower

    def mean(self) -> float | None:
        """The average observation (None when empty)."""
        return self.sum / self.count if self.count > 0 else None


def empty_histogram() -> HistogramSnapshot:
    """A histogram with nothing in it."""
    return HistogramSnapshot(DURATION_BUCKETS, (0,) * (len(DURATION_BUCKETS) + 1), 0.0, 0)


class RateWindow:
    """Events per second over the last minute: a ring of per-second counters."""

    __slots__ = ("_secs", "_counts")
    SIZE = 64  # a power of two above RATE_WINDOW

    def __init__(self) -> None:
        self._secs = [-1] * self.SIZE
        self._counts = [0] * self.SIZE

    def add(self, now: float) -> None:
        """Count one event at ``now``."""
        sec = int(now)
        slot = sec & (self.SIZE - 1)
        if self._secs[slot] != sec:
            self._secs[slot] = sec
            self._counts[slot] = 0
        self._counts[slot] += 1

    def count(self, now: float, window: int = RATE_WINDOW) -> int:
        """Events in the ``window`` seconds up to ``now`` (O(SIZE))."""
        sec = int(now)
        return sum(c for s, c in zip(self._secs, self._counts) if sec - window < s <= sec)


def quantiles(values: Iterable[float], *qs: float) -> tuple[float, ...] | None:
    """Nearest-rank quantiles of ``values`` (None when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    last = len(ordered) - 1
    return tuple(ordered[min(last, max(0, int(q * len(ordered) + 0.5) - 1))] for q in qs)


@dataclass(frozen=True)
class FailureNote:
    """A job that ended in failed/: enough to list it on the dashboard."""

    queue: str
    id: str
    at: float
    type: str
    message: str
    attempts: int
    batch: str | None = None


class BatchMetrics:
    """Figures of one batch of one queue, since the daemon started."""

    __slots__ = ("submitted", "succeeded", "failed", "retried", "lead", "cycle", "last_at")

    def __init__(self) -> None:
        self.submitted = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.lead = Histogram()
        self.cycle = Histogram()
        self.last_at = 0.0


@dataclass(frozen=True)
class MinuteSample:
    """What one minute saw: jobs finished, and their lead times."""

    start: float
    succeeded: int
    failed: int
    lead_mean: float | None
    lead_p95: float | None


class QueueMetrics:
    """Histograms, rates and recent failures of one queue (the counters stay in the index)."""

    def __init__(self) -> None:
        self.lead = Histogram()
        self.cycle = Histogram()
        self.dispatch = Histogram()
        self.lead_recent: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self.cycle_recent: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self.finished = RateWindow()
        self.batches: dict[str, BatchMetrics] = {}
        self.failures: deque[FailureNote] = deque(maxlen=RECENT_FAILURES)
        self.minutes: deque[MinuteSample] = deque(maxlen=MINUTES_KEPT)
        self.base_succeeded = 0  # files in done/ and failed/ when the daemon started
        self.base_failed = 0
        self._minute = -1  # the minute in progress (none before the first roll)
        # Counters at the start of that minute; they all start at 0 with the queue's index.
        self._minute_mark: tuple[int, int, HistogramSnapshot] = (0, 0, empty_histogram())
        self._head: tuple[str, float | None] | None = None  # oldest pending id, its time
        self._recent_cache: tuple[int, tuple[Quantiles, Quantiles]] | None = None

    # -- the engine's calls (hot path) -----------------------------------------------------

    def batch(self, name: str) -> BatchMetrics:
        """The figures of batch ``name`` (batches past MAX_BATCHES share OTHER_BATCH)."""
        found = self.batches.get(name)
        if found is None:
            if len(self.batches) >= MAX_BATCHES:
                name = OTHER_BATCH
                found = self.batches.get(name)
            if found is None:
                found = self.batches[name] = BatchMetrics()
        return found

    def succeeded(self, now: float, lead: float | None, cycle: float, batch: str | None
                  ) -> None:
        """A job reached done/ (``lead`` is None when its creation time is unknown)."""
        self.finished.add(now)
        self.cycle.observe(cycle)
        self.cycle_recent.append(cycle)
        if lead is not None:
            self.lead.observe(lead)
            self.lead_recent.append(lead)
        if batch is not None:
            figures = self.batch(batch)
            figures.succeeded += 1
            figures.cycle.observe(cycle)
            if lead is not None:
                figures.lead.observe(lead)
            figures.last_at = now

    def failed(self, now: float, note: FailureNote) -> None:
        """A job reached failed/."""
        self.finished.add(now)
        self.failures.append(note)
        if note.batch is not None:
            figures = self.batch(note.batch)
            figures.failed += 1
            figures.last_at = now

    def retried(self, batch: str | None) -> None:
        """An attempt ended and the job went back to pending for another one."""
        if batch is not None:
            self.batch(batch).retried += 1

    def submitted(self, batch: str | None, now: float) -> None:
        """A job was created through the daemon."""
        if batch is not None:
            figures = self.batch(batch)
            figures.submitted += 1
            figures.last_at = now

    # -- start-up --------------------------------------------------------------------------

    def seed_failures(self, store: Store, queue: str, ids: Sequence[str]) -> None:
        """Fill the recent failures from the newest files of ``failed/`` (at recovery)."""
        from ckptd.core.errors import CkptdError
        from ckptd.core.states import State

        for job_id in ids[-RECENT_FAILURES:]:
            try:
                job = decode_job(store.read(queue, State.FAILED, job_id), queue, job_id)
            except CkptdError:
                continue
            self.failures.append(failure_note(job, time_or_none(job.get("finished_at"))))

    # -- reading (the daemon's loop only) --------------------------------------------------

    def recent_quantiles(self) -> tuple[Quantiles, Quantiles]:
        """(p50, p95) of the recent lead and cycle times, cached until a job finishes."""
        version = self.cycle.count
        if self._recent_cache is None or self._recent_cache[0] != version:
            lead = quantiles(self.lead_recent, 0.5, 0.95)
            cycle = quantiles(self.cycle_recent, 0.5, 0.95)
            self._recent_cache = (version, (lead, cycle))
        return self._recent_cache[1]

    def roll_minutes(self, now: float, succeeded: int, failed: int) -> None:
        """Close the minute that ended, if one did (called every tick by the daemon)."""
        minute = int(now // 60)
        if minute == self._minute:
            return
        if self._minute >= 0:
            lead = self.lead.frozen()
            done0, failed0, lead0 = self._minute_mark
            delta = lead.minus(lead0)
            self.minutes.append(MinuteSample(self._minute * 60.0, succeeded - done0,
                                             failed - failed0, delta.mean(),
                                             delta.quantile(0.95)))
            for empty in range(self._minute + 1, min(minute, self._minute + MINUTES_KEPT)):
                self.minutes.append(MinuteSample(empty * 60.0, 0, 0, None, None))
            self._minute_mark = (succeeded, failed, lead)
        self._minute = minute

    def current_minute(self, now: float, succeeded: int, failed: int) -> MinuteSample | None:
        """The minute in progress, so far."""
        if self._minute < 0:
            return None
        mark = self._minute_mark
        delta = self.lead.frozen().minus(mark[2])
        return MinuteSample(self._minute * 60.0, succeeded - mark[0], failed - mark[1],
                            delta.mean(), delta.quantile(0.95))

    def oldest_pending_age(self, head: str | None, store: Store, queue: str, now: float
                           ) -> float | None:
        """Age of ``head``, the pending job at the head of the ready line (None: none).

        The age is read from the head job's ``created`` (one file read when the head
        changes), else from a generated id's time.
        """
        if head is None:
            return None
        if self._head is None or self._head[0] != head:
            self._head = (head, _created_time(store, queue, head))
        stamp = self._head[1]
        return None if stamp is None else max(0.0, now - stamp)


def _created_time(store: Store, queue: str, job_id: str) -> float | None:
    """When a pending job was created: its file's ``created``, else its id's time, else
    when its file last changed."""
    import json

    from ckptd.core.errors import CkptdError
    from ckptd.core.states import State

    try:
        job = json.loads(store.read(queue, State.PENDING, job_id))
        stamp = time_or_none(job.get("created")) if isinstance(job, dict) else None
    except (CkptdError, ValueError):
        stamp = None
    if stamp is None:
        created = id_time(job_id)
        stamp = created.timestamp() if created is not None else None
    if stamp is None:  # a file written by hand, with an id of its own: when it came
        try:
            stamp = store.mtime(queue, State.PENDING, job_id)
        except CkptdError:
            stamp = None
    return stamp


def failure_note(job: Job, at: float | None) -> FailureNote:
    """The dashboard's note of a job in failed/."""
    found = job.get("last_error")
    error: Mapping[str, object] = found if isinstance(found, dict) else {}
    batch = job.get("batch")
    return FailureNote(str(job.get("queue")), str(job.get("id")), at or 0.0,
                       str(error.get("type") or "Error"), str(error.get("message") or "")[:500],
                       int(job.get("attempts") or 0), batch if isinstance(batch, str) else None)
