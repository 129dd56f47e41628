"""Handlers and hooks of the tests of hooks, jobs' own logs, encryption and tracing, run in
real worker processes. They record what they did in $TEST_LOG (see :mod:`handlers`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ckptd import AsyncJob, Fail, Job
from ckptd.client.hooks import Hook, JobView, Submission

try:
    from handlers import record  # in a worker (tests/integration is on its path)
except ImportError:  # in the tests' own process
    from tests.integration.handlers import record

log = logging.getLogger("extras")


def _where() -> str:
    """The process and thread (or task) a hook or handler runs in."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return f"{os.getpid()}:{'task' if task is not None else 'thread'}"


def outcome(job: Job) -> Any:
    """Succeed, fail once (then succeed), or fail for good, as the payload says."""
    record("handler", job.id, job.attempt, _where(), job.meta.get("tenant", "-"))
    mode = job.payload.get("mode", "ok")
    if mode == "flaky" and job.attempt == 1:
        raise ValueError("flaky first attempt")
    if mode == "fail":
        raise Fail("failed for good")
    return {"attempt": job.attempt, "n": job.payload.get("n")}


async def outcome_async(job: AsyncJob) -> Any:
    """:func:`outcome` for the async pool (run as the task's own code)."""
    await asyncio.sleep(0)
    return outcome(job)  # type: ignore[arg-type]  # the fields it reads are the same


class Recorder(Hook):
    """Records every call, with where it runs."""

    def before(self, job: JobView) -> None:
        record("before", job.id, job.attempt, _where())

    def after(self, job: JobView, result: Any) -> None:
        record("after", job.id, job.attempt, _where(), result.get("attempt"))

    def on_error(self, job: JobView, error: BaseException) -> None:
        record("on_error", job.id, job.attempt, _where(), type(error).__name__)

    def on_retry(self, job: JobView, error: BaseException) -> None:
        record("on_retry", job.id, job.attempt, _where(), type(error).__name__)


class Broken(Hook):
    """Raises in every method: must change nothing."""

    def on_submit(self, submission: Submission) -> None:
        submission.meta["half"] = "done"
        raise RuntimeError("on_submit is broken")

    def before(self, job: JobView) -> None:
        raise RuntimeError("before is broken")

    def after(self, job: JobView, result: Any) -> None:
        raise RuntimeError("after is broken")

    def on_error(self, job: JobView, error: BaseException) -> None:
        raise RuntimeError("on_error is broken")

    def on_retry(self, job: JobView, error: BaseException) -> None:
        raise RuntimeError("on_retry is broken")


class Tenant(Hook):
    """Adds a field to every job submitted."""

    def on_submit(self, submission: Submission) -> None:
        submission.meta["tenant"] = "acme"


def chatty(job: Job) -> Any:
    """Log with job.log and logging, then (payload "block") wait to be killed on attempt 1."""
    job.log("attempt", job.attempt, "begins")
    log.info("a logging record of attempt %d", job.attempt)
    record("logged", job.id, job.attempt, os.getpid())
    if job.payload.get("block") and job.attempt == 1:
        time.sleep(600)
    if job.payload.get("ticks"):
        for n in range(int(job.payload["ticks"])):
            job.log("tick", n)
            time.sleep(float(job.payload.get("every", 0.2)))
    if job.payload.get("fail"):
        raise ValueError("chatty fails")
    return {"ok": job.attempt}


async def chatty_async(job: AsyncJob) -> Any:
    """:func:`chatty` for the async pool (no blocking)."""
    job.log("attempt", job.attempt, "begins")
    log.info("a logging record of attempt %d", job.attempt)
    await asyncio.to_thread(log.info, "a record from a thread of asyncio.to_thread")
    return {"ok": job.attempt}


def secret(job: Job) -> Any:
    """Checkpoint and return what the payload holds (the marker), logging none of it."""
    if job.state is None:
        job.checkpoint({"seen": job.payload["marker"]})
    return {"marker": job.payload["marker"], "state": job.state}


def secret_or_fail(job: Job) -> Any:
    """:func:`secret`, failing for good after its checkpoint when the payload says so."""
    result = secret(job)
    if job.payload.get("fail"):
        raise Fail("failed after its checkpoint")
    if job.payload.get("pad"):
        result["pad"] = job.payload["pad"]
    return result


def otel_modules(job: Job) -> Any:
    """Which OpenTelemetry modules the worker's process has loaded."""
    import sys

    return sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
