"""Is an earlier run of this daemon gone? What lets a restarted daemon lead again at once.

A daemon killed (``kill -9``, a crash, the OOM killer) leaves its queue leases in the bucket;
another daemon takes them over only after a whole lease without renewal, since it cannot
know that their holder is dead rather than slow. A daemon restarted on the same machine
under the same name often can know: each lease and membership record carries
:func:`process_mark` (host name, boot id, pid namespace, pid and the process's start time),
and :func:`gone` says whether the process that wrote a record is certainly not running:
same host, same boot and same pid namespace, and its pid is free, a zombie, or another
process (a start time that differs: the pid was reused).

Everything else is "cannot tell" (another machine, a reboot, a container started again
with a new pid namespace, a record without the mark, no ``/proc``): the caller then waits a
lease as before. Safety first: a wrong "gone" would let two daemons run the same jobs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from ckptd.daemon.cluster.records import ProcessMark

MARK = "process"  # the key of the mark in records


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) of process ``pid``, or None when
    there is no such process."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold ")"
        return int(fields[19]), fields[0]
    except (IndexError, ValueError):
        return None


@lru_cache(maxsize=1)
def process_mark() -> ProcessMark:
    """What identifies this process among every process that ever ran (for records)."""
    own = start_time(os.getpid())
    return {"host": os.uname().nodename, "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pid_ns": _pid_namespace(), "pid": os.getpid(),
            "started": own[0] if own is not None else None}


def gone(record: Mapping[str, object] | None) -> bool:
    """True only when the process that wrote ``record`` (its :data:`MARK`) is certainly
    not running; False when it runs or when that cannot be told (module docstring)."""
    mark = (record or {}).get(MARK)
    if not isinstance(mark, dict):
        return False
    here = process_mark()
    if not here["boot_id"] or not here["pid_ns"] or here["started"] is None:
        return False  # no /proc to tell by
    if any(mark.get(key) != here[key] for key in ("host", "boot_id", "pid_ns")):
        return False
    pid, started = mark.get("pid"), mark.get("started")
    if not isinstance(pid, int) or not isinstance(started, int):
        return False
    found = start_time(pid)
    if found is None:
        return True  # no such process
    ticks, state = found
    return ticks != started or state in ("Z", "X")  # the pid reused, or a dead zombie
