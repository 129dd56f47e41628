"""Spans as lines of JSON appended to a file (``tracing = "file:PATH"``): for a look at what
ckptd traces without a collector, and for tests that gather the spans of several processes.

Each span is one ``write`` of one line to a file opened for appending, so the lines of the
daemon, the workers and their child processes never mix. The fields are those of
``ReadableSpan.to_json`` (ids as ``0x`` hex, the kind as ``SpanKind.NAME``), written without
its indentation and re-parsing: a span costs a few microseconds here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext


def _context(ctx: SpanContext) -> dict[str, str]:
    return {"trace_id": f"0x{ctx.trace_id:032x}", "span_id": f"0x{ctx.span_id:016x}"}


def span_record(span: ReadableSpan) -> dict[str, object]:
    """What one line holds of a span."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name, "context": _context(ctx), "kind": str(span.kind),
        "parent_id": f"0x{span.parent.span_id:016x}" if span.parent else None,
        "start_time": span.start_time, "end_time": span.end_time,
        "status": {"status_code": span.status.status_code.name},
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "timestamp": e.timestamp,
                    "attributes": dict(e.attributes or {})} for e in span.events],
        "links": [{"context": _context(link.context), "attributes": dict(link.attributes or {})}
                  for link in span.links],
        "resource": dict(span.resource.attributes)}


class JsonLinesExporter(SpanExporter):
    """Appends each span to ``path`` as one line of JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), separators=(",", ":"), default=str) + "\n"
                        for s in spans)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                   | os.O_CLOEXEC, 0o640)
            os.write(self._fd, lines.encode())
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
