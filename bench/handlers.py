"""Job handlers used by the benchmarks."""

from __future__ import annotations

from typing import Any

from ckptd import Job


def noop(job: Job) -> Any:
    """Do nothing: the benchmark measures ckptd, not the work."""
    return None


def burn(job: Job) -> Any:
    """CPU-bound: spin until this thread has used payload["seconds"] of CPU; return when it
    started and ended (wall clock) and where it ran."""
    import os
    import time

    started = time.time()
    end = time.thread_time() + float(job.payload.get("seconds", 1.0))
    while time.thread_time() < end:
        pass
    return {"start": started, "end": time.time(), "pid": os.getpid()}


async def nap(job: Any) -> Any:
    """Wait payload["seconds"] on the event loop; return when it started and ended."""
    import asyncio
    import time

    started = time.time()
    await asyncio.sleep(float(job.payload.get("seconds", 0.5)))
    return {"start": started, "end": time.time()}


def logged(job: Job) -> Any:
    """Record each run (id, attempt, start time) with one O_APPEND write to $TEST_LOG, so that
    a crash campaign can count the jobs that ran twice; then do a moment's work."""
    import os
    import time

    line = f"run {job.queue} {job.id} {job.attempt} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["TEST_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    time.sleep(0.002)
    return None


def stamped(job: Job) -> Any:
    """Record when the handler started next to when the job was submitted (payload["at"]),
    with one O_APPEND write to $BENCH_LOG: the dispatch latency, submit -> handler."""
    import os
    import time

    line = f"{job.payload['at']:.6f} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return None


def done_at(job: Job) -> Any:
    """Do nothing but append the time it ran to $BENCH_STAMPS (one O_APPEND write): the
    scale benchmark reads when the first job was done."""
    import os
    import time

    fd = os.open(os.environ["BENCH_STAMPS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time()}\n".encode())
    finally:
        os.close(fd)
    return None


class CountingHook:
    """A hook of every kind that does almost nothing (bench/extras.py: the cost of one)."""

    def __init__(self) -> None:
        self.seen = 0

    def on_submit(self, submission: Any) -> None:
        submission.meta["tenant"] = "bench"

    def before(self, job: Any) -> None:
        self.seen += 1

    def after(self, job: Any, result: Any) -> None:
        self.seen += 1

    def on_error(self, job: Any, error: BaseException) -> None:
        self.seen += 1

    def on_retry(self, job: Any, error: BaseException) -> None:
        self.seen += 1
