"""The daemon's spans of a job's trace: ``dispatch <queue>`` when an attempt goes to a worker,
``settle <queue>`` when it ends (see :mod:`ckptd.client.tracing`).

Only jobs that carry a trace context (``meta.traceparent``, from a client with tracing on)
get spans: the daemon starts no trace of its own. A first attempt's ``dispatch`` is a child
of the job's creation context; a retry's starts a new trace that links to it, and its
context goes to the worker with the job (``traceparent``), whose ``process`` span is its
child. ``settle`` is a child of the attempt's ``dispatch``, with the move (from, to, error)
as an event. The contexts of claimed attempts are kept until their move, at most
:data:`KEEP` of them. With ``tracing = "off"`` (the default) :func:`traces_of` gives None
and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from ckptd.core.jobs import Job
from ckptd.wire.protocol import Body

if TYPE_CHECKING:
    from opentelemetry.context import Context

KEEP = 100_000  # contexts of claimed attempts kept for their settle spans


class Traces(Protocol):
    """What the engine tells the tracing of the daemon."""

    def dispatched(self, queue: str, job_id: str, attempt: int, job: Job,
                   body: Body) -> None:
        """An attempt is being sent to a worker (``body``: the job message, which may get a
        ``traceparent``)."""

    def moved(self, queue: str, job_id: str, attempt: int, src: str, dst: str,
              fields: Mapping[str, object]) -> None:
        """A job changed state."""


def traces_of(mode: str, daemon: str) -> Traces | None:
    """The daemon's tracing for the setting ``tracing`` (None when off)."""
    if mode == "off":
        return None
    return OtelTraces(mode, daemon)


class OtelTraces:
    """:class:`Traces` with OpenTelemetry."""

    def __init__(self, mode: str, daemon: str) -> None:
        from ckptd.client.preparing import otel

        self.otel = otel(mode)
        self.tracer = self.otel.tracer(mode)
        self.daemon = daemon
        self.open: OrderedDict[tuple[str, str, int], Context] = OrderedDict()

    def dispatched(self, queue: str, job_id: str, attempt: int, job: Job,
                   body: Body) -> None:
        from opentelemetry import context, trace

        meta = job.get("meta")
        if not isinstance(meta, dict) or "traceparent" not in meta:
            return
        creation, links = self.otel.creation_link(meta)
        parent = creation if attempt <= 1 else context.Context()
        span = self.tracer.start_span(
            f"dispatch {queue}", context=parent, links=links,
            attributes=self.otel.attributes(queue, job_id, "dispatch", attempt=attempt,
                                            daemon=self.daemon))
        span.add_event("claimed", {"ckptd.attempt": attempt})
        span.end()
        ctx = trace.set_span_in_context(span)
        body["traceparent"] = self.otel.inject(ctx)["traceparent"]
        self.open[(queue, job_id, attempt)] = ctx
        while len(self.open) > KEEP:
            self.open.popitem(last=False)

    def moved(self, queue: str, job_id: str, attempt: int, src: str, dst: str,
              fields: Mapping[str, object]) -> None:
        if src != "claimed":
            return
        ctx = self.open.pop((queue, job_id, attempt), None)
        if ctx is None:
            return
        event = {"ckptd.from": src, "ckptd.to": dst}
        if fields.get("error"):
            event["ckptd.error"] = str(fields["error"])
        span = self.tracer.start_span(
            f"settle {queue}", context=ctx,
            attributes=self.otel.attributes(queue, job_id, "settle", attempt=attempt,
                                            to=dst) | {"messaging.operation.type": "settle"})
        span.add_event("moved", event)
        span.end()
