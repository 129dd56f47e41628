"""Handlers of work that waits, run by real worker processes in the tests.

Each writes one line per event into $TEST_LOG (one O_APPEND write per line), so a test can
count runs, wakes and duplicates after killing things.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from handlers import record

from ckptd import AsyncJob, Fail, Job, Park


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def node(job: Job) -> Any:
    """A node of a graph: log the run (with its parents' ends), fail when asked."""
    record("run", job.queue, job.id, job.attempt, f"{time.time():.6f}",
           json.dumps(job.parents, sort_keys=True, separators=(",", ":")))
    if isinstance(job.payload, dict) and job.payload.get("fail"):
        raise Fail("asked to fail")
    return {"id": job.id}


def grower(job: Job) -> Any:
    """A job of a batch that adds ``payload["add"]`` jobs to it while it runs (children)."""
    record("run", job.queue, job.id, job.attempt)
    for n in range(int((job.payload or {}).get("add", 0))):
        job.spawn(job.queue, {"add": 0}, key=f"k{n}")
    return {"id": job.id}


def callback(job: Job) -> Any:
    """A batch's callback: log how many outcomes it got, and of what."""
    payload = job.payload
    states: dict[str, int] = {}
    for _ref, state in payload["outcomes"]:
        states[state] = states.get(state, 0) + 1
    record("callback", job.queue, job.id, payload["total"],
           json.dumps(states, sort_keys=True, separators=(",", ":")),
           f"{time.time():.6f}")
    return states


def parker(job: Job) -> Any:
    """Park for a signal (first run), then finish with what woke it."""
    if job.woken is None:
        job.checkpoint({"stage": "parked", "attempt": job.attempt})
        record("park", job.queue, job.id, job.attempt, f"{time.time():.6f}")
        payload = job.payload or {}
        raise Park(signal=payload.get("signal", "go"), timeout=payload.get("timeout"))
    record("woke", job.queue, job.id, job.attempt, job.woken.get("reason"),
           _compact(job.signals), _compact(job.state),
           f"{time.time():.6f}")
    return {"reason": job.woken.get("reason"), "signals": job.signals}


async def async_parker(job: AsyncJob) -> Any:
    """:func:`parker` for the async pool."""
    if job.woken is None:
        await job.checkpoint({"stage": "parked", "attempt": job.attempt})
        record("park", job.queue, job.id, job.attempt, f"{time.time():.6f}")
        raise Park(signal=(job.payload or {}).get("signal", "go"))
    record("woke", job.queue, job.id, job.attempt, job.woken.get("reason"),
           _compact(job.signals), _compact(job.state),
           f"{time.time():.6f}")
    return {"reason": job.woken.get("reason")}


def spawn_and_wait(job: Job) -> Any:
    """Spawn ``payload["n"]`` children, park until they have ended, then sum their ends."""
    if job.woken is None:
        for n in range(int(job.payload["n"])):
            job.spawn(job.payload.get("queue", job.queue), {"n": n}, key=f"c{n}")
        raise Park(children=True)
    record("joined", job.queue, job.id, _compact(job.children))
    return {"children": job.children}


def compensate(job: Job) -> Any:
    """An on_failure job: log what failed and what it had done."""
    payload = job.payload
    record("compensate", job.queue, job.id, payload["queue"], payload["id"],
           _compact(payload.get("checkpoint")),
           (payload.get("error") or {}).get("type"))
    return {"undone": payload["id"]}


def fail_after_checkpoint(job: Job) -> Any:
    """Checkpoint, then fail for good."""
    job.checkpoint({"done": ["reserve-stock"]})
    record("run", job.queue, job.id, job.attempt)
    raise Fail("the supplier refused")


def slow_node(job: Job) -> Any:
    """Log the start (with the time), sleep $SLEEP seconds, return: a kill lands mid-run."""
    record("start", job.queue, job.id, job.attempt, f"{time.time():.6f}")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    return {"id": job.id}
