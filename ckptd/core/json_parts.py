"""Parts of a JSON document read leniently: an object, an array, a number.

For what ckptd reads but did not write itself, or wrote in an older version: a ``show``
answer, a queue's status figures, a table of ``[storage_options]``. A part that is missing
or of another type reads as empty, so the reader says less rather than fails.
"""

from __future__ import annotations

from collections.abc import Mapping


def table(value: object) -> Mapping[str, object]:
    """``value`` when it is an object (a mapping), else an empty one."""
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[object]:
    """``value`` when it is an array (a list), else an empty one."""
    return value if isinstance(value, list) else []


def number(value: object) -> float:
    """A number as ``float(value or 0)`` reads it (TypeError for an array or an object,
    ValueError for text that is not a number)."""
    if not value:
        return 0.0
    if isinstance(value, (int, float, str)):
        return float(value)
    raise TypeError(f"not a number: {type(value).__name__}")
