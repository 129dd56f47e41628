"""Validation of queue names and job ids, the only user input that becomes a path.

A name is 1 to 128 characters of ASCII letters, digits, ``-``, ``_`` and ``.``, and does not
start with a dot. That excludes ``.``, ``..``, separators, NUL, drive letters (``:``) and
look-alike Unicode, so a valid name is always a single plain entry inside its folder.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from ckptd.core.errors import InvalidName

MAX_NAME_LENGTH = 128
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_RULE = "1-128 characters of letters, digits, '-', '_', '.', not starting with '.'"


def is_valid_name(name: object) -> TypeGuard[str]:
    """Return True when ``name`` is an acceptable queue name or job id."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` unchanged when valid; raise :class:`InvalidName` otherwise.

    ``what`` names the thing in the message ("queue name", "job id").
    """
    if is_valid_name(name):
        return name
    shown = repr(name)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise InvalidName(f"invalid {what} {shown}: must be {_RULE}")


def check_queue(name: object) -> str:
    """Validate a queue name."""
    return check_name(name, "queue name")


def check_job_id(name: object) -> str:
    """Validate a job id."""
    return check_name(name, "job id")


_match = NAME_PATTERN.fullmatch


def check_job_ref(queue: object, job_id: object) -> None:
    """Validate a queue name and a job id together (the hot path of every store call)."""
    if type(queue) is str and type(job_id) is str and _match(queue) and _match(job_id):
        return
    check_queue(queue)
    check_job_id(job_id)
