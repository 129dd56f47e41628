"""Watching local ``pending/`` folders for files that people and programs put there.

A producer may drop a job file into ``pending/`` by hand (write elsewhere, then ``mv``), an
operator may ``mv failed/X.json pending/`` or ``rm pending/Y.json``: the watcher turns those
into ("added" | "removed", queue, id) events for the daemon's loop. The daemon's own renames
show up too; the engine ignores what it already knows, and a "removed" is only believed after
checking the disk.

Two implementations with one interface:

- :class:`InotifyWatcher` (Linux): reads inotify directly, in the daemon's own loop (its file
  descriptor sits in the loop's poller), asking the kernel only for the events it needs
  (IN_MOVED_TO, IN_CLOSE_WRITE, IN_DELETE). This is the default where inotify exists, because
  watchdog's inotify observer holds every IN_MOVED_FROM for 0.5 s in a list that it searches
  linearly for each later move: at thousands of claims per second (each claim is a rename out
  of ``pending/``) that search took most of the daemon's CPU.
- :class:`WatchdogWatcher`: watchdog's observer (inotify, FSEvents, kqueue, ...) for the
  other platforms; a thread collects events and rings the loop's doorbell.

Both are backed up by the daemon's periodic rescan, which catches anything a watcher missed
(an inotify queue overflow, a folder created between two listings).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ckptd.core.names import is_valid_name
from ckptd.core.states import State
from ckptd.store.base import JOB_SUFFIX, QUEUE_CONTROLS, SIGNAL_DIR
from ckptd.store.file_names import split_job_name, split_pending_name

log = logging.getLogger(__name__)

Event = tuple[str, str, str]
"""("added" | "removed" | "queue" | "overflow", queue, pending file name without ``.json``:
the id, with its priority when the name carries one), or ("control", queue, name)
when a control file at the queue's top (``paused``, ``limits.json``) changed, or
("waiting" | "unwaiting", queue, job id) when a file appeared in (was deleted from)
``waiting/``, or ("signal", queue, file name) when one appeared in ``signals/``."""

_PENDING = State.PENDING.value
_SIDE = {State.WAITING.value: ("waiting", "unwaiting"), SIGNAL_DIR: ("signal", "")}
"""The other folders of a queue watched, and their events (appeared, deleted)."""


class Watcher(Protocol):
    """What the daemon needs from a watcher."""

    def start(self, queues: list[str]) -> None:
        """Begin watching the root and each queue's ``pending/``."""

    def watch_queue(self, queue: str) -> bool:
        """Watch one more queue (idempotent); False when its pending/ does not exist yet."""

    def reports_in_order(self, queue: str) -> bool:
        """True when every change of the queue's pending/ from now on will be reported, in
        the order it happened (so an event can be matched with this process's own write)."""

    def fileno(self) -> int | None:
        """A descriptor the loop polls for readiness, or None when the watcher rings."""

    def drain(self) -> list[Event]:
        """Return the events seen since the last call."""

    def stop(self) -> None:
        """Stop watching. Idempotent."""


def make_watcher(root: str, wake: Callable[[], None], kind: str = "auto",
                 dir_mode: int = 0o750) -> Watcher:
    """Return the best watcher for this platform (``kind``: auto, inotify or watchdog)."""
    if kind in ("auto", "inotify"):
        try:
            return InotifyWatcher(root, dir_mode)
        except OSError as exc:
            if kind == "inotify":
                raise
            log.info("inotify unavailable (%s); using watchdog", exc)
    return WatchdogWatcher(root, wake, dir_mode)


def _parse_path(root: str, folder: str, name: str) -> tuple[str, str] | None:
    """Return (queue, name without ``.json``) for ``<root>/<queue>/pending/<id>.json`` (or
    ``<id>,p<N>.json``), else None."""
    queue_dir, state = os.path.split(folder)
    if state != _PENDING or os.path.dirname(queue_dir) != root:
        return None
    queue = os.path.basename(queue_dir)
    if split_pending_name(name) is None or not is_valid_name(queue):
        return None
    return queue, name[:-len(JOB_SUFFIX)]


# -- inotify, read by hand --------------------------------------------------------------------

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_DONT_FOLLOW = 0x02000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")
_READ_SIZE = 1 << 16
_LARGEST_EVENT = _HEADER.size + 256  # a name of NAME_MAX bytes and its terminating zero
_PENDING_MASK = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_DELETE | _IN_ONLYDIR | _IN_DONT_FOLLOW
_ROOT_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR | _IN_DONT_FOLLOW
_QUEUE_MASK = (_IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE | _IN_ONLYDIR
               | _IN_DONT_FOLLOW)  # a queue's top: touch / rm / mv of its control files
