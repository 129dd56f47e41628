"""What a queue's operator controls look like from outside: status, explain, metrics.

One dict per queue, built from the engine (nothing here changes it, and nothing walks the
queue's jobs but for one job's place in line): ``paused`` (reason, since), ``limits``
(max_running, rate, where they come from, running, throttled), ``retention`` (what is kept,
how long, what the sweeps did), ``unique``, ``priorities`` (jobs per level, aged), ``keys``
(:mod:`~ckptd.daemon.engine.keys_view`).
"""

from __future__ import annotations

from ckptd.core.queue_controls import aging_of
from ckptd.core.unique_windows import uniqueness_of
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.keys_view import job_key_view, keys_view


def controls_view(engine: Engine, queue: str, job_id: str | None = None) -> dict[str, object]:
    """The controls of ``queue`` (and with ``job_id``, that pending job's place in line)."""
    settings = engine.settings
    index = engine.queues.get(queue)
    running = len(index.claimed) if index is not None else 0
    view = engine.index.gate.view(queue, running)
    view["retention"] = engine.sweeper.view(queue)
    unique = uniqueness_of(settings, queue)
    view["unique"] = None if unique is None else {
        **unique.as_dict(), "hits": engine.open_jobs.hits.get(queue, 0),
        "debounced": engine.debounce.counts.get(queue, 0)}
    view["keys"] = keys_view(engine.index, queue)
    ready = index.ready if index is not None else None
    view["priorities"] = {
        "levels": {str(k): v for k, v in ready.levels().items()} if ready else {},
        "aged": ready.aged if ready else 0,
        "aging_s": aging_of(settings, queue)}
    if job_id is not None and index is not None and job_id in index.pending \
            and ready is not None:
        ahead = 0
        for other in ready:
            if other == job_id:
                break
            ahead += 1
        view["job"] = {"priority": ready.priority(job_id), "ahead": ahead,
                       "due": job_id not in index.delayed_at,
                       "key": job_key_view(engine.index, index, job_id)}
    return view
