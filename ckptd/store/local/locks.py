"""Locks of a local root: one daemon leads a root (or a queue) at a time.

A lock is an ``flock`` on a file in the root's control folder (``<root>/.ckptd/``, which is
never a queue: its name starts with a dot). The kernel releases it when its holder dies, even
by kill -9, so a crashed daemon never blocks the next one. The exclusive holder writes who
it is into the file, so that a refused daemon can say whom it was refused by.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Mapping

from ckptd.core.errors import LockHeld
from ckptd.store.local.durable import io_error

CONTROL_DIR = ".ckptd"


class HeldLock:
    """A lock this process holds; :meth:`release` (or the process's end) gives it back."""

    def __init__(self, fd: int, path: str, exclusive: bool) -> None:
        self.fd = fd
        self.path = path
        self.exclusive = exclusive

    def describe(self, holder: Mapping[str, object]) -> None:
        """Write who holds the lock into its file (exclusive locks only)."""
        if not self.exclusive or self.fd < 0:
            return
        data = json.dumps(holder, sort_keys=True).encode() + b"\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Give the lock back. Idempotent."""
        if self.fd >= 0:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1


def take_lock(root: str, name: str, *, shared: bool, dir_mode: int, file_mode: int,
              what: str) -> HeldLock:
    """Take lock ``name`` of ``root`` without waiting; raise LockHeld naming the holder.

    ``what`` says what the lock guards, for the message ("the root", "queue price").
    """
    folder = os.path.join(root, CONTROL_DIR)
    path = os.path.join(folder, f"{name}.lock")
    try:
        os.makedirs(root, mode=dir_mode, exist_ok=True)  # the root, then its control folder
        os.makedirs(folder, mode=dir_mode, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, file_mode)
    except OSError as exc:
        raise io_error(exc, "open the lock file", path) from exc
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise io_error(exc, "lock", path) from exc
        holder = _holder_text(path)
        if not holder and what == "the root" and not shared:
            raise LockHeld(f"ckptd daemons with a lead list already lead queues of {root}: "
                           "give this daemon a lead list of its own (setting lead: the queues "
                           "it leads), or stop them first") from None
        raise LockHeld(f"another ckptd daemon already leads {what} in {root}{holder}: stop "
                       "it first, or give this daemon another root (two daemons leading the "
                       "same jobs would run them twice)") from None
    if shared:
        os.ftruncate(fd, 0)  # no exclusive holder: what an earlier one wrote is stale
    return HeldLock(fd, path, exclusive=not shared)


def lock_holder(root: str, name: str) -> dict[str, object] | None:
    """Who holds lock ``name`` of ``root`` right now, or None when nobody does."""
    path = os.path.join(root, CONTROL_DIR, f"{name}.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder(path) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder(path: str) -> dict[str, object] | None:
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read(64 * 1024) or b"null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _holder_text(path: str) -> str:
    record = _holder(path)
    if not record:
        return ""
    parts = [f"pid {record.get('pid')}" if record.get("pid") else "",
             f"on {record.get('host')}" if record.get("host") else "",
             f"control {record.get('control')}" if record.get("control") else ""]
    shown = " ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""
