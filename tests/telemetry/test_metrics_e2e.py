"""/metrics of a real daemon against the store's folders, after 500 jobs."""

from __future__ import annotations

import collections
from bisect import bisect_left
from pathlib import Path
from typing import Any

import zmq

from ckptd.core.timefmt import parse_iso
from ckptd.daemon.telemetry.metrics import DURATION_BUCKETS
from tests.helpers import wait_for
from tests.procs import Processes, count_files, free_port, job_files
from tests.telemetry.helpers import fetch, scrape, value

N = 500
Q = "t"


def payload(n: int) -> dict[str, Any]:
    """Most jobs succeed at once; some after 1 or 2 failures; some never (5 > 3 attempts)."""
    return {"n": n, "fail": {7: 1, 8: 2, 9: 5}.get(n % 10, 0)}


def batch_of(n: int) -> str | None:
    return None if n % 5 == 0 else ("even" if n % 2 == 0 else "odd")


def expected_buckets(values: list[float]) -> tuple[list[int], set[int]]:
    """Cumulative counts per bound, and the bounds too close to a value to judge."""
    counts = [0] * (len(DURATION_BUCKETS) + 1)
    unsure = set()
    for v in values:
        counts[bisect_left(DURATION_BUCKETS, v)] += 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if abs(v - bound) < 1e-5:  # file times are rounded to the microsecond
                unsure.add(i)
    total, cumulative = 0, []
    for c in counts:
        total += c
        cumulative.append(total)
    return cumulative, unsure


def test_every_counter_and_histogram_matches_the_folders(procs: Processes,
                                                         tmp_path: Path) -> None:
    port = free_port()
    daemon = procs.daemon(metrics_port=port, backoff_base="0.02s", backoff_cap="0.1s")
    for _ in range(2):
        procs.worker(daemon, Q, "flaky", concurrency=4, prefetch=2)
    with daemon.client(timeout=30) as client:
        wait_for(lambda: client.status()["workers"] == 2, timeout=30, message="two workers")
        for n in range(N):
            client.submit(Q, payload(n), batch=batch_of(n), max_attempts=3)
        client.wait_many(Q, None, timeout=180)
        # One malformed control request: dropped and counted, never answered as a job.
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(daemon.control)
        sock.send_multipart([b"", b"ckptd/1", b"status", b"{not json"])
        assert sock.poll(10_000), "the daemon says why a request-shaped message was dropped"
        sock.close()
        ctx.term()
        status = client.status()
    root = daemon.root
    done, failed = job_files(root, Q, "done"), job_files(root, Q, "failed")
    assert len(done) + len(failed) == N and len(failed) == N // 10
    assert count_files(root, Q, "pending") == 0 and count_files(root, Q, "claimed") == 0

    def settled() -> Any:
        samples, _ = scrape(port)
        try:
            ok = value(samples, "ckptd_jobs", queue=Q, state="done") == len(done) and \
                value(samples, "ckptd_dropped_messages_total", socket="control",
                      reason=next(iter(status["drops"])).split(":", 1)[1]) >= 1
        except KeyError:  # a snapshot from before the drop has no sample for it yet
            return None
        return samples if ok else None

    samples = wait_for(settled, timeout=60, message="a snapshot taken after the last job")
    files = list(done.values()) + list(failed.values())

    # Jobs per state, and the totals, against the folders.
    for state, count in (("pending", 0), ("claimed", 0), ("done", len(done)),
                         ("failed", len(failed))):
        assert value(samples, "ckptd_jobs", queue=Q, state=state) == count
    assert value(samples, "ckptd_jobs_delayed", queue=Q) == 0
    assert value(samples, "ckptd_jobs_total", queue=Q, outcome="succeeded") == len(done)
    assert value(samples, "ckptd_jobs_total", queue=Q, outcome="failed") == len(failed)
    assert value(samples, "ckptd_jobs_submitted_total", queue=Q) == N
    retries = sum(j["attempts"] - 1 for j in files)
    assert retries > 0 and value(samples, "ckptd_job_retries_total", queue=Q) == retries
    expired = sum(1 for j in files for h in j["history"] if h["outcome"] == "expired")
    assert value(samples, "ckptd_lease_expirations_total", queue=Q) == expired
    assert value(samples, "ckptd_stale_answers_total", queue=Q) == 0
    assert value(samples, "ckptd_workers", queue=Q) == 2
    assert value(samples, "ckptd_workers_connected") == 2
    assert value(samples, "ckptd_throughput_jobs_per_second", queue=Q) > 0
    for key, count in status["drops"].items():
        sock_name, reason = key.split(":", 1)
        assert value(samples, "ckptd_dropped_messages_total", socket=sock_name,
                     reason=reason) == count

    # Histograms: one lead and cycle time per done job, one dispatch per attempt.
    leads = [parse_iso(j["finished_at"]) - parse_iso(j["created"]) for j in done.values()]
    cycles = [parse_iso(j["finished_at"]) - parse_iso(j["history"][0]["claimed"])
              for j in done.values()]
    for name, values in (("ckptd_job_lead_time_seconds", leads),
                         ("ckptd_job_cycle_time_seconds", cycles)):
        assert value(samples, f"{name}_count", queue=Q) == len(done)
        assert abs(value(samples, f"{name}_sum", queue=Q) - sum(values)) < 1e-5 * len(values)
        cumulative, unsure = expected_buckets(values)
        for i, bound in enumerate(DURATION_BUCKETS):
            if i not in unsure:
                assert value(samples, f"{name}_bucket", queue=Q, le=repr(bound)) == \
                    cumulative[i], (name, bound)
        assert value(samples, f"{name}_bucket", queue=Q, le="+Inf") == len(done)
    assert value(samples, "ckptd_dispatch_latency_seconds_count", queue=Q) == \
        sum(j["attempts"] for j in files)

    # Per batch, against the batch field of the files.
    by_batch: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for j in files:
        if j.get("batch"):
            tally = by_batch[j["batch"]]
            tally["submitted"] += 1
            tally["succeeded" if j in done.values() else "failed"] += 1
            tally["retried"] += j["attempts"] - 1
    assert set(by_batch) == {"even", "odd"}
    for name, tally in by_batch.items():
        for event in ("submitted", "succeeded", "failed", "retried"):
            assert value(samples, "ckptd_batch_jobs_total", queue=Q, batch=name,
                         event=event) == tally[event], (name, event)
        assert value(samples, "ckptd_batch_lead_time_seconds_count", queue=Q,
                     batch=name) == tally["succeeded"]

    # Read-only: HEAD answers without a body, anything else is refused.
    code, _, body = fetch(port, "/metrics", "HEAD")
    assert code == 200 and body == b""
    assert fetch(port, "/metrics", "POST")[0] == 405

    # After a restart the counts per state and the ended totals are rebuilt from the
    # folders; what cannot be rebuilt starts again at zero, as its HELP text says.
    assert daemon.terminate() == 0
    daemon.start()
    samples, helps = wait_for(lambda: scrape(port), timeout=10)
    assert value(samples, "ckptd_jobs", queue=Q, state="done") == len(done)
    assert value(samples, "ckptd_jobs_total", queue=Q, outcome="succeeded") == len(done)
    assert value(samples, "ckptd_jobs_total", queue=Q, outcome="failed") == len(failed)
    assert value(samples, "ckptd_jobs_submitted_total", queue=Q) == 0
    assert value(samples, "ckptd_job_lead_time_seconds_count", queue=Q) == 0
    assert "not rebuilt from the store" in helps["ckptd_jobs_submitted"]
    assert "survives restarts" in helps["ckptd_jobs"]
