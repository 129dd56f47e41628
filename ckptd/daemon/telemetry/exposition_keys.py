"""The Prometheus families of flow control by key, with bounded labels: the busiest keys of
each queue by name, every other key as ``other`` (:mod:`~ckptd.daemon.telemetry.key_metrics`).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ckptd.daemon.telemetry.key_metrics import OTHER
from ckptd.daemon.telemetry.snapshot import Snapshot

SINCE_START = " Counts from the daemon's start."


def key_families(snap: Snapshot) -> list[Metric]:
    """The families of the keys of one snapshot's queues (those whose jobs have keys)."""
    count = GaugeMetricFamily("ckptd_keys", "Keys of the queue with jobs ready or running.",
                              labels=["queue"])
    running = GaugeMetricFamily("ckptd_key_running", "Claimed jobs of a key: the busiest "
                                "keys by name, the rest as key=\"other\".",
                                labels=["queue", "key"])
    ready = GaugeMetricFamily("ckptd_key_ready", "Due jobs of a key waiting to be claimed: "
                              "the busiest keys by name, the rest as key=\"other\".",
                              labels=["queue", "key"])
    claims = CounterMetricFamily("ckptd_key_claims", "Claims of jobs of a key: a key has its "
                                 "own label once it was among the busiest (and keeps it), "
                                 "the rest count as key=\"other\"." + SINCE_START,
                                 labels=["queue", "key"])
    held = CounterMetricFamily("ckptd_key_held", "Times a key was at its max_running when "
                               "its turn came." + SINCE_START, labels=["queue"])
    throttled = CounterMetricFamily("ckptd_key_throttled", "Times a key waited for a token "
                                    "of its rate." + SINCE_START, labels=["queue"])
    for q in snap.queues:
        keys = (q.controls or {}).get("keys")
        if not keys:
            continue
        name = q.name
        count.add_metric([name], keys.get("count", 0))
        busiest = keys.get("busiest") or []
        for family, field in ((running, "running"), (ready, "ready")):
            shown = 0
            for row in busiest:
                if row["key"] == OTHER:
                    continue  # counted under "other"
                family.add_metric([name, row["key"]], row.get(field, 0))
                shown += row.get(field, 0)
            family.add_metric([name, OTHER], max(0, keys.get(field, 0) - shown))
        for key, value in (keys.get("claims") or {}).items():
            claims.add_metric([name, key], value)
        held.add_metric([name], keys.get("held", 0))
        throttled.add_metric([name], keys.get("throttled", 0))
    return [count, running, ready, claims, held, throttled]
