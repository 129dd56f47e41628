"""Signals on a local disk: files in ``<queue>/signals/`` named ``<id>.<name>.json``.

Anyone may drop one there (write elsewhere, then ``mv`` it in; an empty file is a signal
without data); the daemon's watcher sees it and wakes the job that waits for it. Writes and
deletes go through the store's group of operations (``PutSignal``, ``DeleteSignal``).
Mixed into :class:`~ckptd.store.local.backend.LocalStore`.
"""

from __future__ import annotations

import os

from ckptd.core.names import check_job_ref, check_queue
from ckptd.core.waits import parse_signal_file, signal_file
from ckptd.store.base import SIGNAL_DIR, SignalFile
from ckptd.store.local.files import read_or_none
from ckptd.store.local.folders import QueueFolders


class LocalSignals:
    """Reading a local store's signal files (a mixin: uses the store's folders)."""

    root: str
    folders: QueueFolders

    def signals(self, queue: str) -> list[SignalFile]:
        """See :meth:`ckptd.store.base.Store.signals`."""
        check_queue(queue)
        self.folders.check(queue)
        folder = f"{self.root}/{queue}/{SIGNAL_DIR}"
        found = []
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            return []
        with entries:
            for entry in entries:
                parsed = parse_signal_file(entry.name)
                if parsed is None:
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                found.append(SignalFile(parsed[0], parsed[1], mtime))
        return sorted(found, key=lambda f: (f.job_id, f.name))

    def read_signal(self, queue: str, job_id: str, name: str) -> bytes | None:
        """See :meth:`ckptd.store.base.Store.read_signal`."""
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        return read_or_none(f"{self.root}/{queue}/{SIGNAL_DIR}/{signal_file(job_id, name)}")
