"""Reading job files on a local disk, and the pending files a daemon keeps until their claim."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ckptd.core.errors import JobNotFound, MalformedJob
from ckptd.core.states import STATES, State
from ckptd.store.base import REASON_SUFFIX, Foreign, split_job_name
from ckptd.store.file_names import split_pending_name
from ckptd.store.local.durable import fsync_dir, io_error, unlink_quietly, write_new

O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
READ_CHUNK = 64 * 1024  # job files are small: most are read with one call
KEEP_BYTES = 64 * 1024 * 1024  # pending files kept in memory until their claim, at most
KEEP_ENTRIES = 200_000


def _never(queue: str) -> bool:
    return False


@dataclass(slots=True)
class Kept:
    """A pending file kept in memory, and how many watcher events of its own writes are
    still to come."""

    data: bytes
    events: int


class KeptPending:
    """The pending files this process wrote, kept until their claim so it need not read
    them back (:meth:`ckptd.store.base.Store.keep_own_pending`).

    Each entry expects one watcher event, that of its own rename into ``pending/``; any
    further event means another writer replaced or rewrote the file, and the entry goes.
    """

    def __init__(self) -> None:
        self.watched: Callable[[str], bool] = _never  # queues whose changes are reported
        self.entries: dict[tuple[str, str], Kept] = {}
        self._bytes = 0

    def get(self, queue: str, job_id: str) -> bytes | None:
        """The kept bytes of ``pending/<id>``, or None."""
        entry = self.entries.get((queue, job_id))
        return None if entry is None else entry.data

    def add(self, queue: str, job_id: str, data: bytes, events: int = 1) -> None:
        """Keep a file just written into ``pending/`` (unless full: the oldest are claimed
        first, so keep those, not the newest); ``events``: how many watcher events of its
        own writes are still to come (0 for a file read after its event)."""
        if self._bytes + len(data) > KEEP_BYTES or len(self.entries) >= KEEP_ENTRIES:
            return
        if (queue, job_id) in self.entries:
            return
        self.entries[(queue, job_id)] = Kept(data, events)
        self._bytes += len(data)

    def changed(self, queue: str, job_id: str) -> None:
        """A watcher saw ``pending/<id>`` appear or change."""
        entry = self.entries.get((queue, job_id))
        if entry is None:
            return
        if entry.events > 0:  # the event of our own write: expected, nothing changed
            entry.events -= 1
        else:  # another writer replaced or rewrote it: read it again at the claim
            self.drop(queue, job_id)

    def drop(self, queue: str, job_id: str) -> None:
        """Forget one file (claimed, cancelled, changed by someone else)."""
        entry = self.entries.pop((queue, job_id), None)
        if entry is not None:
            self._bytes -= len(entry.data)

    def clear(self) -> None:
        """Forget every file (the watcher lost events: what changed is unknown)."""
        self.entries.clear()
        self._bytes = 0


def read_or_missing(path: str, missing: str) -> bytes:
    """The bytes of ``path``; JobNotFound(``missing``) when absent; a StoreError otherwise."""
    try:
        return read_file(path)
    except FileNotFoundError:
        raise JobNotFound(missing) from None
    except OSError as exc:
        raise io_error(exc, "read", path) from exc


def read_or_none(path: str) -> bytes | None:
    """The bytes of ``path``; None when absent; a StoreError otherwise."""
    try:
        return read_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise io_error(exc, "read", path) from exc


def read_file(path: str) -> bytes:
    try:
        fd = os.open(path, O_READ)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # not a job file: callers quarantine what is malformed
            raise MalformedJob(f"{path} is a symlink; ckptd does not follow links") from None
        raise
    try:
        first = os.read(fd, READ_CHUNK)
        if len(first) < READ_CHUNK:  # a short read of a regular file is its end: one call
            return first
        chunks = [first]
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def quarantine_file(folder: str, name: str, quarantine: str, reason: str, *, mode: int,
                    sync: bool, unique: str) -> str:
    """Move ``folder/name`` into ``quarantine`` with ``<name>.reason.txt`` beside it; return
    where it went (a file already gone is not an error)."""
    target = f"{quarantine}/{name}"
    if os.path.lexists(target):
        target = f"{quarantine}/{name}.{time.strftime('%Y%m%dT%H%M%S')}.{unique}"
    # The reason first: whoever sees the quarantined file can read why at once.
    staged = target + REASON_SUFFIX + f".tmp{os.getpid()}"
    write_new(staged, reason.encode() + b"\n", mode, sync)
    os.replace(staged, target + REASON_SUFFIX)
    try:
        os.rename(f"{folder}/{name}", target)
    except FileNotFoundError:
        unlink_quietly(target + REASON_SUFFIX)
        return target
    if sync:
        fsync_dir(quarantine)
        fsync_dir(folder)
    return target


def foreign_files(queue_dir: str, queue: str) -> list[Foreign]:
    """What lies in a queue's state folders that is not a job file (by name or by kind)."""
    found = []
    for state in STATES:
        folder = f"{queue_dir}/{state.value}"
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        split = split_pending_name if state is State.PENDING else split_job_name
        for name in names:
            path = f"{folder}/{name}"
            if split(name) is None or not os.path.isfile(path) or os.path.islink(path):
                found.append(Foreign(queue, state.value, name))
    return sorted(found, key=lambda f: (f.folder, f.name))
