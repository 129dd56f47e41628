"""A queue's keys as status, explain, the dashboard and /metrics show them.

``keys`` in a queue's controls: whether the queue shares fairly, the limits of every key,
the keys with limits of their own, how many keys have jobs ready or running, the busiest
:data:`~ckptd.daemon.telemetry.key_metrics.TOP_KEYS` of them (running and ready jobs, their
limits, and what holds them back), and the claims per key with bounded labels. O(keys) for
a queue whose jobs have keys (the busiest are picked from all), nothing for the others.
"""

from __future__ import annotations

import heapq

from ckptd.daemon.engine.index import Index, QueueIndex
from ckptd.daemon.telemetry.key_metrics import TOP_KEYS


def _uses_keys(ix: Index, queue: str, index: QueueIndex) -> bool:
    q = ix.settings.queue(queue)
    return bool(index.running_keys or index.ready.by_key or q.key or q.keys or q.fair
                or queue in ix.key_gate.overrides or index.key_claims.other
                or index.key_claims.labelled)


def key_row(ix: Index, index: QueueIndex, key: str, ready: int | None = None
            ) -> dict[str, object]:  # a KeyRow (answer_types)
    """What holds one key now: its running and ready jobs, its limits, and what it waits
    for (``held``: "max_running" at its limit, "rate" out of tokens, None)."""
    limits = ix.key_gate.limits(index.name, key)
    running = index.running_keys.get(key, 0)
    if ready is None:
        lines = index.ready.by_key.get(key)
        ready = len(lines) if lines is not None else 0
    held = None
    if limits.max_running is not None and running >= limits.max_running:
        held = "max_running"
    elif key in index.ready.parked():
        held = "rate"
    return {"key": key, "running": running, "ready": ready, **limits.as_dict(), "held": held}


def keys_view(ix: Index, queue: str) -> dict[str, object] | None:
    """The ``keys`` part of a queue's controls (None for a queue that uses none)."""
    index = ix.queues.get(queue)
    if index is None or not _uses_keys(ix, queue, index):
        return None
    view = ix.key_gate.view(queue)
    ready = index.ready.ready_by_key()
    running = index.running_keys
    keys = set(ready) | set(running)
    busiest = heapq.nlargest(TOP_KEYS, keys, key=lambda k: (running.get(k, 0) + ready.get(k, 0),
                                                           k))
    index.key_claims.promote(busiest)
    view["count"] = len(keys)
    view["running"] = sum(running.values())
    view["ready"] = sum(ready.values())
    view["busiest"] = [key_row(ix, index, key, ready.get(key, 0)) for key in busiest]
    view["claims"] = index.key_claims.as_dict()
    return view


def job_key_view(ix: Index, index: QueueIndex, job_id: str) -> dict[str, object] | None:
    """The key of a pending job and what holds it (None for a job without a key)."""
    key = index.ready.key_of(job_id)
    if not key:
        return None
    row = key_row(ix, index, key)
    row["fair"] = ix.key_gate.fair(index.name)
    return row
