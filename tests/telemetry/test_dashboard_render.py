"""The dashboard's HTML without a browser: user data is escaped, the hour's charts fill in."""

from __future__ import annotations

from ckptd.core.explain import explain
from ckptd.core.states import State
from ckptd.daemon.engine.figures import build_snapshot
from ckptd.daemon.telemetry.dashboard import render_index, render_queue
from ckptd.daemon.telemetry.page_parts import Viewer
from ckptd.daemon.telemetry.pages_jobs import render_job
from tests.harness import Harness

HOSTILE = '<img src=x onerror="alert(1)">'


def test_user_data_is_escaped_and_minutes_are_charted(harness: Harness) -> None:
    h = harness
    start = h.now
    h.engine.index.queue("q")  # the daemon's snapshots see a queue within its first minute
    snap = build_snapshot(h.engine, h.now, started_at=start, drops={})  # opens the minute
    w = h.hello(slots=4)
    for _ in range(3):
        ids = [h.submit(batch="b-1"), h.submit(batch="b-1")]
        h.dispatch()
        h.answer(w, "done", {"queue": "q", "id": ids[0], "attempt": 1, "result": None})
        h.answer(w, "failed", {"queue": "q", "id": ids[1], "attempt": 1, "error": HOSTILE,
                               "type": "ValueError", "traceback": f"Traceback\n{HOSTILE}",
                               "retry": False})
        h.tick(60)
        snap = build_snapshot(h.engine, h.now, started_at=start, drops={"control:x": 1})
    [q] = snap.queues
    closed = [m for m in q.minutes if m.succeeded or m.failed]
    assert [(m.succeeded, m.failed) for m in closed] == [(1, 1)] * 3
    viewer = Viewer(csrf="t")
    page = render_index(snap, viewer)
    assert page.count("<rect") >= 3 and "control:x" in page
    queue_page = render_queue(snap, "q", viewer)
    assert "<img" not in queue_page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in queue_page
    assert queue_page.count("<rect") >= 3 and "b-1" in queue_page
    failed_id = q.failures[-1].id
    info = {"state": "failed", "path": f"/s/q/failed/{failed_id}.json",
            "job": h.file(State.FAILED, failed_id), "checkpoint": None}
    job_page = render_job("q", failed_id, info, explain(info, h.now), viewer)
    assert "<img" not in job_page and "is FAILED" in job_page
    assert render_index(None, viewer).startswith("<!DOCTYPE html>")


def test_idle_queues_draw_no_chart_and_counts_of_zero_are_not_red() -> None:
    h = Harness()
    for name in ("busy", "idle-1", "idle-2"):
        h.engine.index.queue(name)
    w = h.hello(slots=2, queues=("busy",))
    job = h.submit(queue="busy")
    h.dispatch()
    h.answer(w, "done", {"queue": "busy", "id": job, "attempt": 1, "result": None})
    snap = build_snapshot(h.engine, h.now, started_at=h.now, drops={})
    page = render_index(snap, Viewer(csrf="t"))
    assert page.count('<svg class="chart"') == 2  # the busy queue's two charts, no more
    assert 'class="n failed"' not in page  # every failed count is 0: none is red
    assert 'data-queue="idle-1" data-state="failed">0<' in page
