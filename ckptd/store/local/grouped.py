"""A group of store operations on a local disk, in two steps, and the syncs around them.

Every write of a group is first *staged*: its bytes go into a new file in ``tmp/``, where
nobody looks. Then the group is *published*: each operation is made visible, in order, by
renames (and removals) into the state folders. Durability sits between and after: a file's
data must be on the disk before its rename makes it visible (else a power cut could leave an
empty file under the final name), and the renames must be on the disk before anyone is
told (accepted, done).

:meth:`GroupedWrites.apply` does both steps in one call with the syncs of the store's fsync
mode (``always``: each file and each folder; ``batch``: one flush of the data, then the
folders; ``never``: none). A caller can also run the steps itself
(:meth:`GroupedWrites.stage`, :meth:`GroupedWrites.publish`, :meth:`GroupedWrites.flush`):
the daemon does so with ``batch`` so that one flush serves two groups, the data of the
group it stages and the renames of the group it published
before (:mod:`ckptd.daemon.engine.group_commit`). That flush is a ``syncfs(2)``: it writes
every dirty file of the file system and commits its journal, which makes the renames done
before it durable as well (``sync(2)``: "all pending modifications to filesystem metadata
and cached file data").
Mixed into :class:`~ckptd.store.local.backend.LocalStore`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ckptd.core import crashpoints
from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError
from ckptd.core.names import check_job_ref
from ckptd.store.base import TMP_DIR, Op, Outcome
from ckptd.store.local.durable import (
    fsync_dir,
    io_error,
    open_dir,
    sync_filesystem,
    unlink_quietly,
    write_new,
)
from ckptd.store.local.reaper import Reaper


@dataclass
class Staged:
    """A group whose data is written into ``tmp/`` and not yet visible."""

    ops: Sequence[Op]
    tmp: list[str | None]  # per op: its staged file (ops without data: None)
    outcomes: list[Outcome]  # per op: an error found so far, else None
    appeared: set[str] = field(default_factory=set)  # folders where names appeared
    went: set[str] = field(default_factory=set)  # folders where names went away

    @property
    def has_data(self) -> bool:
        """Whether a file of it waits for its data to be flushed before it is renamed."""
        return any(t is not None for t in self.tmp)


class GroupedWrites:
    """Applying groups of operations (a mixin of the local store: uses its files)."""

    root: str
    fsync: FsyncMode
    file_mode: int
    _counter: itertools.count[int]
    _root_fd: int | None
    _reaper: Reaper
    _discarded: list[str]

    def ensure_queue(self, queue: str) -> None:
        raise NotImplementedError  # LocalStore's

    def _commit(self, op: Op, tmp: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise NotImplementedError  # LocalStore's: one op made visible

    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        mode = self.fsync
        staged = self.stage(ops, sync_each=mode is FsyncMode.ALWAYS)
        if mode is FsyncMode.BATCH and staged.has_data:
            # Group commit: one flush makes the data of every staged file durable before
            # any of them is renamed into sight (see write_new for why that order matters).
            try:
                self.flush()
            except CkptdError as exc:
                self.drop_staged(staged, exc)
            crashpoints.reached("after_file_fsync")
        self.publish(staged, sync_each=mode is FsyncMode.ALWAYS)
        if mode is FsyncMode.BATCH and (staged.appeared or staged.went):
            # The renames of the whole group become durable here, before any is reported:
            # first where names appeared, then where they went away, as in always mode.
            try:
                for folder in (*sorted(staged.appeared), *sorted(staged.went - staged.appeared)):
                    fsync_dir(folder)
            except OSError as exc:
                error = io_error(exc, "flush", self.root)
                staged.outcomes = [error if o is None else o for o in staged.outcomes]
            crashpoints.reached("after_dir_fsync")
        return staged.outcomes

    def stage(self, ops: Sequence[Op], sync_each: bool = False) -> Staged:
        """Check every op's names and write every new file into ``tmp/`` (each one synced
        with ``sync_each``); nothing is visible yet. Errors are kept per op."""
        staged = Staged(ops, [None] * len(ops), [None] * len(ops))
        for i, op in enumerate(ops):
            try:
                check_job_ref(op.queue, op.job_id)
                self.ensure_queue(op.queue)
                data = getattr(op, "data", None)
                if data is not None:
                    staged.tmp[i] = self._write_tmp(op.queue, op.job_id, data, sync_each)
            except CkptdError as exc:
                staged.outcomes[i] = exc
            except OSError as exc:
                staged.outcomes[i] = io_error(exc, "write into",
                                              f"{self.root}/{op.queue}/{TMP_DIR}")
        return staged

    def publish(self, staged: Staged, sync_each: bool = False) -> list[Outcome]:
        """Make each staged op visible, in order (renames, removals), syncing its folders
        with ``sync_each`` (the new name first); return the outcomes. Its data must be
        durable already where the fsync mode asks for it."""
        outcomes = staged.outcomes
        for i, op in enumerate(staged.ops):
            if outcomes[i] is not None:
                continue
            tmp = staged.tmp[i]
            try:
                new_names, old_names = self._commit(op, tmp)
                if sync_each:
                    # This op's names are durable before it is reported: the new name first.
                    for folder in (*new_names, *old_names):
                        fsync_dir(folder)
                    crashpoints.reached("after_dir_fsync")
                else:
                    staged.appeared.update(new_names)
                    staged.went.update(old_names)
            except CkptdError as exc:
                outcomes[i] = exc
            except OSError as exc:
                outcomes[i] = io_error(exc, "update", f"{self.root}/{op.queue}")
            if outcomes[i] is not None and tmp is not None:
                unlink_quietly(tmp)
        if self._discarded:
            self._reaper.add(self._discarded)
            self._discarded = []
        return outcomes

    def flush(self) -> None:
        """Make everything written and renamed on this file system so far durable, with one
        ``syncfs``; raises StoreError. Safe to call from another thread than the one that
        stages and publishes (the daemon's flushing thread)."""
        try:
            sync_filesystem(self._root())
        except OSError as exc:
            raise io_error(exc, "flush", self.root) from exc

    def drop_staged(self, staged: Staged, error: CkptdError) -> None:
        """Give up on the staged files of a group (their flush failed): remove them, and
        answer their ops with ``error``."""
        for i, tmp in enumerate(staged.tmp):
            if tmp is not None:
                staged.outcomes[i] = error
                unlink_quietly(tmp)
                staged.tmp[i] = None

    def _write_tmp(self, queue: str, job_id: str, data: bytes, sync: bool) -> str:
        while True:
            path = (f"{self.root}/{queue}/{TMP_DIR}/{job_id}.{os.getpid()}."
                    f"{next(self._counter)}")
            try:
                write_new(path, data, self.file_mode, sync)
                return path
            except FileExistsError:  # a leftover of an earlier process with our pid
                continue

    def _root(self) -> int:
        if self._root_fd is None:
            self._root_fd = open_dir(self.root)
        return self._root_fd
