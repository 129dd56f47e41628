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
