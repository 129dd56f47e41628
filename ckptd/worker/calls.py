"""What a handler's Job calls, carried out for it in the worker (the
:class:`~ckptd.worker.job.JobHost`): checkpoints, which wait for the daemon's confirmation,
progress, reads and writes of job data, and children spawned.

A checkpoint is kept until the daemon confirms it (:mod:`ckptd.worker.unconfirmed`), so one
sent to a daemon that died is sent again when the worker reconnects, and the handler's wait
ends then instead of at its timeout. While it waits, a stop asked of the attempt (a time
limit, a cancel) is raised in the handler at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ckptd.client.client import Client
from ckptd.core.errors import CkptdError, DaemonUnavailable, LeaseLost
from ckptd.core.waits import child_id
from ckptd.wire.messages import Saved
from ckptd.worker.data import JobData
from ckptd.worker.job import AsyncJob, Job, SpawnOptions
from ckptd.worker.unconfirmed import Unconfirmed

CHECK_EVERY = 0.05  # how often a waiting checkpoint looks whether its attempt must stop


class JobCalls:
    """The JobHost of one worker's jobs."""

    def __init__(self, unconfirmed: Unconfirmed, send: Callable[[bytes, dict[str, object]], None],
                 data: JobData) -> None:
        self.unconfirmed = unconfirmed
        self.send = send  # queue a message for the worker's I/O thread (progress, ...)
        self.data = data
        self._clients = threading.local()  # a client per handler thread, for spawns
        self._made: list[Client] = []
        self._lock = threading.Lock()

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        """Bytes of a batch's source file (from the store, or through the daemon)."""
        return self.data.source_range(queue, batch, start, end)

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        """Write an output file (into the store, or through the daemon)."""
        return self.data.write_output(queue, name, data)

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of a done job (from the store, or through the daemon)."""
        return self.data.result_of(queue, job_id)

    def spawn(self, parent: str, batch: str | None, queue: str, payload: object, key: str,
              options: SpawnOptions) -> str:
        """Create the child ``<parent>.<key>`` through the daemon (which sends it on to the
        leader of ``queue``): create-only, so a second spawn of one key finds the first
        child. Returns once the child is durable: a parent's answer always comes after its
        children exist, so no batch or wait can end before they are counted."""
        client = getattr(self._clients, "client", None)
        if client is None:
            client = self._clients.client = Client(self.data.endpoints, timeout=60.0,
                                                   context=self.data.ctx,
                                                   curve=self.data.curve, direct=False)
            with self._lock:
                self._made.append(client)
        known = {"after", "on_parent_failure", "max_attempts", "delay", "priority",
                 "time_limit"}
        unknown = set(options) - known
        if unknown:
            raise CkptdError(f"spawn() takes {', '.join(sorted(known))}; not "
                             f"{', '.join(sorted(unknown))}")
        answer = client.submit_job(queue, payload, job_id=child_id(parent, key),
                                   if_exists="return", batch=batch, **options)
        return answer.id

    def close(self) -> None:
        """Close the spawn clients (the handlers have ended). Idempotent."""
        with self._lock:
            made, self._made = self._made, []
        for client in made:
            client.close()

    @staticmethod
    def _body(job: Job | AsyncJob, seq: int, state: object) -> dict[str, object]:
        return {"queue": job.queue, "id": job.id, "attempt": job.attempt, "seq": seq,
                "state": state}

    def checkpoint(self, job: Job, seq: int, state: object, timeout: float) -> None:
        """Send a checkpoint and wait until the daemon says it is durable; raise the
        attempt's stop if it is asked to stop meanwhile."""
        done = threading.Event()
        box: list[Saved] = []

        def confirmed(reply: Saved) -> None:
            box.append(reply)
            done.set()

        body = self._body(job, seq, state)
        self.unconfirmed.add_checkpoint(body, confirmed, time.monotonic())
        self.send(b"checkpoint", body)
        deadline = time.monotonic() + timeout
        try:
            while not done.wait(min(CHECK_EVERY, max(0.0, deadline - time.monotonic()))):
                job._flags.check()
                if time.monotonic() >= deadline:
                    raise DaemonUnavailable(f"checkpoint of {job.queue}/{job.id} not confirmed "
                                            f"within {timeout:g}s")
        finally:
            if not done.is_set():
                self.unconfirmed.forget_checkpoint(job.queue, job.id, seq)
        _check_saved(job, box[0])

    async def checkpoint_async(self, job: AsyncJob, seq: int, state: object,
                               timeout: float) -> None:
        """:meth:`checkpoint` for an async handler: the event loop runs on while it waits
        (the confirmation comes from the I/O thread through ``call_soon_threadsafe``)."""
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Saved] = loop.create_future()

        def settle(reply: Saved) -> None:
            if not future.done():
                future.set_result(reply)

        def confirmed(reply: Saved) -> None:
            loop.call_soon_threadsafe(settle, reply)

        body = self._body(job, seq, state)
        self.unconfirmed.add_checkpoint(body, confirmed, time.monotonic())
        self.send(b"checkpoint", body)
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise DaemonUnavailable(f"checkpoint of {job.queue}/{job.id} not confirmed "
                                    f"within {timeout:g}s") from None
        finally:
            if not future.done():
                self.unconfirmed.forget_checkpoint(job.queue, job.id, seq)
        _check_saved(job, reply)


def _check_saved(job: Job | AsyncJob, reply: Saved) -> None:
    if not reply.ok:
        job._flags.check()  # refused because the job was cancelled: say that
        raise LeaseLost(f"checkpoint of {job.queue}/{job.id} refused: {reply.error}")
