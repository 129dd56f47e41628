"""The engine's figures, copied out: the snapshot the HTTP side shows, ``status``'s
per-queue figures and systemd's STATUS line. Nothing here changes the index."""

from __future__ import annotations

from collections.abc import Iterable

from ckptd.daemon.engine.controls_view import controls_view
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.index import QueueIndex, WorkerInfo
from ckptd.daemon.telemetry.metrics import RATE_WINDOW
from ckptd.daemon.telemetry.snapshot import (
    RUNNING_SHOWN,
    BatchSnapshot,
    QueueFigures,
    QueueSnapshot,
    RunningJob,
    Snapshot,
    WorkerRow,
)
from ckptd.store.base import Store


def status_line(engine: Engine) -> str:
    """One line for systemd's STATUS: queues, workers and jobs per state."""
    counts = [index.counts() for index in engine.queues.values()]
    total = {k: sum(c[k] for c in counts) for k in ("pending", "claimed", "done", "failed",
                                                     "waiting")}
    return (f"{len(engine.queues)} queue(s), {len(engine.workers)} worker(s); "
            f"pending {total['pending']}, claimed {total['claimed']}, "
            f"done {total['done']}, failed {total['failed']}, waiting {total['waiting']}")


def queue_figures(index: QueueIndex, workers: Iterable[WorkerInfo], store: Store,
                  now: float) -> QueueFigures:
    """The per-queue figures of ``status`` beyond the counts: none of them scans jobs."""
    metrics = index.metrics
    lead, cycle = metrics.recent_quantiles()
    serving = [w for w in workers if index.name in w.queues]
    recent = metrics.cycle_recent
    head = index.first_ready()
    return {
        "throughput_1m": metrics.finished.count(now) / float(RATE_WINDOW),
        "delayed": len(index.delayed_at),
        "recovering": dict(index.recovering) if index.recovering is not None else None,
        "workers": len(serving),
        "slots": sum(w.slots for w in serving),  # a draining worker has none
        "cycle_mean_s": sum(recent) / len(recent) if recent else None,
        "lead_p50_s": lead[0] if lead else None,
        "lead_p95_s": lead[1] if lead else None,
        "cycle_p50_s": cycle[0] if cycle else None,
        "cycle_p95_s": cycle[1] if cycle else None,
        "oldest_pending_age_s": metrics.oldest_pending_age(head, store, index.name, now),
    }


def build_snapshot(engine: Engine, now: float, *, started_at: float, drops: dict[str, int],
                   stopping: bool = False) -> Snapshot:
    """Copy the figures out of the engine (daemon loop only; O(queues + workers))."""
    queues = []
    for name in sorted(engine.queues):
        index = engine.queues[name]
        metrics = index.metrics
        counters = dict(index.counters)
        metrics.roll_minutes(now, counters["succeeded"], counters["failed"])
        minutes = tuple(metrics.minutes)
        current = metrics.current_minute(now, counters["succeeded"], counters["failed"])
        if current is not None:
            minutes += (current,)
        counts = index.counts()
        figures = queue_figures(index, engine.workers.values(), engine.store, now)
        counts["delayed"] = figures["delayed"]
        batches = tuple(BatchSnapshot(b, f.submitted, f.succeeded, f.failed, f.retried,
                                      f.lead.frozen(), f.cycle.frozen(), f.last_at)
                        for b, f in sorted(metrics.batches.items()))
        queues.append(QueueSnapshot(name, counts, counters, figures, metrics.base_succeeded,
                                    metrics.base_failed, metrics.lead.frozen(),
                                    metrics.cycle.frozen(), metrics.dispatch.frozen(),
                                    batches, tuple(metrics.failures), minutes,
                                    controls_view(engine, name)))
    workers = tuple(worker_row(w, now) for w in engine.workers.values())
    return Snapshot(now, engine.name, engine.store.url, started_at, len(engine.workers),
                    stopping, dict(drops), dict(engine.counters), tuple(queues), workers,
                    tuple(engine.scheduler.view(now)), running_jobs(engine, now),
                    engine.settings.drain_target)


def worker_row(w: WorkerInfo, now: float) -> WorkerRow:
    """A worker as the workers page shows it."""
    # Slots are what a worker runs at once; credits are what the daemon may still send it,
    # prefetch included (extra), so free slots are slots less running, never credits.
    return {"id": w.id, "host": w.host, "pid": w.pid, "queues": list(w.queues),
            "slots": w.slots, "free": max(0, w.slots - len(w.running)),
            "credits": w.credits, "extra": w.extra, "running": len(w.running),
            "draining": w.slots == 0, "seen_s_ago": round(now - w.last_seen, 1)}


def running_jobs(engine: Engine, now: float) -> tuple[RunningJob, ...]:
    """The claimed jobs, newest first (at most :data:`RUNNING_SHOWN` of them)."""
    leases = [lease for index in engine.queues.values() for lease in index.claimed.values()]
    leases.sort(key=lambda lease: lease.claimed_at, reverse=True)
    return tuple(RunningJob(lease.queue, lease.id, lease.worker, lease.claimed_at,
                            lease.attempt, dict(lease.progress) if lease.progress else None,
                            lease.checkpoint_at, lease.heartbeat_at, lease.closing)
                 for lease in leases[:RUNNING_SHOWN])
