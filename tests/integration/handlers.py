"""Job handlers that the integration tests run in real worker processes.

Each records what it did in the file named by $TEST_LOG (one line per event, written with a
single O_APPEND write so lines from several processes never mix), which is how tests count
executions and duplicates after killing things.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ckptd import Fail, Job


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


def retry_now(job: Job) -> Any:
    """Ask for another attempt at once (``Retry(delay=0)``) on the first payload["retries"]
    attempts, then succeed: many moves per job, back and forth between folders."""
    from ckptd import Retry

    record("run", job.queue, job.id, job.attempt)
    if job.attempt <= int(job.payload.get("retries", 0)):
        raise Retry("once more", delay=0)
    return {"attempt": job.attempt}
