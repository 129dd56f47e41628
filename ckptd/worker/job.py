"""What a handler gets: one attempt of a job (payload, last checkpoint, and the calls that
report back).

A plain handler (``def handler(job)``) gets a :class:`Job`; an ``async def`` handler gets an
:class:`AsyncJob`, whose calls that wait on the daemon or the store are coroutines
(``await job.checkpoint(state)``), so that waiting for one job never blocks the event loop
that runs the others. ``progress()`` and ``cancelled`` are plain in both: they never wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypedDict, Unpack

from ckptd.core import sources
from ckptd.core.errors import CkptdError
from ckptd.core.jobs import WokenRecord, is_woken
from ckptd.core.outcomes import Cancelled, Interrupt
from ckptd.wire.messages import JobMessage

CHECKPOINT_TIMEOUT = 60.0


Woken = WokenRecord
"""How a job's last wait ended (``job.woken``), as the daemon wrote it."""


class ThenOptions(TypedDict, total=False):
    """What ``then()`` takes besides the payload and its rule (as ``Client.submit``)."""

    after: list[str]
    max_attempts: int
    delay: float
    priority: int
    time_limit: float


class SpawnOptions(ThenOptions, total=False):
    """What ``spawn()`` takes besides the payload (as ``Client.submit``)."""

    on_parent_failure: str


