"""Job handlers that the integration tests run in real worker processes.

Each records what it did in the file named by $TEST_LOG (one line per event, written with a
single O_APPEND write so lines from several processes never mix), which is how tests count
executions and duplicates after killing things.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from ckptd import AsyncJob, Fail, Job, TimeLimit


def record(*fields: Any) -> None:
    path = os.environ.get("TEST_LOG")
    if not path:
        return
    line = (" ".join(str(f) for f in fields) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def echo(job: Job) -> Any:
    """Return the payload; log each run."""
    record("run", job.queue, job.id, job.attempt, os.environ.get("WORKER_TAG", ""))
    return {"echo": job.payload, "attempt": job.attempt}


def sleepy(job: Job) -> Any:
    """Sleep $SLEEP seconds (per worker), then return; log start and end with times."""
    record("start", job.queue, job.id, job.attempt, os.environ.get("WORKER_TAG", ""),
           f"{time.time():.6f}")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    record("end", job.queue, job.id, job.attempt, os.environ.get("WORKER_TAG", ""))
    return {"slept": float(os.environ.get("SLEEP", "0"))}


def steps(job: Job) -> Any:
    """Do payload["steps"] steps of payload["sleep"] s, checkpointing after each one."""
    done = int(job.state or 0)
    record("resume", job.queue, job.id, job.attempt, done)
    total = int(job.payload["steps"])
    for step in range(done, total):
        time.sleep(float(job.payload.get("sleep", 0)))
        record("step", job.queue, job.id, job.attempt, step)
        job.checkpoint(step + 1)
        job.progress(step + 1, total)
    return {"steps": total}


def poison(job: Job) -> Any:
    """Fail every time the payload says so; else return the payload."""
    record("run", job.queue, job.id, job.attempt)
    if isinstance(job.payload, dict) and job.payload.get("poison"):
        raise ValueError(f"poisoned payload {job.payload}")
    return job.payload


def fail_for_good(job: Job) -> Any:
    """Refuse the job without using its other attempts."""
    record("run", job.queue, job.id, job.attempt)
    raise Fail("this job can never succeed")


def flaky(job: Job) -> Any:
    """Fail the first payload["fail"] attempts, then succeed."""
    record("run", job.queue, job.id, job.attempt)
    if job.attempt <= int(job.payload.get("fail", 1)):
        raise RuntimeError(f"flaky failure on attempt {job.attempt}")
    return {"attempt": job.attempt}


def noop(job: Job) -> Any:
    """Return nothing, record the run."""
    record("run", job.queue, job.id, job.attempt)
    return None


def count_records(job: Job) -> Any:
    """Sum the numbers of a submit-file chunk, checkpointing per record; log each record."""
    records = job.records()
    state = job.state or {"next": 0, "total": 0}
    total = int(state["total"])
    for position in range(int(state["next"]), len(records)):
        record("record", job.queue, job.id, job.attempt, job.payload["first"] + position)
        total += int(str(records[position]).split()[-1])
        time.sleep(float(os.environ.get("RECORD_SLEEP", "0")))
        if os.environ.get("CHECKPOINT_EVERY_RECORD"):
            job.checkpoint({"next": position + 1, "total": total})
    return {"sum": total, "count": len(records)}


def reduce_sum(job: Job) -> Any:
    """The reduce of a count_records batch: add up the results of its done jobs."""
    record("reduce", job.queue, job.id, job.attempt, job.payload["batch"])
    total = count = 0
    for member, state in job.payload["jobs"]:
        if state == "done":
            result = job.result_of(job.payload["queue"], member)
            total += result["sum"]
            count += result["count"]
    return {"sum": total, "count": count, "jobs": len(job.payload["jobs"])}


def stage(job: Job) -> Any:
    """One stage of a pipeline: add this stage's name to the payload's path."""
    record("stage", job.queue, job.id, job.attempt)
    payload = job.payload if isinstance(job.payload, dict) else {"path": []}
    return {"path": [*payload.get("path", []), job.queue], "n": payload.get("n")}


# -- time limits, cancels, pools (tests/integration/test_limits.py, test_cancel.py, ...) ----

def _nap_until(end: float) -> None:
    """Sleep in short naps (Python code runs between them, so a stop can land)."""
    while time.monotonic() < end:
        time.sleep(0.02)


def sleep_after_checkpoint(job: Job) -> Any:
    """Attempt 1: checkpoint, then sleep payload["sleep"] s (payload["style"]: "block" is one
    time.sleep, "naps" short ones), and on TimeLimit save another checkpoint before it
    stops; a later attempt returns what it resumed from."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}",
           json.dumps(job.state))
    if job.state is not None:
        return {"resumed": job.state}
    job.checkpoint({"step": 1})
    seconds = float(job.payload.get("sleep", 10))
    try:
        if job.payload.get("style") == "naps":
            _nap_until(time.monotonic() + seconds)
        else:
            time.sleep(seconds)
    except BaseException as exc:
        record("stopped", job.queue, job.id, job.attempt, type(exc).__name__,
               f"{time.time():.6f}")
        if isinstance(exc, TimeLimit):
            job.checkpoint({"step": 2})  # in the grace period: the next attempt starts here
        raise
    record("slept", job.queue, job.id, job.attempt, f"{time.time():.6f}")
    return {"slept": seconds}


