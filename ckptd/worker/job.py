"""What a handler gets: one attempt of a job (payload, last checkpoint, and the calls that
report back)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ckptd.core import sources
from ckptd.core.errors import CkptdError

CHECKPOINT_TIMEOUT = 60.0


class JobHost(Protocol):
    """What a :class:`Job` asks of the worker that runs it."""

    def checkpoint(self, job: Job, seq: int, state: Any, timeout: float) -> None:
        """Send a checkpoint and wait until the daemon confirms it is durable."""

    def send(self, kind: bytes, body: dict[str, Any]) -> None:
        """Queue a message to the daemon (progress)."""

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        """Bytes of a batch's source file."""

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        """Write an output file into the store; return where it is."""

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of a done job."""


@dataclass
class Job:
    """One attempt of a job, as a handler sees it."""

    id: str
    queue: str
    attempt: int
    payload: Any
    state: Any = None
    max_attempts: int = 0
    created: str | None = None
    batch: str | None = None
    _worker: JobHost | None = field(default=None, repr=False)
    _seq: int = field(default=0, repr=False)

    def checkpoint(self, state: Any, timeout: float = CHECKPOINT_TIMEOUT) -> None:
        """Save ``state`` (any JSON value) as this job's progress; return once it is durable.

        A later attempt of the job starts with ``job.state`` set to it. Raises LeaseLost when
        the job is no longer this worker's (stop working on it), DaemonUnavailable when the
        daemon did not confirm within ``timeout`` seconds.
        """
        if self._worker is None:
            self.state = state
            return
        self._seq += 1
        self._worker.checkpoint(self, self._seq, state, timeout)
        self.state = state

    def progress(self, done: float, total: float | None = None, note: str | None = None
                 ) -> None:
        """Report how far the job is (shown by ``ckptd status`` and ``explain``); cheap."""
        if self._worker is not None:
            self._worker.send(b"progress", {"queue": self.queue, "id": self.id,
                                             "attempt": self.attempt, "done": done,
                                             "total": total, "note": note})

    def records(self) -> list[Any]:
        """The records of a job made by ``ckptd submit-file`` (its range of the source file).

        CSV records are dicts keyed by the header; jsonl records are JSON values; lines are
        strings. Read straight from the store when this host can, else through the daemon.
        """
        payload = self.payload
        if not (isinstance(payload, dict) and "source" in payload and "start" in payload):
            raise CkptdError(f"job {self.queue}/{self.id} was not made by submit-file: its "
                             "payload names no source range")
        if self._worker is None:
            raise CkptdError("records() needs a worker to read the source through")
        batch = str(payload["source"]).rsplit("/", 1)[-1].rsplit(".", 1)[0]
        data = self._worker.source_range(self.queue, batch, int(payload["start"]),
                                          int(payload["end"]))
        return sources.parse(data, str(payload["format"]), payload.get("header"))

    def write_output(self, name: str, data: str | bytes) -> str:
        """Write a named output file into the store (``<queue>/outputs/<name>``), e.g. a
        reduce job's report; return where it is. Through the daemon when this host cannot
        reach the store (text only, then)."""
        if self._worker is None:
            raise CkptdError("write_output() needs a worker")
        return self._worker.write_output(self.queue, name,
                                          data.encode() if isinstance(data, str) else data)

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of another (done) job, e.g. one listed in a reduce job's payload."""
        if self._worker is None:
            raise CkptdError("result_of() needs a worker")
        return self._worker.result_of(queue, job_id)


Handler = Callable[[Job], Any]
"""A handler: takes a :class:`Job`, returns the job's result (any JSON value)."""
