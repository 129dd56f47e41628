"""The Prometheus families of the operator controls: pause, limits, priorities, dedup,
retention, schedules (from the snapshot's ``controls`` and ``schedules``)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ckptd.core.timefmt import time_or_none
from ckptd.daemon.telemetry.snapshot import Snapshot

SINCE_START = " Counts from the daemon's start."


def control_families(snap: Snapshot) -> list[Metric]:
    """The families of the operator controls of one snapshot."""
    paused = GaugeMetricFamily("ckptd_queue_paused", "1 while <queue>/paused exists (no new "
                               "claims), else 0.", labels=["queue"])
    running = GaugeMetricFamily("ckptd_queue_max_running", "max_running in force (absent: "
                                "no limit).", labels=["queue"])
    rate = GaugeMetricFamily("ckptd_queue_rate_limit_per_second", "The dispatch rate in "
                             "force, jobs per second (absent: no limit).", labels=["queue"])
    throttled = CounterMetricFamily("ckptd_queue_throttled", "Times a job of the queue waited "
                                    "for a token of its rate." + SINCE_START, labels=["queue"])
    ready = GaugeMetricFamily("ckptd_jobs_ready", "Due jobs waiting for a worker, by "
                              "priority (lower runs first).", labels=["queue", "priority"])
    aged = CounterMetricFamily("ckptd_priority_aged", "Dispatches that aging decided: a less "
                               "urgent job went first because it had waited long (urgent "
                               "work arrives faster than it runs)." + SINCE_START,
                               labels=["queue"])
    dedup = CounterMetricFamily("ckptd_dedup_hits", "Submits to a unique queue that found "
                                "the job of their payload." + SINCE_START, labels=["queue"])
    keep = GaugeMetricFamily("ckptd_retention_keep_seconds", "How long finished jobs are "
                             "kept (absent: forever).", labels=["queue", "state"])
    swept = CounterMetricFamily("ckptd_retention_jobs", "Finished jobs that retention removed "
                                "or archived." + SINCE_START, labels=["queue", "state",
                                                                      "action"])
    for q in snap.queues:
        c = q.controls
        if not c:
            continue
        name = q.name
        paused.add_metric([name], 1 if c.get("paused") else 0)
        limits = c.get("limits") or {}
        if limits.get("max_running") is not None:
            running.add_metric([name], limits["max_running"])
        if limits.get("rate_per_s") is not None:
            rate.add_metric([name], limits["rate_per_s"])
        throttled.add_metric([name], limits.get("throttled", 0))
        priorities = c.get("priorities") or {}
        for level, count in (priorities.get("levels") or {}).items():
            ready.add_metric([name, level], count)
        aged.add_metric([name], priorities.get("aged", 0))
        if c.get("unique"):
            dedup.add_metric([name], c["unique"].get("hits", 0))
        retention = c.get("retention") or {}
        for state in ("done", "failed"):
            seconds = retention.get(f"keep_{state}_s")
            if seconds:
                keep.add_metric([name, state], seconds)
            for action in ("removed", "archived"):
                swept.add_metric([name, state, action], retention.get(f"{action}_{state}", 0))
    jobs = CounterMetricFamily("ckptd_schedule_jobs", "Ticks submitted by the schedule: "
                               "created, or found existing (made before a crash or by "
                               "another daemon)." + SINCE_START, labels=["schedule", "outcome"])
    next_run = GaugeMetricFamily("ckptd_schedule_next_run_timestamp_seconds", "When the "
                                 "schedule's next tick is due.", labels=["schedule"])
    last_run = GaugeMetricFamily("ckptd_schedule_last_run_timestamp_seconds", "The tick of "
                                 "the schedule's last job.", labels=["schedule"])
    for row in snap.schedules:
        jobs.add_metric([row["name"], "created"], row["submitted"] or 0)  # (None: a store's)
        jobs.add_metric([row["name"], "existing"], row["existing"] or 0)
        for family, key in ((next_run, "next"), (last_run, "last")):
            when = time_or_none(row.get(key))
            if when is not None:
                family.add_metric([row["name"]], when)
    return [paused, running, rate, throttled, ready, aged, dedup, keep, swept, jobs,
            next_run, last_run]
