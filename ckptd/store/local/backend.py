"""The local-disk store: state changes are rename(2), durability is fsync.

The fast path, calling ``os`` directly. A pure move is one rename; a move that rewrites the
job writes it in ``tmp/``, renames it into the target folder, then removes the old copy (a
crash in between leaves two copies: the higher ``rev`` wins, :mod:`ckptd.core.states`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator

from ckptd.codec import loads
from ckptd.core import crashpoints
from ckptd.core.config import FsyncMode
from ckptd.core.errors import (
    InvalidName,
    JobExists,
    JobNotFound,
    NoSpace,
    StoreError,
)
from ckptd.core.names import check_job_ref, check_queue, is_valid_name
from ckptd.core.states import STATES, State, other_states
from ckptd.core.waits import signal_file
from ckptd.store.base import (
    BATCH_DIR,
    BLOB_DIR,
    BLOB_KINDS,
    CHECKPOINT_DIR,
    JOB_SUFFIX,
    OUTPUT_DIR,
    QUARANTINE_DIR,
    REASON_SUFFIX,
    SIGNAL_DIR,
    TMP_DIR,
    TRASH_MARK,
    Delete,
    DeleteCheckpoint,
    DeleteSignal,
    Foreign,
    Leftover,
    Move,
    Op,
    PutBlob,
    PutCheckpoint,
    PutManifest,
    PutNew,
    PutOutput,
    PutSignal,
    Store,
    check_blob_kind,
    check_folder,
    split_job_name,
)
from ckptd.store.file_names import job_names, pending_name
from ckptd.store.local.controls import LocalControls
from ckptd.store.local.durable import (
    fsync_dir,
    io_error,
    rename_noreplace,
    unlink_quietly,
)
from ckptd.store.local.files import (
    O_READ,
    KeptPending,
    foreign_files,
    quarantine_file,
    read_file,
    read_or_missing,
    read_or_none,
)
from ckptd.store.local.folders import QueueFolders
from ckptd.store.local.grouped import GroupedWrites
from ckptd.store.local.listing import count_jobs, folder_chunks, folder_names
from ckptd.store.local.locks import HeldLock, lock_holder, take_lock
from ckptd.store.local.reaper import Reaper
from ckptd.store.local.signal_files import LocalSignals

log = logging.getLogger(__name__)

ROOT_LOCK = "root"
UNLINK_WINDOW = 64
SLOW_UNLINK = 50e-6  # seconds: deleting costs more than this: delete off the loop
MIN_FREE_BYTES = 256 * 1024  # below this a disk counts as full: claims would pile up answers


def _made_by(path: str, data: bytes) -> bool:
    """Whether the job file at ``path`` is the one ``data`` created (same ``created``): a
    PutNew's own job that a daemon claimed (or even ran) at once, not an older job."""
    try:
        with open(path, "rb") as handle:
            theirs = loads(handle.read())
        return isinstance(theirs, dict) and theirs.get("created") == loads(data).get("created")
    except (OSError, ValueError):
        return False