class StopFlags:
    """What the worker asks of a running attempt: stop (and why), or not.

    Set by the worker's I/O thread (or, in a child process, by a signal handler) and read by
    the handler's calls: :meth:`check` raises the pending :class:`~ckptd.Interrupt`, once.
    After that the handler's calls work again, so that a handler that catches it can save a
    checkpoint within the grace period.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self.stop: Interrupt | None = None
        self.raised = False  # the stop reached the handler (raised here, or from outside)

    def ask(self, stop: Interrupt) -> None:
        """Ask the attempt to stop with ``stop`` (a cancel is never replaced by a limit)."""
        if isinstance(stop, Cancelled):
            if not self.cancelled:
                self.raised = False
            self.cancelled = True
            self.stop = stop
        elif self.stop is None:
            self.stop = stop

    def check(self) -> None:
        """Raise the pending interrupt, unless it has reached the handler already."""
        stop = self.stop
        if stop is not None and not self.raised:
            self.raised = True
            raise type(stop)(stop.reason)


class JobHost(Protocol):
    """What a :class:`Job` asks of the worker that runs it."""

    def checkpoint(self, job: Job, seq: int, state: object, timeout: float) -> None:
        """Send a checkpoint and wait until the daemon confirms it is durable."""

    def send(self, kind: bytes, body: dict[str, object]) -> None:
        """Queue a message to the daemon (progress)."""

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        """Bytes of a batch's source file."""

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        """Write an output file into the store; return where it is."""

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of a done job."""

    def spawn(self, parent: str, batch: str | None, queue: str, payload: object, key: str,
              options: SpawnOptions) -> str:
        """Create the child ``<parent>.<key>`` (create-only); return its id."""

    async def checkpoint_async(self, job: AsyncJob, seq: int, state: object,
                               timeout: float) -> None:
        """Send a checkpoint; return (to the event loop) once the daemon confirms it."""


@dataclass
class _Attempt:
    """The fields and plain calls common to both kinds of job."""

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
    _flags: StopFlags = field(default_factory=StopFlags, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    """Fields the client's hooks added to the job (``Submission.meta``); {} when none."""
    woken: Woken | None = None
    """How its last wait ended (``reason``: parents, children, signal, until, timeout), with
    the ends of the jobs it waited for and the signals it got; None if it never waited."""
    spawned: list[str] = field(default_factory=list)
    """The children this attempt created (``queue/id``), in order."""

    @classmethod
    def of(cls, body: JobMessage, payload: Any, state: Any, host: JobHost | None,
           flags: StopFlags) -> Self:
        """The job a handler gets for the job message ``body`` (every pool makes it so)."""
        created = body.created if isinstance(body.created, str) else None
        return cls(body.id, body.queue, body.attempt, payload, state, body.max_attempts,
                   created, body.batch, _worker=host, _flags=flags,
                   woken=body.woken if is_woken(body.woken) else None)

    @property
    def signals(self) -> dict[str, Any]:
        """The signals it got while it waited (name -> data; {} when none)."""
        return dict(self.woken.get("signals") or {}) if self.woken else {}

    @property
    def parents(self) -> dict[str, str]:
        """Its parents (``after``) and how each ended: ``{"queue/id": "done"}``. With
        ``on_parent_failure="ignore"`` a failed parent is left out."""
        return dict(self.woken.get("parents") or {}) if self.woken else {}

    @property
    def children(self) -> dict[str, str]:
        """The children it parked for (``Park(children=True)``) and how each ended."""
        return dict(self.woken.get("children") or {}) if self.woken else {}

    def _spawn(self, queue: str, payload: object, key: str, options: SpawnOptions) -> str:
        child = self._host("spawn").spawn(self.id, self.batch, queue, payload, key, options)
        ref = f"{queue}/{child}"
        if ref not in self.spawned:
            self.spawned.append(ref)
        return child

    def _then_options(self, on_parent_failure: str, options: ThenOptions) -> SpawnOptions:
        return {**options, "after": [*self.spawned, f"{self.queue}/{self.id}"],
                "on_parent_failure": on_parent_failure}

    def log(self, *parts: object, level: str = "INFO") -> None:
        """Add a line to this job's own log (``ckptd logs QUEUE ID``), beside the records
        its handler's ``logging`` emits; ``parts`` are joined with spaces, like print."""
        from ckptd.worker.job_logs import write

        write(" ".join(str(p) for p in parts), level.upper())

    @property
    def cancelled(self) -> bool:
        """True once the job has been cancelled (``ckptd cancel``): stop working on it.

        The next ``checkpoint()`` or ``progress()`` raises :class:`ckptd.Cancelled`; a
        handler that does neither is stopped by force after the worker's grace period.
        """
        return self._flags.cancelled

    def progress(self, done: float, total: float | None = None, note: str | None = None
                 ) -> None:
        """Report how far the job is (shown by ``ckptd status`` and ``explain``); cheap.

        Raises :class:`ckptd.Cancelled` or :class:`ckptd.TimeLimit` when the attempt has
        been asked to stop.
        """
        self._flags.check()
        if self._worker is not None:
            self._worker.send(b"progress", {"queue": self.queue, "id": self.id,
                                             "attempt": self.attempt, "done": done,
                                             "total": total, "note": note})

    def _source(self) -> tuple[str, int, int]:
        payload = self.payload
        if not (isinstance(payload, dict) and "source" in payload and "start" in payload):
            raise CkptdError(f"job {self.queue}/{self.id} was not made by submit-file: its "
                             "payload names no source range")
        batch = str(payload["source"]).rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return batch, int(payload["start"]), int(payload["end"])

    def _parse(self, data: bytes) -> list[Any]:
        return sources.parse(data, str(self.payload["format"]), self.payload.get("header"))

    def _host(self, what: str) -> JobHost:
        if self._worker is None:
            raise CkptdError(f"{what}() needs a worker")
        return self._worker


