"""The worker's ``process <queue>`` span around each attempt (see :mod:`ckptd.client.tracing`).

Its parent: the daemon's ``dispatch`` span when the job message carries one
(``traceparent``), else the job's creation context for a first attempt; a retry without the
daemon's span starts a new trace. It links to the creation context either way. The span is
the current one while the handler runs (in its thread, task or child process), so what the
handler traces is part of it. Imported only when tracing is on.
"""

from __future__ import annotations

from contextvars import Token
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ckptd.client.tracing import attributes, creation_link, extracted, tracer
from ckptd.wire.messages import JobMessage
from ckptd.worker.job import AsyncJob, Job


@dataclass
class AttemptSpan:
    """A running attempt's span and the context token that made it current."""

    span: trace.Span
    token: Token[context.Context]


class AttemptTracer:
    """Starts and ends the spans of one process's attempts."""

    def __init__(self, mode: str) -> None:
        self.tracer = tracer(mode)

    def start(self, job: Job | AsyncJob, body: JobMessage) -> AttemptSpan:
        """Start the attempt's span and make it current."""
        creation, links = creation_link(body.meta or None)
        given = body.traceparent
        if isinstance(given, str):
            parent = extracted({"traceparent": given})
        elif job.attempt <= 1:
            parent = creation
        else:
            parent = context.Context()  # a retry: a new trace, linked to the first
        span = self.tracer.start_span(
            f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER, links=links,
            attributes=attributes(job.queue, job.id, "process", attempt=job.attempt) |
            {"messaging.operation.type": "process"})
        token = context.attach(trace.set_span_in_context(span, parent))
        return AttemptSpan(span, token)

    def done(self, held: AttemptSpan) -> None:
        """The handler returned."""
        held.span.set_status(Status(StatusCode.OK))
        self._end(held)

    def failed(self, held: AttemptSpan, error: BaseException, again: bool) -> None:
        """The handler raised ``error`` (``again``: the job runs again)."""
        held.span.record_exception(error)
        held.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        held.span.set_attribute("ckptd.retry", again)
        self._end(held)

    def flush(self) -> None:
        """Export the spans not exported yet (a child process ends without the exit
        handlers that would)."""
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)  # the SDK's has it, the API's not
        if flush is not None:
            flush()

    @staticmethod
    def _end(held: AttemptSpan) -> None:
        held.span.end()
        try:
            context.detach(held.token)
        except ValueError:
            pass  # detached in another context (an event loop task that ended oddly)
