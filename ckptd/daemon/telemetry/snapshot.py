"""Snapshots of the daemon's figures: what ``status``, ``/metrics`` and the dashboard show.

The daemon's loop copies the figures out of the engine into an immutable :class:`Snapshot`
every half second (:mod:`ckptd.daemon.engine.figures` builds it); the HTTP threads render the
latest snapshot without touching the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckptd.core.answer_types import ScheduleRow
from ckptd.daemon.telemetry.metrics import FailureNote, HistogramSnapshot, MinuteSample

RUNNING_SHOWN = 1000  # running jobs copied into a snapshot, newest first


@dataclass(frozen=True)
class RunningJob:
    """A claimed job at one instant: where it runs, since when, how far it got."""

    queue: str
    id: str
    worker: str | None
    claimed_at: float
    attempt: int
    progress: dict[str, Any] | None
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
    figures: dict[str, Any]  # queue_figures()
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
    worker_list: tuple[dict[str, Any], ...] = field(default=())
    schedules: tuple[ScheduleRow, ...] = field(default=())
    running: tuple[RunningJob, ...] = field(default=())
    drain_target: float = 300.0  # the setting, for the autoscaling gauges
