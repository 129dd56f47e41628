"""Watching local ``pending/`` folders with watchdog (inotify on Linux).

A producer may drop a job file into ``pending/`` by hand (write elsewhere, then ``mv``), an
operator may ``mv failed/X.json pending/`` or ``rm pending/Y.json``: the watcher turns those
into ("added" | "removed", queue, id) events for the daemon's loop, and rings its doorbell
(a callback) so the loop wakes at once. The daemon's own renames show up too; the engine
ignores what it already knows, and a "removed" is only believed after checking the disk.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable

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

from .names import is_valid_name
from .states import State
from .store.base import JOB_SUFFIX, split_job_name

log = logging.getLogger(__name__)

Event = tuple[str, str, str]
"""("added" | "removed", queue, job id)."""

_PENDING = State.PENDING.value
_EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent,
                                         FileClosedEvent, DirCreatedEvent]


class PendingWatcher(FileSystemEventHandler):
    """Reports files appearing in and vanishing from every queue's ``pending/``."""

    def __init__(self, root: str, wake: Callable[[], None]) -> None:
        super().__init__()
        self.root = os.path.abspath(root)
        self.wake = wake
        self.events: deque[Event] = deque()
        self._observer = Observer()
        self._watched: set[str] = set()
        self._lock = threading.Lock()

    def start(self, queues: list[str]) -> None:
        """Watch the root (for new queues) and the ``pending/`` of each queue."""
        os.makedirs(self.root, exist_ok=True)
        self._observer.schedule(self, self.root, recursive=False, event_filter=_EVENTS)
        for queue in queues:
            self.watch_queue(queue)
        self._observer.start()

    def watch_queue(self, queue: str) -> None:
        """Start watching ``<queue>/pending/`` if it exists and is not watched yet."""
        path = f"{self.root}/{queue}/{_PENDING}"
        with self._lock:
            if path in self._watched or not os.path.isdir(path) or os.path.islink(path):
                return
            try:
                self._observer.schedule(self, path, recursive=False, event_filter=_EVENTS)
            except OSError as exc:
                log.warning("cannot watch %s (%s); relying on the periodic rescan", path, exc)
                return
            self._watched.add(path)

    def stop(self) -> None:
        """Stop the observer thread and wait for it. Idempotent."""
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)

    def drain(self) -> list[Event]:
        """Return and forget the events seen since the last call."""
        events = []
        while self.events:
            events.append(self.events.popleft())
        return events

    # -- watchdog callbacks (observer thread) ----------------------------------------------

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirCreatedEvent):
            self._new_folder(os.fsdecode(event.src_path))
            return
        if isinstance(event, FileMovedEvent):
            self._file(os.fsdecode(event.src_path), "removed")
            self._file(os.fsdecode(event.dest_path), "added")
        elif isinstance(event, FileDeletedEvent):
            self._file(os.fsdecode(event.src_path), "removed")
        else:  # created, or closed after writing (a producer writing in place)
            self._file(os.fsdecode(event.src_path), "added")

    def _file(self, path: str, kind: str) -> None:
        if not path.endswith(JOB_SUFFIX):
            return
        folder, name = os.path.split(path)
        queue_dir, state = os.path.split(folder)
        if state != _PENDING or os.path.dirname(queue_dir) != self.root:
            return
        job_id = split_job_name(name)
        queue = os.path.basename(queue_dir)
        if job_id is None or not is_valid_name(queue):
            return
        self.events.append((kind, queue, job_id))
        self.wake()

    def _new_folder(self, path: str) -> None:
        parent, name = os.path.split(path)
        if parent == self.root and is_valid_name(name):
            # A new queue: its pending/ may appear a moment later; the rescan catches that.
            self.watch_queue(name)
            self.events.append(("queue", name, ""))
            self.wake()
