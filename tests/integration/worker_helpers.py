"""Helpers of the worker tests: reading the handlers' records, config files, waiting for
workers."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import wait_for
from tests.procs import DaemonProcess, read_lines


def records(log: Path | str, event: str, job_id: str | None = None) -> list[list[str]]:
    """The fields of the handlers' records of ``event`` (for ``job_id`` only, when given)."""
    out = []
    for line in read_lines(str(log)):
        fields = line.split()
        if fields[0] == event and (job_id is None or fields[2] == job_id):
            out.append(fields)
    return out


def config_file(tmp: Path, text: str) -> dict[str, str]:
    """Write a daemon config file; return the environment that points the daemon at it."""
    path = tmp / "ckptd.toml"
    path.write_text(text)
    return {"CKPTD_CONFIG": str(path)}


def wait_for_workers(daemon: DaemonProcess, count: int = 1, timeout: float = 60) -> None:
    """Wait until ``count`` workers have said hello to the daemon."""
    def connected() -> bool:
        with daemon.client(timeout=5) as client:
            return int(client.status().get("workers", 0)) >= count
    wait_for(connected, timeout=timeout, interval=0.1, message=f"{count} worker(s) to connect")


def alive(pid: int) -> bool:
    """True while process ``pid`` exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return os.path.exists(f"/proc/{pid}") if os.path.isdir("/proc") else False
