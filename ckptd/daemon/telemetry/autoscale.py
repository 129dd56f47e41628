"""The autoscaling signal: how much work waits per worker slot, and how many workers a queue
would need to drain it within ``drain_target``, from the cycle times it measured.

For each queue: ``backlog`` is its due pending jobs plus the running ones; ``slots`` the
slots of the workers that serve it (a draining worker has none); the mean cycle time is
that of the recent jobs. Then

- backlog per slot = backlog / slots (the backlog itself when no slot serves it);
- workers needed = ceil(backlog x mean cycle / (drain_target x slots per worker)), at least
  1 while there is a backlog, 0 when there is none; with no cycle time measured yet, the
  workers there are now (at least 1).

An autoscaler scales on these gauges (KEDA's Prometheus scaler, a cloud autoscaling group;
docs/guide/console.md has both recipes). A worker told to stop (SIGTERM) finishes its
running jobs with no slots: ``ckptd_worker_draining`` says so, so that a scale-in waits for
it instead of killing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from ckptd.daemon.telemetry.snapshot import QueueSnapshot, Snapshot


@dataclass(frozen=True)
class Scale:
    """One queue's autoscaling figures."""

    backlog: int
    slots: int
    per_slot: float
    needed: int


def scale_of(q: QueueSnapshot, target: float) -> Scale:
    """The autoscaling figures of one queue (see the module's doc)."""
    counts = q.counts
    due = max(0, counts.get("pending", 0) - counts.get("delayed", 0))
    backlog = due + counts.get("claimed", 0)
    slots = int(q.figures.get("slots") or 0)
    workers = int(q.figures.get("workers") or 0)
    per_slot = backlog / slots if slots else float(backlog)
    cycle = q.figures.get("cycle_mean_s")
    if backlog == 0:
        needed = 0
    elif cycle is None or target <= 0:
        needed = max(1, workers)
    else:
        per_worker = slots / workers if workers and slots else 1.0
        needed = max(1, math.ceil(backlog * float(cycle) / (target * per_worker)))
    return Scale(backlog, slots, per_slot, needed)


def scale_families(snap: Snapshot) -> list[Metric]:
    """The autoscaling gauges of one snapshot."""
    backlog = GaugeMetricFamily("ckptd_queue_backlog", "Due pending and running jobs: the "
                                "work a queue's workers have before them.", labels=["queue"])
    per_slot = GaugeMetricFamily("ckptd_queue_backlog_per_slot", "Backlog per slot of the "
                                 "workers serving the queue (the backlog when none does).",
                                 labels=["queue"])
    needed = GaugeMetricFamily("ckptd_queue_workers_needed", "Workers that would drain the "
                               "backlog within drain_target, from the mean cycle time.",
                               labels=["queue"])
    target = GaugeMetricFamily("ckptd_drain_target_seconds", "The drain_target setting.")
    target.add_metric([], snap.drain_target)
    for q in snap.queues:
        figures = scale_of(q, snap.drain_target)
        backlog.add_metric([q.name], figures.backlog)
        per_slot.add_metric([q.name], figures.per_slot)
        needed.add_metric([q.name], figures.needed)
    draining = GaugeMetricFamily("ckptd_worker_draining", "1 for a worker that was told to "
                                 "stop and still finishes jobs (scale-in should wait for "
                                 "it), 0 for one that takes jobs.", labels=["worker", "host"])
    count = 0
    for w in snap.worker_list:
        draining.add_metric([str(w["id"]), str(w["host"])], 1 if w.get("draining") else 0)
        count += 1 if w.get("draining") else 0
    total = GaugeMetricFamily("ckptd_workers_draining", "Workers finishing their jobs before "
                              "they stop.")
    total.add_metric([], count)
    return [backlog, per_slot, needed, target, draining, total]