@dataclass
class Job(_Attempt):
    """One attempt of a job, as a (plain) handler sees it."""

    def checkpoint(self, state: object, timeout: float = CHECKPOINT_TIMEOUT) -> None:
        """Save ``state`` (any JSON value) as this job's progress; return once it is durable.

        A later attempt of the job starts with ``job.state`` set to it. Raises LeaseLost when
        the job is no longer this worker's (stop working on it), DaemonUnavailable when the
        daemon did not confirm within ``timeout`` seconds (the worker sends it again after a
        reconnect), :class:`ckptd.Cancelled` or :class:`ckptd.TimeLimit` when the attempt
        has been asked to stop.
        """
        self._flags.check()
        if self._worker is None:
            self.state = state
            return
        self._seq += 1
        self._worker.checkpoint(self, self._seq, state, timeout)
        self.state = state

    def records(self) -> list[Any]:
        """The records of a job made by ``ckptd submit-file`` (its range of the source file).

        CSV records are dicts keyed by the header; jsonl records are JSON values; lines are
        strings. Read straight from the store when this host can, else through the daemon.
        """
        batch, start, end = self._source()
        return self._parse(self._host("records").source_range(self.queue, batch, start, end))

    def write_output(self, name: str, data: str | bytes) -> str:
        """Write a named output file into the store (``<queue>/outputs/<name>``), e.g. a
        reduce job's report; return where it is. Through the daemon when this host cannot
        reach the store (text only, then)."""
        return self._host("write_output").write_output(
            self.queue, name, data.encode() if isinstance(data, str) else data)

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of another (done) job, e.g. one listed in a reduce job's payload."""
        return self._host("result_of").result_of(queue, job_id)

    def spawn(self, queue: str, payload: object = None, *, key: str,
              **options: Unpack[SpawnOptions]) -> str:
        """Create a child job in ``queue`` with the id ``<this id>.<key>``; return its id.

        The id is fixed by ``key``, so an attempt that runs again (after a crash) creates
        nothing twice: the second spawn finds the first child. A child of a batch's job is
        in the batch. ``options``: as :meth:`ckptd.Client.submit` (``after=``,
        ``on_parent_failure=``, ``max_attempts=``, ``delay=``, ``priority=``,
        ``time_limit=``). ``raise Park(children=True)`` then waits for the children.
        """
        return self._spawn(queue, payload, key, options)

    def then(self, queue: str, payload: object = None, *, key: str = "then",
             on_parent_failure: str = "fail", **options: Unpack[ThenOptions]) -> str:
        """A continuation: the job ``<this id>.<key>`` in ``queue``, which runs once this
        job and every child it spawned have ended (with ``on_parent_failure`` for the ones
        that failed); return its id. Spawn the children first."""
        return self._spawn(queue, payload, key, self._then_options(on_parent_failure, options))


@dataclass
class AsyncJob(_Attempt):
    """One attempt of a job, as an ``async def`` handler sees it: the calls that wait are
    coroutines (``await job.checkpoint(state)``); ``progress()`` is a plain call."""

    async def checkpoint(self, state: object, timeout: float = CHECKPOINT_TIMEOUT) -> None:
        """Save ``state`` as this job's progress; return once it is durable (see
        :meth:`Job.checkpoint`). Other jobs of the event loop run while it waits."""
        self._flags.check()
        if self._worker is None:
            self.state = state
            return
        self._seq += 1
        await self._worker.checkpoint_async(self, self._seq, state, timeout)
        self.state = state

    async def records(self) -> list[Any]:
        """The records of a submit-file job (see :meth:`Job.records`), read in a thread."""
        import asyncio

        batch, start, end = self._source()
        host = self._host("records")
        return self._parse(await asyncio.to_thread(host.source_range, self.queue, batch, start,
                                                   end))

    async def write_output(self, name: str, data: str | bytes) -> str:
        """Write a named output file into the store (see :meth:`Job.write_output`)."""
        import asyncio

        host = self._host("write_output")
        raw = data.encode() if isinstance(data, str) else data
        return await asyncio.to_thread(host.write_output, self.queue, name, raw)

    async def result_of(self, queue: str, job_id: str) -> Any:
        """The result of another (done) job (see :meth:`Job.result_of`)."""
        import asyncio

        return await asyncio.to_thread(self._host("result_of").result_of, queue, job_id)

    async def spawn(self, queue: str, payload: object = None, *, key: str,
                    **options: Unpack[SpawnOptions]) -> str:
        """Create the child ``<this id>.<key>`` (see :meth:`Job.spawn`), in a thread."""
        import asyncio

        return await asyncio.to_thread(self._spawn, queue, payload, key, options)

    async def then(self, queue: str, payload: object = None, *, key: str = "then",
                   on_parent_failure: str = "fail", **options: Unpack[ThenOptions]) -> str:
        """A continuation after this job and its children (see :meth:`Job.then`)."""
        import asyncio

        return await asyncio.to_thread(self._spawn, queue, payload, key,
                                       self._then_options(on_parent_failure, options))


Handler = Callable[[Job], object] | Callable[[AsyncJob], Awaitable[object]]
"""A handler: takes a :class:`Job` (or, ``async def``, an :class:`AsyncJob`) and returns the
job's result (any JSON value)."""
