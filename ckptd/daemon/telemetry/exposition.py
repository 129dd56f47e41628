"""Prometheus text exposition of a :class:`ckptd.daemon.telemetry.snapshot.Snapshot`.

The engine keeps plain counters and bucket counts (cheap on its hot path); this module turns
a snapshot of them into ``prometheus_client`` metric families when ``/metrics`` is scraped,
in the HTTP thread. Names follow the Prometheus conventions: ``_total`` counters, ``_seconds``
histograms, base units, labels for queue, state, outcome, batch, socket and reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from ckptd.core.version import __version__
from ckptd.daemon.telemetry.autoscale import scale_families
from ckptd.daemon.telemetry.exposition_controls import control_families
from ckptd.daemon.telemetry.exposition_keys import key_families
from ckptd.daemon.telemetry.metrics import HistogramSnapshot
from ckptd.daemon.telemetry.snapshot import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SINCE_START = " Counted since the daemon started: not rebuilt from the store after a restart."

STATES = ("pending", "claimed", "done", "failed", "waiting")


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str],
                   hist: HistogramSnapshot) -> None:
    buckets = [("+Inf" if bound == float("inf") else repr(float(bound)), count)
               for bound, count in hist.cumulative()]
    family.add_metric(labels, buckets, sum_value=hist.sum)


def families(snap: Snapshot, http_requests: dict[tuple[str, str], int] | None = None
             ) -> list[Metric]:
    """The metric families of one snapshot (and of the HTTP server's own requests)."""
    info = GaugeMetricFamily("ckptd_info", "The daemon: its name, store and version (always 1).",
                             labels=["daemon", "root", "version"])
    info.add_metric([snap.daemon, snap.root, __version__], 1)
    start = GaugeMetricFamily("ckptd_start_time_seconds",
                              "When the daemon started, in seconds since the epoch.",
                              value=snap.started_at)
    jobs = GaugeMetricFamily(
        "ckptd_jobs", "Jobs per state, from the daemon's index; rebuilt from the store's "
        "folders at every start, so it survives restarts.", labels=["queue", "state"])
    delayed = GaugeMetricFamily("ckptd_jobs_delayed", "Pending jobs not due yet (a retry "
                                "backoff or a submit delay); included in state=pending.",
                                labels=["queue"])
    ended = CounterMetricFamily(
        "ckptd_jobs", "Jobs that ended, by outcome (succeeded: moved to done/, failed: moved "
        "to failed/). Starts at the number of files in done/ and failed/ when the daemon "
        "starts, so it survives restarts except for purged jobs.", labels=["queue", "outcome"])
    submitted = CounterMetricFamily(
        "ckptd_jobs_submitted", "Jobs that entered pending/: created through the daemon, "
        "written there by a client on its host, or moved there by hand." + SINCE_START,
        labels=["queue"])
    retries = CounterMetricFamily(
        "ckptd_job_retries", "Attempts that ended (error or lost lease) with the job sent back "
        "to pending/ for another attempt." + SINCE_START, labels=["queue"])
    expired = CounterMetricFamily(
        "ckptd_lease_expirations", "Claimed jobs whose lease ran out without a heartbeat."
        + SINCE_START, labels=["queue"])
    stale = CounterMetricFamily(
        "ckptd_stale_answers", "Answers dropped because they were for an attempt that is no "
        "longer running (fencing)." + SINCE_START, labels=["queue"])
    quarantined = CounterMetricFamily(
        "ckptd_quarantined", "Malformed job files moved to quarantine/." + SINCE_START,
        labels=["queue"])
    store_errors = CounterMetricFamily(
        "ckptd_store_errors", "Store operations that failed (read, rename, write)."
        + SINCE_START, value=snap.counters.get("store_errors", 0))
    unknown = CounterMetricFamily(
        "ckptd_unknown_worker_messages", "Worker messages from a connection that had not said "
        "hello (the worker is asked to say it again)." + SINCE_START,
        value=snap.counters.get("unknown_worker", 0))
    drops = CounterMetricFamily(
        "ckptd_dropped_messages", "Malformed or oversized messages dropped, by socket and "
        "reason." + SINCE_START, labels=["socket", "reason"])
    for key, count in sorted(snap.drops.items()):
        socket_name, _, reason = key.partition(":")
        drops.add_metric([socket_name, reason], count)
    workers = GaugeMetricFamily("ckptd_workers", "Connected workers that serve the queue.",
                                labels=["queue"])
    connected = GaugeMetricFamily("ckptd_workers_connected", "Connected workers, all queues.",
                                  value=snap.workers)
    throughput = GaugeMetricFamily(
        "ckptd_throughput_jobs_per_second", "Jobs that ended (done or failed) per second, "
        "averaged over the last minute.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "ckptd_oldest_pending_age_seconds", "Age of the job at the head of the ready line "
        "(absent when nothing is ready).", labels=["queue"])
    lead = _histogram("ckptd_job_lead_time_seconds", "Lead time of jobs that reached done/: "
                      "created -> done." + SINCE_START, ["queue"])
    cycle = _histogram("ckptd_job_cycle_time_seconds", "Cycle time of jobs that reached "
                       "done/: first claim -> done." + SINCE_START, ["queue"])
    dispatch = _histogram("ckptd_dispatch_latency_seconds", "How long a job waited in "
                          "pending/ once due (created, or its retry time) before a worker "
                          "got it." + SINCE_START, ["queue"])
    batch_jobs = CounterMetricFamily(
        "ckptd_batch_jobs", "Jobs of a batch (the job's 'batch' field) by event: submitted, "
        "succeeded, failed, retried." + SINCE_START, labels=["queue", "batch", "event"])
    batch_lead = _histogram("ckptd_batch_lead_time_seconds", "Lead time (created -> done) "
                            "of a batch's jobs." + SINCE_START, ["queue", "batch"])
    batch_cycle = _histogram("ckptd_batch_cycle_time_seconds", "Cycle time (first claim -> "
                             "done) of a batch's jobs." + SINCE_START, ["queue", "batch"])
    for q in snap.queues:
        name = q.name
        for state in STATES:
            jobs.add_metric([name, state], q.counts.get(state, 0))
        delayed.add_metric([name], q.counts.get("delayed", 0))
        ended.add_metric([name, "succeeded"], q.base_succeeded + q.counters["succeeded"])
        ended.add_metric([name, "failed"], q.base_failed + q.counters["failed"])
        submitted.add_metric([name], q.counters["submitted"])
        retries.add_metric([name], q.counters["retried"])
        expired.add_metric([name], q.counters["expired"])
        stale.add_metric([name], q.counters["stale_answers"])
        quarantined.add_metric([name], q.counters["quarantined"])
        workers.add_metric([name], q.figures["workers"])
        throughput.add_metric([name], q.figures["throughput_1m"])
        age = q.figures["oldest_pending_age_s"]
        if age is not None:
            oldest.add_metric([name], age)
        _add_histogram(lead, [name], q.lead)
        _add_histogram(cycle, [name], q.cycle)
        _add_histogram(dispatch, [name], q.dispatch)
        for b in q.batches:
            for event in ("submitted", "succeeded", "failed", "retried"):
                batch_jobs.add_metric([name, b.name, event], getattr(b, event))
            _add_histogram(batch_lead, [name, b.name], b.lead)
            _add_histogram(batch_cycle, [name, b.name], b.cycle)
    out: list[Metric] = [info, start, jobs, delayed, ended, submitted, retries, expired, stale,
                         quarantined, store_errors, unknown, drops, workers, connected,
                         throughput, oldest, lead, cycle, dispatch, batch_jobs, batch_lead,
                         batch_cycle, *control_families(snap), *key_families(snap),
                         *scale_families(snap)]
    if http_requests is not None:
        http = CounterMetricFamily("ckptd_http_requests", "Requests to the metrics and "
                                   "dashboard server, by method and status code." + SINCE_START,
                                   labels=["method", "code"])
        for (method, code), count in sorted(http_requests.items()):
            http.add_metric([method, code], count)
        out.append(http)
    return out


HttpRequests = dict[tuple[str, str], int] | None  # (method, status) -> requests served

class _SnapshotCollector:
    """A prometheus_client collector that reads the latest snapshot at each scrape."""

    def __init__(self, source: Callable[[], tuple[Snapshot | None, HttpRequests]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snap, http = self.source()
        if snap is not None:
            yield from families(snap, http)


def make_registry(source: Callable[[], tuple[Snapshot | None, HttpRequests]]
                  ) -> CollectorRegistry:
    """A registry with the daemon's figures and the process's own (CPU, memory, fds)."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(source))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (Prometheus 0.0.4) of everything in ``registry``.

    The families are ours (gauges, counters, histograms with plain names), so each line is
    written directly: about a fifth of the time of prometheus_client's ``generate_latest``,
    which checks every label name of every line (at 100 queues, 10,000 lines). A family of
    another type goes through ``generate_latest``.
    """
    out: list[str] = []
    others = CollectorRegistry(auto_describe=False)
    for family in registry.collect():
        kind = family.type
        if kind not in ("gauge", "counter", "histogram"):
            others.register(_Fixed([family]))
            continue
        name = family.name + "_total" if kind == "counter" else family.name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        created = []
        for sample in family.samples:
            line = _sample_line(sample)
            if sample.name == family.name + "_created":
                created.append(line)
            else:
                out.append(line)
        if created:
            out.append(f"# HELP {family.name}_created {doc}\n"
                       f"# TYPE {family.name}_created gauge\n")
            out.extend(created)
    text = "".join(out).encode()
    return text + bytes(generate_latest(others))


class _Fixed:
    """A collector of families already made (for :func:`render`'s other types)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _go_float(number: float) -> str:
    """A value as the Prometheus text format writes it (as Go formats floats)."""
    d = float(number)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    text = repr(d)
    dot = text.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _sample_line(sample: Sample) -> str:
    value = _go_float(sample.value)
    if not sample.labels:
        return f"{sample.name} {value}\n"
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {value}\n"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value
