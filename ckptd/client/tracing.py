"""OpenTelemetry for ckptd's processes (``pip install ckptd[otel]``): the tracer of each
process and the trace context a job carries. Imported only when ``tracing`` is not ``off``:
without it nothing of OpenTelemetry is loaded and nothing costs.

The spans follow OpenTelemetry's messaging conventions (``messaging.system`` = ``ckptd``,
the queue as ``messaging.destination.name``, the job id as ``messaging.message.id``):

- the client's ``create <queue>`` span (PRODUCER), a child of the span that submits; its
  context is the job's creation context, stored in the job file as ``meta.traceparent``;
- the daemon's ``dispatch <queue>`` span when it hands an attempt to a worker, and its
  ``settle <queue>`` span when the attempt ends (done, failed, back to pending), with the
  move as an event (:mod:`ckptd.daemon.telemetry.traces`);
- the worker's ``process <queue>`` span (CONSUMER) around the handler
  (:mod:`ckptd.worker.tracing`), current while it runs, so the handler's own spans are its
  children.

The first attempt is one trace with the submitting request. Each retry starts a new trace
that links to the creation context, so a job retried for a day does not stretch the
request's trace over that day.

``tracing``: ``on`` uses the tracer provider your program set (or ``opentelemetry-instrument``
set); ``otlp`` sets one up that exports with OTLP (``pip install opentelemetry-exporter-otlp``,
configured by the ``OTEL_EXPORTER_OTLP_*`` variables); ``file:PATH`` appends each span to
PATH as a line of JSON (for a look, and for tests).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ckptd.core.errors import ConfigError

SYSTEM = "ckptd"
CARRIER_KEYS = ("traceparent", "tracestate", "baggage")

_lock = threading.Lock()
_tracers: dict[str, trace.Tracer] = {}


def tracer(mode: str) -> trace.Tracer:
    """The tracer of this process for ``mode`` (``on``, ``otlp``, ``file:PATH``), the SDK
    set up the first time it is asked for. Raises ConfigError when it cannot be."""
    with _lock:
        found = _tracers.get(mode)
        if found is None:
            provider = trace.get_tracer_provider() if mode == "on" else _provider(mode)
            found = _tracers[mode] = provider.get_tracer("ckptd")
        return found


def _provider(mode: str) -> trace.TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "ckptd")}))
    if mode == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError("tracing = \"otlp\" needs the OTLP exporter: pip install "
                              "opentelemetry-exporter-otlp-proto-http") from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif mode.startswith("file:"):
        from ckptd.client.span_file import JsonLinesExporter

        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(mode[5:])))
    else:
        raise ConfigError(f"unknown tracing mode {mode!r}: expected on, otlp or file:PATH")
    # The program's own spans (an instrumented HTTP client in a handler) join ours, unless
    # it set a provider of its own.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


_TRACE_CONTEXT = TraceContextTextMapPropagator()
_WITH_BAGGAGE = CompositePropagator([_TRACE_CONTEXT, W3CBaggagePropagator()])


def _propagator(with_baggage: bool) -> TextMapPropagator:
    return _WITH_BAGGAGE if with_baggage else _TRACE_CONTEXT


def carrier(meta: Mapping[str, object] | None) -> dict[str, str]:
    """The W3C fields of a job's ``meta``."""
    return {k: str(meta[k]) for k in CARRIER_KEYS if meta and isinstance(meta.get(k), str)}


def extracted(fields: Mapping[str, str]) -> context.Context:
    """The context the W3C fields name (an empty one when they name none)."""
    found: context.Context = _propagator(True).extract(dict(fields), context=context.Context())
    return found


def creation_link(meta: Mapping[str, object] | None) -> tuple[context.Context, list[Link]]:
    """A job's creation context and the link to it ([] when the job carries none)."""
    ctx = extracted(carrier(meta))
    span_context = trace.get_current_span(ctx).get_span_context()
    return ctx, [Link(span_context)] if span_context.is_valid else []


def attributes(queue: str, job_id: str, operation: str, **more: AttributeValue | None
               ) -> dict[str, AttributeValue]:
    """The messaging attributes of a span about one job (``more``: None is left out)."""
    found: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM, "messaging.operation.name": operation,
        "messaging.destination.name": queue, "messaging.message.id": job_id}
    found.update({f"ckptd.{k}": v for k, v in more.items() if v is not None})
    return found


def inject(ctx: context.Context, with_baggage: bool = False) -> dict[str, str]:
    """The W3C fields of ``ctx``."""
    fields: dict[str, str] = {}
    _propagator(with_baggage).inject(fields, context=ctx)
    return fields


class SubmitTracer:
    """A client's ``create`` spans, and the trace context they give each job."""

    def __init__(self, mode: str, with_baggage: bool = False) -> None:
        self.tracer = tracer(mode)
        self.with_baggage = with_baggage

    def created(self, queue: str, job_id: str | None) -> dict[str, str]:
        """Start and end the ``create`` span of a job; return the fields for its meta."""
        span = self.tracer.start_span(
            f"create {queue}", kind=SpanKind.PRODUCER,
            attributes=attributes(queue, job_id or "", "create") |
            {"messaging.operation.type": "create"})
        try:
            ctx = trace.set_span_in_context(span)
            if self.with_baggage:
                for name, value in baggage.get_all().items():
                    ctx = baggage.set_baggage(name, value, ctx)
            return inject(ctx, self.with_baggage)
        finally:
            span.end()

