"""Lead time, cycle time, dispatch latency and the status figures, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ckptd.core.states import State
from ckptd.daemon.controls.priorities import ReadyLines
from ckptd.daemon.engine.figures import build_snapshot
from ckptd.daemon.telemetry.exposition import families
from ckptd.daemon.telemetry.metrics import (
    DURATION_BUCKETS,
    Histogram,
    RateWindow,
    quantiles,
)
from tests.harness import Harness


def fail(h: Harness, w: bytes, job_id: str, attempt: int, **more: Any) -> None:
    h.answer(w, "failed", {"queue": "q", "id": job_id, "attempt": attempt, "error": "boom",
                           "type": "ValueError", "retry": True, **more})


def test_lead_and_cycle_time_come_from_known_timestamps(harness: Harness) -> None:
    h = harness
    t0 = h.now
    job_id = h.submit(batch="nightly")  # created at t0
    h.tick(5)
    w = h.hello()
    [job] = h.dispatch()  # first claim at t0 + 5: waited 5 s in pending
    assert job["attempt"] == 1
    h.tick(2)
    fail(h, w, job_id, 1, delay=10)  # retry not before t0 + 17
    h.tick(10.5)  # t0 + 17.5: due since 0.5 s
    [job] = h.dispatch()
    assert job["attempt"] == 2
    h.tick(3)
    h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 2, "result": 1})  # t0 + 20.5
    assert h.now == t0 + 20.5

    metrics = h.engine.queues["q"].metrics
    assert metrics.lead.count == 1 and metrics.lead.sum == pytest.approx(20.5, abs=1e-6)
    # Cycle time runs from the FIRST claim (t0 + 5), not from the last one (t0 + 17.5).
    assert metrics.cycle.count == 1 and metrics.cycle.sum == pytest.approx(15.5, abs=1e-6)
    assert metrics.dispatch.count == 2
    assert metrics.dispatch.sum == pytest.approx(5.5, abs=1e-6)  # 5 s, then 0.5 s
    batch = metrics.batches["nightly"]
    assert (batch.submitted, batch.succeeded, batch.failed, batch.retried) == (1, 1, 0, 1)
    assert batch.lead.sum == pytest.approx(20.5, abs=1e-6)

    figures = h.operators.status("q", h.now)["queues"]["q"]
    assert figures["lead_p50_s"] == pytest.approx(20.5, abs=1e-6)
    assert figures["cycle_p95_s"] == pytest.approx(15.5, abs=1e-6)
    assert figures["throughput_1m"] == pytest.approx(1 / 60)
    assert figures["succeeded"] == 1 and figures["retried"] == 1

    # The same numbers in the Prometheus exposition: 20.5 s falls in the le=30 bucket.
    snap = build_snapshot(h.engine, h.now, started_at=t0, drops={})
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families(snap) for s in f.samples}
    lead = "ckptd_job_lead_time_seconds"
    assert samples[(f"{lead}_bucket", (("le", "10.0"), ("queue", "q")))] == 0
    assert samples[(f"{lead}_bucket", (("le", "30.0"), ("queue", "q")))] == 1
    assert samples[(f"{lead}_count", (("queue", "q"),))] == 1
    assert samples[("ckptd_jobs_total", (("outcome", "succeeded"), ("queue", "q")))] == 1


def test_throughput_counts_the_last_minute_only(harness: Harness) -> None:
    h = harness
    ids = [h.submit() for _ in range(3)]
    w = h.hello(slots=3)
    h.dispatch()
    for job_id in ids[:2]:
        h.answer(w, "done", {"queue": "q", "id": job_id, "attempt": 1, "result": None})
    h.tick(5)
    h.answer(w, "failed", {"queue": "q", "id": ids[2], "attempt": 1, "error": "no",
                           "retry": False})
    h.tick(25)
    assert h.operators.status("q", h.now)["queues"]["q"]["throughput_1m"] == pytest.approx(3 / 60)
    h.tick(32)  # the first two ended 62 s ago, the third 57 s ago
    assert h.operators.status("q", h.now)["queues"]["q"]["throughput_1m"] == pytest.approx(1 / 60)
    [note] = h.engine.queues["q"].metrics.failures
    assert note.id == ids[2] and note.message == "no"


def test_delayed_count_follows_delays_cancels_and_promotions(harness: Harness) -> None:
    h = harness

    def delayed() -> int:
        return int(h.operators.status("q", h.now)["queues"]["q"]["delayed"])

    later = h.submit(delay=30)
    soon = h.submit(delay=5)
    assert delayed() == 2
    h.operators.cancel("q", later, h.now, h.replies.append)
    h.commit()
    assert delayed() == 1, "a cancelled delayed job is no longer counted"
    h.tick(6)
    assert delayed() == 0, "due jobs are no longer delayed"
    w = h.hello()
    h.dispatch()
    fail(h, w, soon, 1)  # backoff: delayed again
    assert delayed() == 1 and h.where(soon) == [State.PENDING]


def test_oldest_pending_age_skips_jobs_that_left(harness: Harness) -> None:
    h = harness
    first = h.submit()
    h.tick(10)
    h.submit()
    h.tick(20)
    status = h.operators.status("q", h.now)["queues"]["q"]
    assert status["oldest_pending_age_s"] == pytest.approx(30, abs=1e-3)
    h.operators.cancel("q", first, h.now, h.replies.append)
    h.commit()
    status = h.operators.status("q", h.now)["queues"]["q"]
    assert status["oldest_pending_age_s"] == pytest.approx(20, abs=1e-3)


class _NoScan(list[Any]):
    """A container whose iteration fails the test: status must not walk the jobs."""

    def __iter__(self) -> Any:
        raise AssertionError("status iterated over jobs")


class _NoScanSet(set[str]):
    def __iter__(self) -> Any:
        raise AssertionError("status iterated over the pending set")


class _HeadOnlyLines(ReadyLines):
    """A ready line that may be read at its head only (the next job to dispatch)."""

    def __iter__(self) -> Any:
        for position, job_id in enumerate(ReadyLines.__iter__(self)):
            if position > 1:
                raise AssertionError("status iterated over the ready line")
            yield job_id


def test_status_and_snapshot_never_walk_the_jobs(harness: Harness) -> None:
    h = harness
    for n in range(50):
        h.submit(delay=100 if n % 2 else None)
    index = h.engine.queues["q"]
    index.delayed = _NoScan(index.delayed)
    index.pending = _NoScanSet(index.pending)
    lines = _HeadOnlyLines()
    lines.extend(list(ReadyLines.__iter__(index.ready)))
    index.ready = lines

    def no_listing(*args: Any) -> Any:
        raise AssertionError("status listed the store")

    h.store.ids = no_listing  # type: ignore[method-assign]
    h.store.count = no_listing  # type: ignore[method-assign]
    status = h.operators.status(None, h.now)["queues"]["q"]
    assert status["pending"] == 50 and status["delayed"] == 25
    assert status["oldest_pending_age_s"] is not None
    build_snapshot(h.engine, h.now, started_at=h.now, drops={})


def test_histogram_buckets_follow_prometheus_le() -> None:
    hist = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 9.0):
        hist.observe(v)
    frozen = hist.frozen()
    assert frozen.cumulative() == [(1.0, 2), (2.0, 4), (float("inf"), 5)]
    assert frozen.sum == 14.0 and frozen.count == 5
    assert frozen.quantile(0.5) is not None and 1.0 <= frozen.quantile(0.5) <= 2.0  # type: ignore[operator]
    assert Histogram().frozen().quantile(0.5) is None
    assert len(Histogram().counts) == len(DURATION_BUCKETS) + 1


def test_rate_window_and_quantiles() -> None:
    window = RateWindow()
    for t in (100.0, 100.5, 130.2, 161.0):
        window.add(t)
    assert window.count(161.0) == 2  # 100 and 100.5 are more than 60 s back
    assert window.count(161.0, window=120) == 4
    assert quantiles([], 0.5) is None
    assert quantiles(range(1, 101), 0.5, 0.95) == (50, 95)


def test_exposition_of_an_empty_engine_parses(harness: Harness) -> None:
    h = harness
    h.submit()
    snap = build_snapshot(h.engine, h.now, started_at=h.now, drops={"control:bad_frames": 2})
    from prometheus_client import CollectorRegistry, generate_latest

    class One:
        def collect(self) -> Any:
            return families(snap, {("GET", "200"): 3})

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["ckptd_dropped_messages"].samples[0].labels == {
        "socket": "control", "reason": "bad_frames"}
    assert "since the daemon started" in parsed["ckptd_jobs_submitted"].documentation
    assert "survives restarts" in parsed["ckptd_jobs"].documentation
