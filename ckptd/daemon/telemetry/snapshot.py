"""Snapshots of the daemon's figures: what ``status``, ``/metrics`` and the dashboard show.

The daemon's loop copies the figures out of the engine into an immutable :class:`Snapshot`
every half second (:mod:`ckptd.daemon.engine.figures` builds it); the HTTP threads render the
latest snapshot without touching the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ckptd.core.answer_types import ScheduleRow
from ckptd.daemon.telemetry.metrics import FailureNote, HistogramSnapshot, MinuteSample

RUNNING_SHOWN = 1000  # running jobs copied into a snapshot, newest first


class QueueFigures(TypedDict):
    """A queue's figures beyond its counts (``status``, the dashboard, ``/metrics``)."""

    throughput_1m: float  # jobs ended per second, over the last minute
    delayed: int
    recovering: dict[str, int] | None  # while its folders are listed: ids so far
    workers: int  # serving it
    slots: int  # of those workers (a draining worker has none)
    cycle_mean_s: float | None
    lead_p50_s: float | None
    lead_p95_s: float | None
    cycle_p50_s: float | None
    cycle_p95_s: float | None
    oldest_pending_age_s: float | None


class WorkerRow(TypedDict):
    """A connected worker, as the workers page and ``/metrics`` show it."""

    id: str
    host: str
    pid: int
    queues: list[str]
    slots: int  # what it runs at once (0: draining)
    free: int  # slots less running
    credits: int  # what the daemon may still send it, prefetch included
    extra: int  # credits beyond its slots (prefetch)
    running: int
    draining: bool
    seen_s_ago: float


@dataclass(frozen=True)
class RunningJob:
    """A claimed job at one instant: where it runs, since when, how far it got."""

    queue: str
    id: str
    worker: str | None
    claimed_at: float
    attempt: int
    progress: Mapping[str, object] | None  # as the worker reported it (done, total, note)
    checkpoint_at: float | None
    heartbeat_at: float | None
    closing: bool


@dataclass(frozen=True)
class BatchSnapshot:
    """One batch's figures at one instant."""

    name: str
    submitted: int
    succeeded: int
    failed: int
    retried: int
    lead: HistogramSnapshot
    cycle: HistogramSnapshot
    last_at: float


@dataclass(frozen=True)
class QueueSnapshot:
    """One queue's figures at one instant."""

    name: str
    counts: dict[str, int]  # pending, claimed, done, failed, delayed
    counters: dict[str, int]  # the index's counters (since the daemon started)
    figures: QueueFigures
    base_succeeded: int
    base_failed: int
    lead: HistogramSnapshot
    cycle: HistogramSnapshot
    dispatch: HistogramSnapshot
    batches: tuple[BatchSnapshot, ...]
    failures: tuple[FailureNote, ...]
    minutes: tuple[MinuteSample, ...]
    controls: dict[str, Any] = field(default_factory=dict)  # controls_view()


@dataclass(frozen=True)
class Snapshot:
    """Everything the HTTP thread shows, copied out of the engine by the daemon's loop."""

    at: float
    daemon: str
    root: str
    started_at: float
    workers: int
    stopping: bool
    drops: dict[str, int]
    counters: dict[str, int]
    queues: tuple[QueueSnapshot, ...]
    worker_list: tuple[WorkerRow, ...] = field(default=())
    schedules: tuple[ScheduleRow, ...] = field(default=())
    running: tuple[RunningJob, ...] = field(default=())
    drain_target: float = 300.0  # the setting, for the autoscaling gauges
