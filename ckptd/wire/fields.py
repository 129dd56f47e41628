"""The kinds of field a wire message holds, as types msgspec checks while it decodes.

Each type here is one rule of :mod:`ckptd.wire.protocol`: a queue name or job id (the name
pattern of :mod:`ckptd.core.names`), a count, a number, a bounded string. A JSON ``true`` is
never a number, and an integer stays an integer where a number may be either.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from ckptd.core.names import MAX_NAME_LENGTH

# "\Z", not "$": msgspec searches with ``re``, whose "$" also matches before a final newline.
# The length is checked apart: a bounded repeat in the pattern doubles its cost.
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH,
                           pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")]
"""A queue name or job id (:data:`ckptd.core.names.NAME_PATTERN`)."""

Count = Annotated[int, Meta(ge=0, lt=2**53)]
"""A whole number a double holds exactly: attempts, sequence numbers, offsets, sizes."""

Number = (Annotated[int, Meta(gt=-10**15, lt=10**15)]
          | Annotated[float, Meta(gt=-1e15, lt=1e15)])
"""A number under 1e15 either way (an integer stays one)."""

Seconds = Annotated[int, Meta(gt=0, lt=10**9)] | Annotated[float, Meta(gt=0, lt=1e9)]
"""A positive duration in seconds (a time limit)."""

Priority = Annotated[int, Meta(ge=-1_000_000, le=1_000_000)]
"""A job's priority: lower runs first (beanstalkd's order)."""

Text = Annotated[str, Meta(max_length=65536)]
"""A string of at most 64 KiB characters (errors, notes, tracebacks)."""

Label = Annotated[str, Meta(min_length=1, max_length=256)]
"""A short string: a worker, host or operator name (that it prints is checked by the
message that holds it, :func:`require_printable`)."""

Rate = Annotated[str, Meta(min_length=1, max_length=64)]
"""A rate as people write it ("100/s")."""

Names = Annotated[list[Name], Meta(min_length=1, max_length=1024)]
"""A worker's queues."""

Ids = Annotated[list[Name], Meta(max_length=100_000)]
"""Job ids of one queue."""

JobRef = tuple[Name, Name, Count]
"""An attempt: queue, id, attempt number."""

JobRefs = Annotated[list[JobRef], Meta(max_length=100_000)]
"""The attempts a worker runs."""

Lines = Annotated[list[Text], Meta(max_length=100)]
"""A few lines of text (the tail of a job's log)."""

Ref = Annotated[str, Meta(min_length=1, max_length=260)]
"""A job named as ``queue/id``, or by its id alone (the same queue)."""

Refs = Annotated[list[Ref], Meta(min_length=1, max_length=10_000)]
"""Jobs named as ``after`` names parents."""

Signals = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=64)]
"""The names of the signals a parked job waits for."""

Callbacks = Annotated[dict[Literal["then", "on_complete", "on_failure"], Name | None],
                      Meta(min_length=1, max_length=3)]
"""A batch's callbacks: ``{"then" | "on_complete" | "on_failure": queue}``."""


def require_printable(message: object, *fields: str) -> None:
    """Raise ValueError (msgspec refuses the message) when one of these string ``fields``
    of a decoded message does not print: a label ends up in log lines."""
    for field in fields:
        value = getattr(message, field)
        if isinstance(value, str) and not value.isprintable():
            raise ValueError(f"Expected a printable `str` - at `$.{field}`")