_CONTROLS = frozenset(name.encode() for name in QUEUE_CONTROLS)
_SIDE_MASK = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_DELETE | _IN_ONLYDIR | _IN_DONT_FOLLOW


class InotifyWatcher:
    """inotify on Linux, polled by the daemon's loop (no thread)."""

    def __init__(self, root: str, dir_mode: int = 0o750) -> None:
        libc_name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(libc_name or None, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "no inotify in this C library")
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd
        self.root = os.path.abspath(root)
        self.dir_mode = dir_mode  # of the root, when the watcher is first to need it
        self._folders: dict[int, str] = {}
        self._queues: dict[int, str] = {}  # watch descriptor of a pending/ -> its queue
        self._tops: dict[int, str] = {}  # watch descriptor of a queue's folder -> the queue
        self._sides: dict[int, tuple[str, str]] = {}  # waiting/, signals/ -> (folder, queue)
        self._watched: set[str] = set()

    def _watch(self, path: str, mask: int, queue: str | None = None,
               top: str | None = None, side: tuple[str, str] | None = None) -> bool:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            if err not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("cannot watch %s (%s); relying on the periodic rescan", path,
                            os.strerror(err))
            return False
        self._folders[wd] = path
        if queue is not None:
            self._queues[wd] = queue
        if top is not None:
            self._tops[wd] = top
        if side is not None:
            self._sides[wd] = side
        return True

    def start(self, queues: list[str]) -> None:
        os.makedirs(self.root, mode=self.dir_mode, exist_ok=True)
        self._watch(self.root, _ROOT_MASK)
        for queue in queues:
            self.watch_queue(queue)

    def reports_in_order(self, queue: str) -> bool:
        return f"{self.root}/{queue}/{_PENDING}" in self._watched

    def watch_queue(self, queue: str) -> bool:
        path = f"{self.root}/{queue}/{_PENDING}"
        if path in self._watched:
            return True
        if not os.path.islink(path) and self._watch(path, _PENDING_MASK, queue):
            self._watched.add(path)
            top = f"{self.root}/{queue}"
            if top not in self._watched and not os.path.islink(top) \
                    and self._watch(top, _QUEUE_MASK, top=queue):
                self._watched.add(top)
            for folder in _SIDE:
                side = f"{top}/{folder}"
                if side not in self._watched and not os.path.islink(side) \
                        and self._watch(side, _SIDE_MASK, side=(folder, queue)):
                    self._watched.add(side)
            return True
        return False

    def fileno(self) -> int | None:
        return self.fd

    def drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            except OSError as exc:
                log.warning("reading inotify failed: %s", exc)
                return events
            self._parse(data, events)
            if len(data) <= _READ_SIZE - _LARGEST_EVENT:
                # Every event queued then fitted (a read returns as many whole events as fit):
                # no second read to learn that there are none. A later one wakes the poll.
                return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        offset, end = 0, len(data)
        unpack = _HEADER.unpack_from
        size = _HEADER.size
        queues = self._queues
        suffix = JOB_SUFFIX.encode()
        cut = len(suffix)
        while offset + size <= end:
            wd, mask, _cookie, length = unpack(data, offset)
            raw = data[offset + size: offset + size + length].rstrip(b"\0")
            offset += size + length
            queue = queues.get(wd)
            if queue is not None and not mask & (_IN_ISDIR | _IN_IGNORED):
                if raw.endswith(suffix):
                    stem = raw[:-cut].decode(errors="surrogateescape")
                    if is_valid_name(stem) or split_pending_name(stem + JOB_SUFFIX):
                        events.append(("removed" if mask & _IN_DELETE else "added", queue,
                                       stem))
                continue
            side = self._sides.get(wd)
            if side is not None and not mask & (_IN_ISDIR | _IN_IGNORED):
                name = raw.decode(errors="surrogateescape")
                added, deleted = _SIDE[side[0]]
                kind = deleted if mask & _IN_DELETE else added
                if kind == "signal":
                    events.append((kind, side[1], name))
                elif kind and raw.endswith(suffix) and is_valid_name(name[:-cut]):
                    events.append((kind, side[1], name[:-cut]))
                continue
            top = self._tops.get(wd)
            if top is not None and not mask & (_IN_ISDIR | _IN_IGNORED):
                if raw in _CONTROLS:
                    events.append(("control", top, raw.decode()))
                continue
            if mask & _IN_Q_OVERFLOW:
                events.append(("overflow", "", ""))
            elif mask & _IN_IGNORED:
                folder = self._folders.pop(wd, None)
                self._queues.pop(wd, None)
                self._tops.pop(wd, None)
                self._sides.pop(wd, None)
                if folder is not None:
                    self._watched.discard(folder)
            elif self._folders.get(wd) == self.root and mask & _IN_ISDIR:
                name = raw.decode(errors="surrogateescape")
                if is_valid_name(name):
                    events.append(("queue", name, ""))

    def stop(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- watchdog, for the other platforms ---------------------------------------------------------

class WatchdogWatcher:
    """watchdog's observer thread; events are queued and the loop's doorbell rung."""

    def __init__(self, root: str, wake: Callable[[], None], dir_mode: int = 0o750) -> None:
        from watchdog.events import (
            DirCreatedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileMovedEvent,
            FileSystemEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        self.root = os.path.abspath(root)
        self.dir_mode = dir_mode  # of the root, when the watcher is first to need it
        self.events: deque[Event] = deque()
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self._observer = Observer()
        self._filter: list[type[FileSystemEvent]] = [
            FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
            DirCreatedEvent]
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                src = os.fsdecode(event.src_path)
                if isinstance(event, DirCreatedEvent):
                    parent, name = os.path.split(src)
                    if parent == watcher.root and is_valid_name(name):
                        watcher._push(("queue", name, ""))
                elif isinstance(event, FileMovedEvent):
                    watcher._file(src, "removed")
                    watcher._file(os.fsdecode(event.dest_path), "added")
                elif isinstance(event, FileDeletedEvent):
                    watcher._file(src, "removed")
                else:
                    watcher._file(src, "added")

        self._handler = Handler()
        self._wake = wake

    def _push(self, event: Event) -> None:
        self.events.append(event)
        self._wake()

    def _file(self, path: str, kind: str) -> None:
        folder, name = os.path.split(path)
        if name in QUEUE_CONTROLS and os.path.dirname(folder) == self.root:
            queue = os.path.basename(folder)
            if is_valid_name(queue):
                self._push(("control", queue, name))
            return
        found = _parse_path(self.root, folder, name)
        if found is not None:
            self._push((kind, found[0], found[1]))
            return
        queue_dir, sub = os.path.split(folder)
        queue = os.path.basename(queue_dir)
        if sub in _SIDE and os.path.dirname(queue_dir) == self.root and is_valid_name(queue):
            event = _SIDE[sub][0 if kind == "added" else 1]
            job_id = name if sub == SIGNAL_DIR else split_job_name(name)
            if event and job_id is not None:
                self._push((event, queue, job_id))

    def start(self, queues: list[str]) -> None:
        os.makedirs(self.root, mode=self.dir_mode, exist_ok=True)
        self._observer.schedule(self._handler, self.root, recursive=False,
                                event_filter=self._filter)
        for queue in queues:
            self.watch_queue(queue)
        self._observer.start()

    def reports_in_order(self, queue: str) -> bool:
        return False  # events come through another thread: not matched with own writes

    def watch_queue(self, queue: str) -> bool:
        path = f"{self.root}/{queue}/{_PENDING}"
        with self._lock:
            if path in self._watched:
                return True
            if not os.path.isdir(path) or os.path.islink(path):
                return False
            try:
                self._observer.schedule(self._handler, path, recursive=False,
                                        event_filter=self._filter)
                # The queue's folder too: its control files (paused, limits.json); and the
                # files that wait (waiting/) and wake them (signals/).
                self._observer.schedule(self._handler, os.path.dirname(path),
                                        recursive=False, event_filter=self._filter)
                for folder in _SIDE:
                    side = os.path.join(os.path.dirname(path), folder)
                    if os.path.isdir(side) and not os.path.islink(side):
                        self._observer.schedule(self._handler, side, recursive=False,
                                                event_filter=self._filter)
            except OSError as exc:
                log.warning("cannot watch %s (%s); relying on the periodic rescan", path, exc)
                return False
            self._watched.add(path)
            return True

    def fileno(self) -> int | None:
        return None

    def drain(self) -> list[Event]:
        events = []
        while self.events:
            events.append(self.events.popleft())
        return events

    def stop(self) -> None:
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)
