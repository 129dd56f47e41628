"""Work that waits, from the client: batches of any jobs with callbacks, signals, graphs.

    with client.batch("report", then="report", on_failure="alerts") as batch:
        for sku in skus:
            batch.submit("price", {"sku": sku})
    # sealed here: once every job of it (and every job they spawn) has ended, the daemon
    # creates report/<batch>.then (all done) or alerts/<batch>.on_failure (some failed)

    client.signal("publish", job_id, "approved", {"by": "ana"})

A batch is opened in its home queue (a manifest there), collects submits until it is
sealed, and no callback is made before the seal. Its jobs get ids ``<batch>.<key>`` (the
key counts up, or is given), so submitting the same key twice finds the first job: a batch
whose producer died can be filled again with the same keys and sealed.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, Unpack, cast

from ckptd.client import bodies
from ckptd.client.answer_shapes import answer_as
from ckptd.core.answer_types import BatchOpened, BatchSealed, GraphNode, SignalAnswer
from ckptd.core.waits import child_id


class Requests(Protocol):
    """What a batch and the calls below need of a client."""

    def request(self, kind: str, body: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """One control request."""

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               batch: str | None = None, **options: Unpack[bodies.BatchJobOptions]) -> str:
        """Submit one job."""


class Batch:
    """An open batch: :meth:`submit` adds jobs; :meth:`seal` (or leaving the ``with``
    block without an error) closes it. Leaving it with an error does not seal it: the jobs
    submitted run, and no callback is made until someone seals it."""

    def __init__(self, client: Requests, queue: str, name: str, sealed: bool) -> None:
        self.client = client
        self.queue = queue
        self.name = name
        self.sealed = sealed
        self.count = 0
        self.ids: list[str] = []

    def submit(self, queue: str, payload: Any = None, *, key: str | None = None,
               **options: Unpack[bodies.BatchJobOptions]) -> str:
        """Submit a job of this batch into ``queue`` (any queue the batch's daemon leads);
        return its id, ``<batch>.<key>`` (``key``: 000000, 000001, ... when not given).
        Options as :meth:`ckptd.Client.submit` (after=, max_attempts=, ...)."""
        if self.sealed:
            raise ValueError(f"batch {self.name} is sealed: open another one")
        if key is None:
            key = f"{self.count:06d}"
        self.count += 1
        job_id = self.client.submit(queue, payload, id=child_id(self.name, key),
                                    batch=self.name, **options)
        self.ids.append(job_id)
        return job_id

    def seal(self) -> BatchSealed:
        """Close the batch: once every job of it has ended, its callbacks are made."""
        answer = self.client.request("batch_seal", {"queue": self.queue, "batch": self.name})
        self.sealed = True
        return answer_as(answer, BatchSealed)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None and not self.sealed:
            self.seal()


class GraphCalls:
    """The client's calls for work that waits (mixed into :class:`ckptd.Client`)."""

    def request(self, kind: str, body: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        raise NotImplementedError  # the Client's

    def batch(self, queue: str, *, then: str | None = None, on_complete: str | None = None,
              on_failure: str | None = None, name: str | None = None,
              context: Any = None) -> Batch:
        """Open a batch in ``queue`` (its home: the daemon leading it tracks it) with its
        callbacks, each a queue: ``then`` when every job is done, ``on_failure`` when one
        or more failed, ``on_complete`` in either case. Each is created once, as
        ``<batch>.then`` (...), with the outcome of every job (and ``context``). Use it
        with ``with``: it is sealed at the end of the block. ``name`` opens (or finds again)
        a batch of that name."""
        answer = answer_as(self.request("batch_open", bodies.batch_open_body(
            queue, then=then, on_complete=on_complete, on_failure=on_failure, name=name,
            context=context)), BatchOpened)
        return Batch(cast(Requests, self), queue, answer["batch"], bool(answer["sealed"]))

    def signal(self, queue: str, job_id: str, name: str, data: Any = None) -> SignalAnswer:
        """Send the signal ``name`` (with ``data``, any JSON value) to a job: a file in
        ``<queue>/signals/``. A job parked for it wakes at once; one that parks for it later
        finds it there. Returns the job's state."""
        return answer_as(self.request("signal", bodies.signal_body(queue, job_id, name, data)),
                         SignalAnswer)

    def graph(self, queue: str, job_id: str, depth: int | None = None) -> GraphNode:
        """A job's parents, children, dependents and batch, with their states."""
        return answer_as(self.request("graph", bodies.graph_body(queue, job_id, depth),
                                      timeout=bodies.GRAPH_TIMEOUT), GraphNode)