async def async_sleep_after_checkpoint(job: AsyncJob) -> Any:
    """sleep_after_checkpoint for the async pool."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}",
           json.dumps(job.state))
    if job.state is not None:
        return {"resumed": job.state}
    await job.checkpoint({"step": 1})
    try:
        await asyncio.sleep(float(job.payload.get("sleep", 10)))
    except BaseException as exc:
        record("stopped", job.queue, job.id, job.attempt, type(exc).__name__,
               f"{time.time():.6f}")
        if isinstance(exc, asyncio.CancelledError):
            await job.checkpoint({"step": 2})  # a time limit cancels the task
        raise
    return {"slept": True}


def spin(job: Job) -> Any:
    """A pure-Python busy loop that never checkpoints; payload["stubborn"] swallows every
    stop (so only a kill ends it). Records its pid."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}")
    end = time.monotonic() + float(job.payload.get("seconds", 60))
    while time.monotonic() < end:
        try:
            while time.monotonic() < end:
                pass
        except BaseException as exc:
            record("stop", job.queue, job.id, job.attempt, type(exc).__name__)
            if not job.payload.get("stubborn"):
                raise
    return {"spun": True}


def pid(job: Job) -> Any:
    """Record this process's pid; sleep payload["sleep"] s."""
    record("pid", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}")
    time.sleep(float((job.payload or {}).get("sleep", 0)))
    return {"pid": os.getpid()}


_HOARD: list[bytes] = []


def hoard(job: Job) -> Any:
    """Keep payload["mib"] MiB more for good (a leak); record the pid."""
    record("pid", job.queue, job.id, job.attempt, os.getpid())
    _HOARD.append(os.urandom(1024) * (1024 * int(job.payload.get("mib", 40))))
    return {"held_mib": len(_HOARD) * int(job.payload.get("mib", 40))}


def tick(job: Job) -> Any:
    """Checkpoint every payload["every"] s (0.1) for payload["seconds"] s (60); record its
    start, each stop it sees, and when it ended."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}")
    every = float(job.payload.get("every", 0.1))
    end = time.monotonic() + float(job.payload.get("seconds", 60))
    n = 0
    try:
        while time.monotonic() < end:
            time.sleep(every)
            n += 1
            job.checkpoint(n)
    except BaseException as exc:
        record("stopped", job.queue, job.id, job.attempt, type(exc).__name__,
               f"{time.time():.6f}", job.cancelled)
        raise
    return {"ticks": n}


def deaf(job: Job) -> Any:
    """Never checkpoints nor reports progress: naps (threads) or one long sleep
    (payload["style"] == "block") for payload["seconds"] s."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}")
    seconds = float(job.payload.get("seconds", 60))
    try:
        if job.payload.get("style") == "block":
            time.sleep(seconds)
        else:
            _nap_until(time.monotonic() + seconds)
    except BaseException as exc:
        record("stopped", job.queue, job.id, job.attempt, type(exc).__name__,
               f"{time.time():.6f}")
        raise
    return {"slept": seconds}


async def async_nap(job: AsyncJob) -> Any:
    """await asyncio.sleep(payload["sleep"]); record start and end times."""
    record("start", job.queue, job.id, job.attempt, f"{time.time():.6f}")
    await asyncio.sleep(float(job.payload.get("sleep", 0.5)))
    record("end", job.queue, job.id, job.attempt, f"{time.time():.6f}")
    return {"slept": job.payload.get("sleep", 0.5)}


async def async_tick(job: AsyncJob) -> Any:
    """tick for the async pool: await a checkpoint every payload["every"] s (0.1) for
    payload["seconds"] s (60); record its start, the stop it sees, and when it ended."""
    record("start", job.queue, job.id, job.attempt, os.getpid(), f"{time.time():.6f}")
    every = float(job.payload.get("every", 0.1))
    end = time.monotonic() + float(job.payload.get("seconds", 60))
    n = 0
    try:
        while time.monotonic() < end:
            await asyncio.sleep(every)
            n += 1
            await job.checkpoint(n)
    except BaseException as exc:
        record("stopped", job.queue, job.id, job.attempt, type(exc).__name__,
               f"{time.time():.6f}", job.cancelled)
        raise
    return {"ticks": n}


async def async_steps(job: AsyncJob) -> Any:
    """steps for the async pool: payload["steps"] steps of payload["sleep"] s, each one
    checkpointed with await."""
    done = int(job.state or 0)
    record("resume", job.queue, job.id, job.attempt, done)
    total = int(job.payload["steps"])
    for step in range(done, total):
        await asyncio.sleep(float(job.payload.get("sleep", 0)))
        record("step", job.queue, job.id, job.attempt, step)
        await job.checkpoint(step + 1)
        job.progress(step + 1, total)
    return {"steps": total}


def retry_now(job: Job) -> Any:
    """Ask for another attempt at once (``Retry(delay=0)``) on the first payload["retries"]
    attempts, then succeed: many moves per job, back and forth between folders."""
    from ckptd import Retry

    record("run", job.queue, job.id, job.attempt)
    if job.attempt <= int(job.payload.get("retries", 0)):
        raise Retry("once more", delay=0)
    return {"attempt": job.attempt}