class LocalStore(LocalControls, LocalSignals, GroupedWrites, Store):
    """A store in a folder of the local file system."""

    def __init__(self, root: str, fsync: FsyncMode = FsyncMode.BATCH, *,
                 file_mode: int = 0o640, dir_mode: int = 0o750) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root
        self.fsync = FsyncMode(fsync)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.folders = QueueFolders(self.root, self.fsync, dir_mode)
        self._counter = itertools.count()
        self._root_fd: int | None = None
        self._reaper = Reaper()
        self._discarded: list[str] = []  # this group's discarded files, for the reaper
        self._unlink_inline = True  # until deleting proves slow (see _discard)
        self._kept = KeptPending()  # pending files this process wrote, until their claim
        self._unlink_costs: list[float] = []

    # -- paths -----------------------------------------------------------------------------

    def _job_path(self, queue: str, state: State, job_id: str, priority: int = 0,
                  key: str = "") -> str:
        if (priority or key) and state is State.PENDING:
            return f"{self.root}/{queue}/{state._value_}/{pending_name(job_id, priority, key)}"
        return f"{self.root}/{queue}/{state._value_}/{job_id}{JOB_SUFFIX}"

    def _path(self, queue: str, folder: str, name: str) -> str:
        return f"{self.root}/{queue}/{folder}/{name}"

    def ensure_queue(self, queue: str) -> None:
        """Create the queue's folders (mode ``dir_mode``); refuse symlinked folders."""
        self.folders.ensure_queue(queue)

    # -- capabilities ----------------------------------------------------------------------

    def keep_own_pending(self, watched: Callable[[str], bool]) -> bool:
        self._kept.watched = watched
        return True

    def pending_changed(self, queue: str, job_id: str) -> None:
        self._kept.changed(queue, job_id)

    def forget_prefetched(self) -> None:
        self._kept.clear()

    def lock(self, name: str, *, shared: bool = False) -> HeldLock:
        what = "the root" if name == ROOT_LOCK else f"queue {name.removeprefix('queue-')}"
        return take_lock(self.root, name, shared=shared, dir_mode=self.dir_mode,
                         file_mode=self.file_mode, what=what)

    def lock_holder(self, name: str) -> dict[str, object] | None:
        return lock_holder(self.root, name)

    def probe_access(self) -> None:
        """Raise NoSpace when the disk has (nearly) no free space or inodes left."""
        try:
            info = os.statvfs(self.root)
        except OSError as exc:
            raise io_error(exc, "check", self.root) from exc
        if info.f_bavail * info.f_frsize < MIN_FREE_BYTES or (info.f_files and
                                                              info.f_favail == 0):
            raise NoSpace(f"no space left on the disk of {self.root}: free space (or "
                          "inodes) so that answers can be written")

    # -- reading ---------------------------------------------------------------------------

    def root_exists(self) -> bool:
        return os.path.isdir(self.root)

    def queues(self) -> list[str]:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise io_error(exc, "list", self.root) from exc
        with entries:
            names = [e.name for e in entries
                     if is_valid_name(e.name) and e.is_dir(follow_symlinks=False)]
        found = []
        for name in sorted(names):
            if not any(os.path.isdir(f"{self.root}/{name}/{s.value}") for s in STATES):
                continue
            try:
                self.folders.check(name)
            except StoreError as exc:  # skipped, not followed: the other queues still run
                log.error("skipped queue %s: %s", name, exc)
                continue
            found.append(name)
        return found

    def _folder(self, queue: str, state: State) -> str:
        check_queue(queue)
        self.folders.check(queue)
        return f"{self.root}/{queue}/{state.value}"

    def ids(self, queue: str, state: State) -> list[str]:
        return sorted(found[0] for found in job_names(folder_names(self._folder(queue, state)),
                                                        state))

    def pending_names(self, queue: str) -> list[str]:
        return [pending_name(*found) for found in job_names(
            folder_names(self._folder(queue, State.PENDING)), State.PENDING)]

    def listing_chunks(self, queue: str, state: State, size: int = 65536
                       ) -> Iterator[list[str]]:
        return folder_chunks(self._folder(queue, state), size)

    def count(self, queue: str, state: State) -> int:
        return count_jobs(self._folder(queue, state), state)

    def read(self, queue: str, state: State, job_id: str, priority: int = 0,
             key: str = "") -> bytes:
        if state is State.PENDING and self._kept.entries:
            kept = self._kept.get(queue, job_id)
            if kept is not None:
                return kept
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        path = self._job_path(queue, state, job_id, priority, key)
        try:
            return read_file(path)
        except FileNotFoundError:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/") from None
        except OSError as exc:
            raise io_error(exc, "read", path) from exc

    def exists(self, queue: str, state: State, job_id: str, priority: int = 0,
               key: str = "") -> bool:
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        try:
            os.lstat(self._job_path(queue, state, job_id, priority, key))
            return True
        except FileNotFoundError:
            return False

    def mtime(self, queue: str, state: State, job_id: str, priority: int = 0,
              key: str = "") -> float:
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        try:
            info = os.lstat(self._job_path(queue, state, job_id, priority, key))
        except FileNotFoundError:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/") from None
        # A claim is a plain rename, which updates ctime but not mtime: report the later.
        return max(info.st_mtime, info.st_ctime)

    def read_checkpoint(self, queue: str, job_id: str) -> bytes | None:
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        path = self._path(queue, CHECKPOINT_DIR, job_id + JOB_SUFFIX)
        return read_or_none(path)

    def read_blob(self, queue: str, job_id: str, kind: str) -> bytes:
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        path = self._path(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        return read_or_missing(path, f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")

    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        check_job_ref(queue, job_id)
        self.folders.check(queue)
        path = self._path(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        try:
            fd = os.open(path, O_READ)
        except FileNotFoundError:
            raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/") from None
        except OSError as exc:
            raise io_error(exc, "read", path) from exc
        try:
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def read_manifest(self, queue: str, batch: str) -> bytes:
        check_job_ref(queue, batch)
        path = f"{self.folders.side(queue, BATCH_DIR, False)}/{batch}{JOB_SUFFIX}"
        return read_or_missing(path, f"no batch {batch!r} in {queue}/{BATCH_DIR}/")

    def read_output(self, queue: str, name: str) -> bytes:
        check_job_ref(queue, name)
        path = f"{self.folders.side(queue, OUTPUT_DIR, False)}/{name}"
        return read_or_missing(path, f"no output {name!r} in {queue}/{OUTPUT_DIR}/")

    def delete_manifest(self, queue: str, batch: str) -> None:
        check_job_ref(queue, batch)
        folder = self.folders.side(queue, BATCH_DIR, False)
        try:
            os.unlink(f"{folder}/{batch}{JOB_SUFFIX}")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise io_error(exc, "remove the manifest of", batch) from exc
        if self.fsync is not FsyncMode.NEVER:
            fsync_dir(folder)

    def manifests(self, queue: str) -> list[str]:
        check_queue(queue)
        try:
            names = os.listdir(self.folders.side(queue, BATCH_DIR, False))
        except FileNotFoundError:
            return []
        return sorted(i for i in map(split_job_name, names) if i is not None)

    # -- writing ---------------------------------------------------------------------------

    def _commit(self, op: Op, tmp: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Make one op visible; return the folders whose entries changed: those where a name
        appeared, then those where one went away (synced in that order, so that a power
        loss can only leave a job in two folders, never in none)."""
        q = f"{self.root}/{op.queue}"
        if isinstance(op, Move):
            if self._kept.entries and op.src is State.PENDING:
                self._kept.drop(op.queue, op.job_id)  # claimed (or rewritten): read anew
            src = self._job_path(op.queue, op.src, op.job_id, op.priority, op.key)
            dst = self._job_path(op.queue, op.dst, op.job_id, op.priority, op.key)
            if op.src is op.dst:
                if tmp is None:  # nothing to change, but say whether it is there
                    if not os.path.lexists(src):
                        raise self._not_in(op.queue, op.src, op.job_id)
                    return (), ()
                if not os.path.lexists(src):
                    raise self._not_in(op.queue, op.src, op.job_id)
                os.rename(tmp, dst)  # a rewrite in place replaces its own old copy
                crashpoints.reached("after_rename")
                return (f"{q}/{op.dst._value_}",), ()
            if tmp is None:
                # Never onto an existing name: another process (or a leftover of a crash)
                # may hold the job there, and a plain rename would silently replace it.
                self._rename_noreplace(src, dst, op)
                crashpoints.reached("after_rename")
                return (f"{q}/{op.dst._value_}",), (f"{q}/{op.src._value_}",)
            if not op.src_known and not os.path.lexists(src):
                raise self._not_in(op.queue, op.src, op.job_id)  # nothing changed
            try:
                self._rename_noreplace(tmp, dst, op)
            except JobExists:
                if not os.path.lexists(src):  # a move done before: nothing to change
                    raise self._not_in(op.queue, op.src, op.job_id) from None
                raise
            crashpoints.reached("after_rename")
            if self.fsync is FsyncMode.ALWAYS:
                # The new name must be on the disk before the old one is removed: else a
                # power loss could keep the removal and lose the rename, and the job.
                fsync_dir(f"{q}/{op.dst._value_}")
            # Between the rename above and this one the job is in two folders; the new
            # copy has the higher rev, so recovery keeps it. Nobody can have renamed another
            # copy into src meanwhile: every move into a state folder refuses an existing
            # name. Removing the old copy also tells whether it was there at all (one call
            # instead of a look before): if not, the job was moved away by someone else
            # (an operator's mv, a --root cancel) and the new copy is taken back. Unless the
            # old copy was there just before (looked at above) and the job is nowhere else:
            # then a daemon that saw both copies kept the new one (its rev is higher) and
            # removed the old, and the move stands; taking the new copy back too would
            # leave the job in no folder.
            if not self._discard(op.queue, src, op.job_id) and (op.src_known
                                                                or self._elsewhere(op)):
                unlink_quietly(dst)
                if self.fsync is FsyncMode.ALWAYS:
                    fsync_dir(f"{q}/{op.dst._value_}")
                raise self._not_in(op.queue, op.src, op.job_id)
            crashpoints.reached("after_unlink")
            if self.fsync is FsyncMode.ALWAYS:
                return (), (f"{q}/{op.src._value_}",)  # the destination is synced above
            return (f"{q}/{op.dst._value_}",), (f"{q}/{op.src._value_}",)
        if isinstance(op, PutNew):
            assert tmp is not None
            dst = self._job_path(op.queue, op.state, op.job_id, op.priority, op.key)
            try:
                rename_noreplace(tmp, dst)
            except FileExistsError:
                raise JobExists(op.queue, op.job_id, op.state.value) from None
            crashpoints.reached("after_rename")
            if op.check_other_states:
                # After creating: a copy moving meanwhile is seen (not ours, claimed at once).
                for state in other_states(op.state):
                    other = self._job_path(op.queue, state, op.job_id)
                    if os.path.lexists(other) and (os.path.lexists(dst)
                                                   or not _made_by(other, op.data)):
                        unlink_quietly(dst)
                        raise JobExists(op.queue, op.job_id, state.value)
            if op.state is State.PENDING and self._kept.watched(op.queue):
                self._kept.add(op.queue, op.job_id, op.data)
            return (f"{q}/{op.state._value_}",), ()
        if isinstance(op, PutSignal):
            assert tmp is not None
            os.rename(tmp, self._path(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)))
            return (f"{q}/{SIGNAL_DIR}",), ()
        if isinstance(op, DeleteSignal):
            unlink_quietly(self._path(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)))
            return (), (f"{q}/{SIGNAL_DIR}",)
        if isinstance(op, Delete):
            if self._kept.entries and op.state is State.PENDING:
                self._kept.drop(op.queue, op.job_id)
            self._discard(op.queue, self._job_path(op.queue, op.state, op.job_id, op.priority,
                                                   op.key), op.job_id)
            if not op.attachments:
                return (), (f"{q}/{op.state.value}",)
            unlink_quietly(self._path(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX))
            for kind in BLOB_KINDS:
                unlink_quietly(self._path(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"))
            return (), (f"{q}/{op.state.value}", f"{q}/{CHECKPOINT_DIR}", f"{q}/{BLOB_DIR}")
        if isinstance(op, PutCheckpoint):
            assert tmp is not None
            os.rename(tmp, self._path(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX))
            crashpoints.reached("after_rename")
            return (f"{q}/{CHECKPOINT_DIR}",), ()
        if isinstance(op, DeleteCheckpoint):
            unlink_quietly(self._path(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX))
            return (), (f"{q}/{CHECKPOINT_DIR}",)
        if isinstance(op, PutBlob):
            assert tmp is not None
            kind = check_blob_kind(op.kind)
            os.rename(tmp, self._path(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"))
            crashpoints.reached("after_rename")
            return (f"{q}/{BLOB_DIR}",), ()
        if isinstance(op, PutOutput):
            assert tmp is not None
            os.rename(tmp, f"{self.folders.side(op.queue, OUTPUT_DIR, True)}/{op.name}")
            return (f"{q}/{OUTPUT_DIR}",), ()
        if isinstance(op, PutManifest):
            assert tmp is not None
            folder = self.folders.side(op.queue, BATCH_DIR, True)
            os.rename(tmp, f"{folder}/{op.batch}{JOB_SUFFIX}")
            return (f"{q}/{BATCH_DIR}",), ()
        raise TypeError(f"unknown store operation {op!r}")

    def _rename_noreplace(self, src: str, dst: str, op: Move) -> None:
        try:
            rename_noreplace(src, dst)
        except FileNotFoundError:
            raise self._not_in(op.queue, op.src, op.job_id) from None
        except FileExistsError:
            raise JobExists(op.queue, op.job_id, op.dst.value, message=(
                f"cannot move job {op.job_id!r} of {op.queue!r} from {op.src.value}/ to "
                f"{op.dst.value}/: it is already there (a copy left by a crash or put there "
                "by hand); nothing was replaced, and recovery keeps the newer copy")) from None

    def _elsewhere(self, op: Move) -> bool:
        """Whether the job of a move whose old copy went away meanwhile is in a folder
        other than the one it was just written to, as an older copy than the one written.

        A copy elsewhere whose rev is at least the new copy's came from it: a daemon
        dispatched the new copy and ended its attempt before the old one was removed here
        (it then removed the old one itself), and the move stands."""
        states = self.find(op.queue, op.job_id, op.priority, op.key)
        if op.dst in states and all(state is op.dst for state in states):
            return False
        ours = _rev(op.data)
        for state in states:
            if state is op.dst:
                continue
            try:
                theirs = _rev(self.read(op.queue, state, op.job_id, op.priority, op.key))
            except JobNotFound:
                continue  # moved on again since the look
            if ours is None or theirs is None or theirs < ours:
                return True
        return not states

    def _not_in(self, queue: str, state: State, job_id: str) -> JobNotFound:
        return JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/")

    # -- maintenance -----------------------------------------------------------------------

    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        check_queue(queue)
        self.folders.check(queue)
        found = []
        owned = self._reaper.owned
        try:
            with os.scandir(f"{self.root}/{queue}/{TMP_DIR}") as entries:
                for entry in entries:
                    if entry.path in owned:  # a discarded copy the reaper is deleting
                        continue
                    try:
                        age = now - entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    found.append(Leftover(queue, entry.name, age))
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda f: f.name)

    def remove_leftover(self, queue: str, name: str) -> None:
        check_queue(queue)
        self.folders.check(queue)
        if "/" in name or name in (".", ".."):
            raise InvalidName(f"invalid file name {name!r}")
        unlink_quietly(self._path(queue, TMP_DIR, name))

    def foreign(self, queue: str) -> list[Foreign]:
        check_queue(queue)
        self.folders.check(queue)
        return foreign_files(f"{self.root}/{queue}", queue)

    def quarantine(self, queue: str, folder: str, name: str, reason: str) -> str:
        check_queue(queue)
        check_folder(folder)
        if "/" in name or name in (".", "..") or "\0" in name:
            raise InvalidName(f"invalid file name {name!r}")
        qdir = self.folders.side(queue, QUARANTINE_DIR, True)
        return quarantine_file(f"{self.root}/{queue}/{folder}", name, qdir, reason,
                               mode=self.file_mode, sync=self.fsync is not FsyncMode.NEVER,
                               unique=str(next(self._counter)))

    def _listing(self, queue: str, folder: str) -> list[str]:
        """The names in a folder of the queue ([] when it does not exist)."""
        check_queue(queue)
        self.folders.check(queue)
        try:
            return os.listdir(f"{self.root}/{queue}/{folder}")
        except FileNotFoundError:
            return []

    def quarantined(self, queue: str) -> list[str]:
        return sorted(n for n in self._listing(queue, QUARANTINE_DIR)
                      if not n.endswith(REASON_SUFFIX))

    def blob_ids(self, queue: str) -> list[tuple[str, str]]:
        found = (name.rpartition(".") for name in self._listing(queue, BLOB_DIR))
        return sorted((job_id, kind) for job_id, _, kind in found
                      if kind in BLOB_KINDS and is_valid_name(job_id))

    def checkpoint_ids(self, queue: str) -> list[str]:
        names = self._listing(queue, CHECKPOINT_DIR)
        return sorted(i for i in map(split_job_name, names) if i is not None)

    def _discard(self, queue: str, path: str, job_id: str) -> bool:
        """Take a file out of its folder now: delete it, or where deleting is slow (ext4
        with ``discard``: ten times a rename) move it into tmp/ and delete it off the loop.
        """
        if self._unlink_inline:
            started = time.perf_counter()
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            costs = self._unlink_costs
            costs.append(time.perf_counter() - started)
            if len(costs) >= UNLINK_WINDOW:
                # The median of a window decides, once, to hand deletions to the reaper: a
                # wait for the GIL or a preemption inflates a few samples, never the median.
                cost = sorted(costs)[len(costs) // 2]
                costs.clear()
                if cost > SLOW_UNLINK:
                    self._unlink_inline = False
                    log.info("deleting a file costs %.0f us on %s: old copies are now "
                             "deleted in the background", cost * 1e6, self.root)
            return True
        trash = f"{self.root}/{queue}/{TMP_DIR}/{job_id}{TRASH_MARK}{os.getpid()}." \
                f"{next(self._counter)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return False
        self._discarded.append(trash)
        return True

    def close(self) -> None:
        self._reaper.stop()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None


def _rev(data: bytes | None) -> int | None:
    """The rev of a job file's bytes; None when they are not a readable job file."""
    if data is None:
        return None
    try:
        job = loads(data)
        return int(job.get("rev", 0)) if isinstance(job, dict) else None
    except (ValueError, TypeError):
        return None
