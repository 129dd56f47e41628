"""Operator controls on a local disk: the files at a queue's top, and archives.

``<queue>/paused`` and ``<queue>/limits.json`` are plain files that ``touch``, ``rm`` and an
editor change (the daemon's watcher sees them); ``<queue>/schedules/<name>.json`` records a
schedule's last tick. Retention moves finished jobs under ``<queue>/archive/<DATE>/``.
Mixed into :class:`~ckptd.store.local.backend.LocalStore`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ckptd.core.config import FsyncMode
from ckptd.core.ids import id_stamp, made_after
from ckptd.core.names import check_job_ref, check_name, check_queue
from ckptd.core.states import State
from ckptd.store.base import (
    ARCHIVE_DIR,
    BLOB_DIR,
    BLOB_KINDS,
    CHECKPOINT_DIR,
    JOB_SUFFIX,
    TMP_DIR,
    check_control,
    split_job_name,
)
from ckptd.store.local.durable import (
    fsync_dir,
    holds_entries,
    io_error,
    unlink_quietly,
    write_new,
)
from ckptd.store.local.files import KeptPending, read_or_none
from ckptd.store.local.folders import QueueFolders

YIELD_EVERY = 256  # entries a listing of finished jobs reads before it lets the loop run


class LocalControls:
    """Control files and archives of a local store (a mixin: uses the store's folders)."""

    root: str
    fsync: FsyncMode
    file_mode: int
    dir_mode: int
    folders: QueueFolders
    _kept: KeptPending

    def _control_path(self, queue: str, name: str) -> str:
        check_queue(queue)
        check_control(name)
        self.folders.check(queue)
        return f"{self.root}/{queue}/{name}"

    def read_control(self, queue: str, name: str) -> bytes | None:
        path = self._control_path(queue, name)
        return read_or_none(path)

    def write_control(self, queue: str, name: str, data: bytes) -> None:
        path = self._control_path(queue, name)
        self.folders.ensure_queue(queue)
        folder = os.path.dirname(path)
        sync = self.fsync is not FsyncMode.NEVER
        try:
            os.makedirs(folder, mode=self.dir_mode, exist_ok=True)
            staged = f"{self.root}/{queue}/{TMP_DIR}/{os.path.basename(name)}.{os.getpid()}"
            unlink_quietly(staged)
            write_new(staged, data, self.file_mode, sync)
            os.replace(staged, path)  # a reader sees the old file or the new one, whole
            if sync:
                fsync_dir(folder)
        except OSError as exc:
            raise io_error(exc, "write", path) from exc

    def delete_control(self, queue: str, name: str) -> None:
        path = self._control_path(queue, name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise io_error(exc, "remove", path) from exc
        if self.fsync is not FsyncMode.NEVER:
            fsync_dir(os.path.dirname(path))

    def finished(self, queue: str, state: State, cutoff: float | None = None
                 ) -> list[tuple[str, float]]:
        check_queue(queue)
        self.folders.check(queue)
        folder = f"{self.root}/{queue}/{state.value}"
        found = []
        after = id_stamp(cutoff) if cutoff is not None else None
        try:
            with os.scandir(folder) as entries:
                for n, entry in enumerate(entries):
                    if not n % YIELD_EVERY:
                        time.sleep(0)  # on the retention thread: the loop gets its turn
                    job_id = split_job_name(entry.name)
                    if job_id is None:
                        continue
                    if after is not None and made_after(job_id, after):
                        continue  # created after the cutoff: cannot have ended before it
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found.append((job_id, max(info.st_mtime, info.st_ctime)))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise io_error(exc, "list", folder) from exc
        found.sort(key=lambda pair: pair[1])
        return found

    def remove_finished(self, queue: str, state: State, job_ids: Sequence[str]) -> list[str]:
        """Plain unlinks (no shared state with
        :meth:`~ckptd.store.local.backend.LocalStore.apply`), not synced: a removal that a
        crash undoes is done again by the next sweep."""
        check_queue(queue)
        self.folders.check(queue)
        base = f"{self.root}/{queue}"
        removed = []
        try:
            checkpoints = holds_entries(f"{base}/{CHECKPOINT_DIR}")
            blobs = holds_entries(f"{base}/{BLOB_DIR}")
            for job_id in job_ids:
                check_job_ref(queue, job_id)
                try:
                    os.unlink(f"{base}/{state.value}/{job_id}{JOB_SUFFIX}")
                except FileNotFoundError:
                    continue
                removed.append(job_id)
                if checkpoints:
                    unlink_quietly(f"{base}/{CHECKPOINT_DIR}/{job_id}{JOB_SUFFIX}")
                if blobs:
                    for kind in BLOB_KINDS:
                        unlink_quietly(f"{base}/{BLOB_DIR}/{job_id}.{kind}")
        except OSError as exc:
            raise io_error(exc, "remove finished jobs from", f"{base}/{state.value}") from exc
        return removed

    def archive(self, queue: str, state: State, job_id: str, folder: str) -> bool:
        check_job_ref(queue, job_id)
        check_name(folder, "archive folder")
        self.folders.check(queue)
        base = f"{self.root}/{queue}"
        target = f"{base}/{ARCHIVE_DIR}/{folder}"
        try:
            os.makedirs(target, mode=self.dir_mode, exist_ok=True)
            # The blobs first: once the job file is gone from its state, nothing refers to
            # the blobs' old place any more.
            for kind in BLOB_KINDS:
                try:
                    os.rename(f"{base}/{BLOB_DIR}/{job_id}.{kind}", f"{target}/{job_id}.{kind}")
                except FileNotFoundError:
                    pass
            try:
                os.rename(f"{base}/{state.value}/{job_id}{JOB_SUFFIX}",
                          f"{target}/{job_id}{JOB_SUFFIX}")
            except FileNotFoundError:
                return False
            unlink_quietly(f"{base}/{CHECKPOINT_DIR}/{job_id}{JOB_SUFFIX}")
            if self.fsync is not FsyncMode.NEVER:
                fsync_dir(target)
                fsync_dir(f"{base}/{state.value}")
        except OSError as exc:
            raise io_error(exc, "archive", f"{base}/{state.value}/{job_id}{JOB_SUFFIX}") from exc
        return True

