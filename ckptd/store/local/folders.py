"""The folders of a local store: made on demand, and checked never to be links.

O_NOFOLLOW guards only the last part of a path, so every folder on the way to a job file is
checked here once per queue: no name in the store can lead outside the root.
"""

from __future__ import annotations

import os
import stat
import threading

from ckptd.core.config import FsyncMode
from ckptd.core.errors import StoreError
from ckptd.core.names import check_queue
from ckptd.store.base import QUEUE_DIRS
from ckptd.store.local.durable import fsync_dir, io_error


class QueueFolders:
    """The queue folders under one root."""

    def __init__(self, root: str, fsync: FsyncMode, dir_mode: int) -> None:
        self.root = root
        self.fsync = fsync
        self.dir_mode = dir_mode
        self._ready: set[str] = set()
        self._no_links: set[str] = set()  # queues whose folders were checked: none is a link
        self._lock = threading.Lock()

    def _check_links(self, queue: str) -> None:
        """Refuse a queue whose folder, or a state folder in it, is a symlink.

        O_NOFOLLOW guards only the last part of a path, so the folders on the way are
        checked here, once per queue (ensure_queue checks the folders it makes). A queue
        without a folder yet has nothing to follow; one with missing folders is checked again.
        """
        base = f"{self.root}/{queue}"
        complete = True
        for path in (base, *(f"{base}/{folder}" for folder in QUEUE_DIRS)):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                if path == base:
                    return
                complete = False
                continue
            except OSError as exc:
                raise io_error(exc, "check", path) from exc
            if not stat.S_ISDIR(info.st_mode):  # lstat: a symlink is never a folder here
                raise StoreError(f"{path} is a symlink or not a folder; ckptd does not follow "
                                 "links out of its root: replace it with a real folder")
        if complete:
            self._no_links.add(queue)

    def check(self, queue: str) -> None:
        """Refuse (StoreError) a queue whose folders are links; checked once per queue."""
        if queue not in self._no_links:
            self._check_links(queue)

    def side(self, queue: str, folder: str, create: bool) -> str:
        """The path of a folder made on demand (batches/, outputs/, quarantine/), checked
        not to be a symlink; created with ``dir_mode`` when ``create``."""
        self.check(queue)
        path = f"{self.root}/{queue}/{folder}"
        if create:
            self.ensure_queue(queue)
            os.makedirs(path, mode=self.dir_mode, exist_ok=True)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return path
        if not stat.S_ISDIR(info.st_mode):  # never read or write through a link
            raise StoreError(f"{path} is a symlink or not a folder; ckptd does not follow "
                             "links out of its root: replace it with a real folder")
        return path

    def ensure_queue(self, queue: str) -> None:
        """Create the queue's folders (mode ``dir_mode``); refuse symlinked folders."""
        if queue in self._ready:
            return
        check_queue(queue)
        with self._lock:
            if queue in self._ready:
                return
            try:
                os.makedirs(self.root, mode=self.dir_mode, exist_ok=True)
                base = f"{self.root}/{queue}"
                created = self._mkdir(base)
                for folder in QUEUE_DIRS:
                    created |= self._mkdir(f"{base}/{folder}")
                if created and self.fsync is not FsyncMode.NEVER:
                    # New folders must survive a power loss before files are put in them.
                    fsync_dir(base)
                    fsync_dir(self.root)
            except OSError as exc:
                raise io_error(exc, "create the folders of queue", f"{self.root}/{queue}") from exc
            self._ready.add(queue)

    def _mkdir(self, path: str) -> bool:
        try:
            os.mkdir(path, self.dir_mode)
            return True
        except FileExistsError:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise StoreError(f"{path} is a symlink or not a folder; ckptd does not follow "
                                 "links out of its root: replace it with a real folder") from None
            return False
