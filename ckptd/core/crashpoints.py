"""Labelled points where crash tests kill the process.

The store calls :func:`reached` at each step of a durable write ("after_write",
"after_file_fsync", "after_rename", "after_dir_fsync", ...). Normally that is a no-op. When
the environment variable ``CKPTD_CRASH_AT`` is ``LABEL`` or ``LABEL:N``, the process sends
itself SIGKILL the N-th time (default first) it reaches ``LABEL``: the same as a kill -9 from
outside at exactly that instant, which a test cannot time from outside.
"""

from __future__ import annotations

import os
import signal

_label: str | None = None
_remaining = 0


def arm(spec: str | None) -> None:
    """Arm a crash at ``LABEL[:N]``; ``None`` or ``""`` disarms."""
    global _label, _remaining
    if not spec:
        _label, _remaining = None, 0
        return
    label, _, count = spec.partition(":")
    _label, _remaining = label, int(count or "1")


def reached(label: str) -> None:
    """Kill this process with SIGKILL if a crash is armed at ``label`` and its count is up."""
    global _remaining
    if _label != label:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> bool:
    """Return True when a crash point is armed (callers skip costly labels otherwise)."""
    return _label is not None


arm(os.environ.get("CKPTD_CRASH_AT"))
