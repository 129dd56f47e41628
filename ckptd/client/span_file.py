"""Spans as lines of JSON appended to a file (``tracing = "file:PATH"``): for a look at what
ckptd traces without a collector, and for tests that gather the spans of several processes.

Each span is one ``write`` of one line to a file opened for appending, so the lines of the
daemon, the workers and their child processes never mix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends each span to ``path`` as one line (``ReadableSpan.to_json``, on one line)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(s.to_json(indent=None)), separators=(",", ":"))
                        + "\n" for s in spans)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o640)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing is held open."""
