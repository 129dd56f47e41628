"""Large input files split into jobs by byte range, and the records read back from a range.

``ckptd submit-file`` stores a customer's file once (as the blob ``<batch>.source``) and
makes one job per chunk of records; a job's payload names its byte range, never the data:

    {"source": "blobs/<batch>.source", "format": "csv", "start": 1048, "end": 2090,
     "first": 20, "count": 20, "header": "sku,name,weight_kg,qty"}

Formats: ``lines`` (one record per line), ``jsonl`` (one JSON value per line), ``csv``
(the first line is the header; a quoted field may span lines). Splitting looks only at
newlines and, for CSV, at quote parity, so it runs at memory speed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FORMATS = ("csv", "jsonl", "lines")


@dataclass(frozen=True)
class Chunk:
    """A run of records: bytes ``start`` to ``end`` of the source, records ``first``..."""

    start: int
    end: int
    first: int
    count: int


def guess_format(path: str) -> str:
    """The format from a file name: .csv, .jsonl/.ndjson, else lines."""
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "lines"


def header_of(data: bytes, fmt: str) -> tuple[str | None, int]:
    """The CSV header line (without its newline) and where the records begin."""
    if fmt != "csv":
        return None, 0
    end = data.find(b"\n")
    if end < 0:
        return data.decode().rstrip("\r"), len(data)
    return data[:end].decode().rstrip("\r"), end + 1


def split(data: bytes, fmt: str, chunk: int, start: int = 0) -> Iterator[Chunk]:
    """Yield chunks of ``chunk`` records from ``data[start:]``; empty lines are skipped.

    For CSV a line with an odd number of quote characters opens (or closes) a quoted field
    that spans lines, and the record goes on to the next line.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    size = len(data)
    pos = start
    chunk_start = start
    first = 0
    count = 0
    in_quotes = False
    find = data.find
    is_csv = fmt == "csv"
    while pos < size:
        newline = find(b"\n", pos)
        line_end = size if newline < 0 else newline + 1
        if is_csv and data.count(b'"', pos, line_end) % 2:
            in_quotes = not in_quotes
        blank = not in_quotes and line_end - pos <= 2 and not data[pos:line_end].strip()
        if blank and count == 0:
            chunk_start = line_end  # skip blank lines between chunks
        elif not in_quotes and not blank:
            count += 1
            if count == chunk:
                yield Chunk(chunk_start, line_end, first, count)
                first += count
                count = 0
                chunk_start = line_end
        pos = line_end
    if count:
        yield Chunk(chunk_start, size, first, count)


def parse(data: bytes, fmt: str, header: str | None = None) -> list[Any]:
    """The records of a range: dicts for CSV (keys from ``header``), JSON values for
    jsonl, strings for lines. Blank lines are skipped."""
    text = data.decode()
    if fmt == "lines":
        return [line for line in text.splitlines() if line.strip()]
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if fmt == "csv":
        if header is None:
            raise ValueError("a CSV range needs the file's header")
        names = next(csv.reader([header]))
        rows = csv.DictReader(io.StringIO(text), fieldnames=names)
        return [row for row in rows if any(v for v in row.values())]
    raise ValueError(f"unknown format {fmt!r}")
