"""Deleting discarded files off the hot path (the local store's replaced copies)."""

from __future__ import annotations

import atexit
import threading

from ckptd.store.local.durable import unlink_quietly


class Reaper:
    """Deletes discarded files on a thread of its own, which ends when idle for a second.

    On some disks (ext4 with ``discard``) deleting a small file costs ten times its rename,
    and the daemon discards one file per finished job. A discarded file is already out of
    every folder a reader looks in; a crash before its deletion leaves it in tmp/, where
    recovery removes it (see :func:`ckptd.store.base.is_trash`).
    """

    def __init__(self) -> None:
        self._paths: list[str] = []
        self.owned: set[str] = set()  # added, not yet deleted: not anybody's leftovers
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._registered = False

    def add(self, paths: list[str]) -> None:
        with self._cond:
            self._paths.extend(paths)
            self.owned.update(paths)
            if self._thread is None:
                if not self._registered:  # a short-lived CLI deletes its garbage on exit
                    atexit.register(self.stop)
                    self._registered = True
                self._thread = threading.Thread(target=self._run, name="ckptd-reaper",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._paths and not self._stopping:
                    self._cond.wait(1.0)
                paths, self._paths = self._paths, []
                if not paths:
                    self._thread = None
                    return
            self._delete(paths)

    def _delete(self, paths: list[str]) -> None:
        for path in paths:
            unlink_quietly(path)
        with self._cond:
            self.owned.difference_update(paths)

    def stop(self) -> None:
        """Delete what is left and wait for the thread. Idempotent."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._cond:
            paths, self._paths = self._paths, []
            self._stopping = False
        self._delete(paths)
