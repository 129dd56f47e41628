"""The object-store backend (any fsspec file system with bucket semantics: memory://, s3://).

An object store has no rename, so a move is a copy to the new key followed by a delete of
the old one. A crash between the two leaves the job under both keys; the two-state rule in
:mod:`ckptd.core.states` decides which copy stays (a plain copy keeps ``rev``, so the later
state wins). Nothing here assumes that anything but a single PUT is atomic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import fsspec

from ckptd.core import crashpoints
from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, InvalidName, JobExists, JobNotFound, StoreError
from ckptd.core.names import check_job_ref, check_queue, is_valid_name
from ckptd.core.states import STATES, State, other_states
from ckptd.core.waits import parse_signal_file, signal_file
from ckptd.store.base import (
    ARCHIVE_DIR,
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
    Delete,
    DeleteCheckpoint,
    DeleteSignal,
    Foreign,
    Leftover,
    Move,
    Op,
    Outcome,
    PutBlob,
    PutCheckpoint,
    PutManifest,
    PutNew,
    PutOutput,
    PutSignal,
    SignalFile,
    Store,
    check_blob_kind,
    check_control,
    check_folder,
    split_job_name,
)
from ckptd.store.file_names import job_file_name, job_names, pending_name
from ckptd.store.objects import ControlObjects, EmulatedObjects, FileInfo, FileSystem


class BucketStore(Store):
    """A store on an fsspec file system where objects are written whole and never renamed."""

    def __init__(self, url: str, fsync: FsyncMode = FsyncMode.BATCH,
                 storage_options: Mapping[str, object] | None = None) -> None:
        self.url = url.rstrip("/")
        self.fsync = FsyncMode(fsync)  # an acknowledged PUT is durable; kept for display
        fs, path = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.fs: FileSystem = fs
        self.prefix = path.rstrip("/")
        self._lock = threading.Lock()

    def _key(self, queue: str, folder: str, name: str) -> str:
        return f"{self.prefix}/{queue}/{folder}/{name}"

    def _job_key(self, queue: str, state: State, job_id: str, priority: int = 0,
                 key: str = "") -> str:
        name = job_file_name(state, job_id, priority, key)
        return f"{self.prefix}/{queue}/{state.value}/{name}"

    def _ls(self, path: str) -> list[str]:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {path}: {exc}") from exc

    def ensure_queue(self, queue: str) -> None:
        check_queue(queue)  # folders are implied by the keys in a bucket

    def control_objects(self) -> ControlObjects:
        """Emulated: conditions hold within this process only (``shared`` is False)."""
        return EmulatedObjects(self.fs, self.prefix)

    # -- reading ---------------------------------------------------------------------------

    def queues(self) -> list[str]:
        names = [n for n in self._ls(self.prefix) if is_valid_name(n)]
        states = {s.value for s in STATES}
        return sorted(n for n in names if states & set(self._ls(f"{self.prefix}/{n}")))

    def ids(self, queue: str, state: State) -> list[str]:
        check_queue(queue)
        names = self._ls(f"{self.prefix}/{queue}/{state.value}")
        return sorted(found[0] for found in job_names(names, state))

    def pending_names(self, queue: str) -> list[str]:
        check_queue(queue)
        names = self._ls(f"{self.prefix}/{queue}/{State.PENDING.value}")
        return [pending_name(*found) for found in job_names(names, State.PENDING)]

    def _cat(self, key: str, missing: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(key))
        except FileNotFoundError:
            raise JobNotFound(missing) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def read(self, queue: str, state: State, job_id: str, priority: int = 0,
             key: str = "") -> bytes:
        check_job_ref(queue, job_id)
        return self._cat(self._job_key(queue, state, job_id, priority, key),
                         f"job {job_id!r} is not in {queue}/{state.value}/")

    def exists(self, queue: str, state: State, job_id: str, priority: int = 0,
               key: str = "") -> bool:
        check_job_ref(queue, job_id)
        return bool(self.fs.exists(self._job_key(queue, state, job_id, priority, key)))

    def mtime(self, queue: str, state: State, job_id: str, priority: int = 0,
              key: str = "") -> float:
        check_job_ref(queue, job_id)
        try:
            info = self.fs.info(self._job_key(queue, state, job_id, priority, key))
        except FileNotFoundError:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/") from None
        return _info_time(info)

    def read_checkpoint(self, queue: str, job_id: str) -> bytes | None:
        check_job_ref(queue, job_id)
        try:
            return self._cat(self._key(queue, CHECKPOINT_DIR, job_id + JOB_SUFFIX), "")
        except JobNotFound:
            return None

    def read_blob(self, queue: str, job_id: str, kind: str) -> bytes:
        check_job_ref(queue, job_id)
        return self._cat(self._key(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}"),
                         f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")

    # -- writing ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for op in ops:
            try:
                check_job_ref(op.queue, op.job_id)
                self._commit(op)
                outcomes.append(None)
            except CkptdError as exc:
                outcomes.append(exc)
            except OSError as exc:
                outcomes.append(StoreError(f"cannot update {self.url}/{op.queue}: {exc}"))
        return outcomes

    def _commit(self, op: Op) -> None:
        fs = self.fs
        if isinstance(op, Move):
            src = self._job_key(op.queue, op.src, op.job_id, op.priority, op.key)
            dst = self._job_key(op.queue, op.dst, op.job_id, op.priority, op.key)
            if not fs.exists(src):
                raise JobNotFound(f"job {op.job_id!r} is not in {op.queue}/{op.src.value}/")
            if op.data is None:
                if src != dst:
                    fs.copy(src, dst)
            else:
                fs.pipe_file(dst, op.data)
            if src == dst:  # a rewrite in place: there is no old copy to remove
                return
            crashpoints.reached("after_copy")
            # Until this delete the job is under both keys; recovery keeps the later copy.
            _rm_quietly(fs, src)
        elif isinstance(op, PutNew):
            dst = self._job_key(op.queue, op.state, op.job_id, op.priority, op.key)
            with self._lock:
                if fs.exists(dst):
                    raise JobExists(op.queue, op.job_id, op.state.value)
                fs.pipe_file(dst, op.data)
            if op.check_other_states:
                for state in other_states(op.state):
                    if fs.exists(self._job_key(op.queue, state, op.job_id)):
                        _rm_quietly(fs, dst)
                        raise JobExists(op.queue, op.job_id, state.value)
        elif isinstance(op, Delete):
            _rm_quietly(fs, self._job_key(op.queue, op.state, op.job_id, op.priority, op.key))
            if op.attachments:
                _rm_quietly(fs, self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX))
                for kind in BLOB_KINDS:
                    _rm_quietly(fs, self._key(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"))
        elif isinstance(op, PutCheckpoint):
            fs.pipe_file(self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX), op.data)
        elif isinstance(op, DeleteCheckpoint):
            _rm_quietly(fs, self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX))
        elif isinstance(op, PutBlob):
            fs.pipe_file(self._key(op.queue, BLOB_DIR, f"{op.job_id}.{check_blob_kind(op.kind)}"),
                         op.data)
        elif isinstance(op, PutOutput):
            fs.pipe_file(self._key(op.queue, OUTPUT_DIR, op.name), op.data)
        elif isinstance(op, PutManifest):
            fs.pipe_file(self._key(op.queue, BATCH_DIR, op.batch + JOB_SUFFIX), op.data)
        elif isinstance(op, PutSignal):
            fs.pipe_file(self._key(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)),
                         op.data)
        elif isinstance(op, DeleteSignal):
            _rm_quietly(fs, self._key(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)))
        else:
            raise TypeError(f"unknown store operation {op!r}")

    # -- maintenance -----------------------------------------------------------------------

    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        check_queue(queue)
        found = []
        for name in self._ls(f"{self.prefix}/{queue}/{TMP_DIR}"):
            try:
                age = now - _info_time(self.fs.info(self._key(queue, TMP_DIR, name)))
            except FileNotFoundError:
                continue
            found.append(Leftover(queue, name, age))
        return sorted(found, key=lambda f: f.name)

    def remove_leftover(self, queue: str, name: str) -> None:
        check_queue(queue)
        _check_plain(name)
        _rm_quietly(self.fs, self._key(queue, TMP_DIR, name))

    def foreign(self, queue: str) -> list[Foreign]:
        check_queue(queue)
        return [Foreign(queue, s.value, n) for s in STATES
                for n in self._ls(f"{self.prefix}/{queue}/{s.value}")
                if not job_names([n], s)]

    def quarantine(self, queue: str, folder: str, name: str, reason: str) -> str:
        check_queue(queue)
        check_folder(folder)
        _check_plain(name)
        target = self._key(queue, QUARANTINE_DIR, name)
        if self.fs.exists(target):
            target = f"{target}.{time.strftime('%Y%m%dT%H%M%S')}"
        source = self._key(queue, folder, name)
        try:
            self.fs.copy(source, target)
        except FileNotFoundError:
            return target
        self.fs.pipe_file(target + REASON_SUFFIX, reason.encode() + b"\n")
        _rm_quietly(self.fs, source)
        return target

    def quarantined(self, queue: str) -> list[str]:
        check_queue(queue)
        return sorted(n for n in self._ls(f"{self.prefix}/{queue}/{QUARANTINE_DIR}")
                      if not n.endswith(REASON_SUFFIX))

    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        check_job_ref(queue, job_id)
        key = self._key(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        try:
            return bytes(self.fs.cat_file(key, start=start, end=end))
        except FileNotFoundError:
            raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def read_manifest(self, queue: str, batch: str) -> bytes:
        check_job_ref(queue, batch)
        return self._cat(self._key(queue, BATCH_DIR, batch + JOB_SUFFIX),
                         f"no batch {batch!r} in {queue}/{BATCH_DIR}/")

    def read_output(self, queue: str, name: str) -> bytes:
        check_job_ref(queue, name)
        return self._cat(self._key(queue, OUTPUT_DIR, name),
                         f"no output {name!r} in {queue}/{OUTPUT_DIR}/")

    def delete_manifest(self, queue: str, batch: str) -> None:
        check_job_ref(queue, batch)
        self._rm(self._key(queue, BATCH_DIR, batch + JOB_SUFFIX))

    def _rm(self, key: str) -> None:
        """Remove one object; nothing when absent."""
        _rm_quietly(self.fs, key)

    def manifests(self, queue: str) -> list[str]:
        check_queue(queue)
        names = self._ls(f"{self.prefix}/{queue}/{BATCH_DIR}")
        return sorted(i for i in map(split_job_name, names) if i is not None)

    def blob_ids(self, queue: str) -> list[tuple[str, str]]:
        check_queue(queue)
        found = []
        for name in self._ls(f"{self.prefix}/{queue}/{BLOB_DIR}"):
            job_id, _, kind = name.rpartition(".")
            if kind in BLOB_KINDS and is_valid_name(job_id):
                found.append((job_id, kind))
        return sorted(found)

    def checkpoint_ids(self, queue: str) -> list[str]:
        check_queue(queue)
        names = self._ls(f"{self.prefix}/{queue}/{CHECKPOINT_DIR}")
        return sorted(i for i in map(split_job_name, names) if i is not None)

    def signals(self, queue: str) -> list[SignalFile]:
        check_queue(queue)
        found = []
        for name, mtime in self._ls_times(f"{self.prefix}/{queue}/{SIGNAL_DIR}"):
            parsed = parse_signal_file(name)
            if parsed is not None:
                found.append(SignalFile(parsed[0], parsed[1], mtime))
        return sorted(found, key=lambda f: (f.job_id, f.name))

    def _ls_times(self, path: str) -> list[tuple[str, float]]:
        """(name, time it was written) of the objects under ``path``."""
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {path}: {exc}") from exc
        return [(e["name"].rstrip("/").rsplit("/", 1)[-1], _info_time(e)) for e in entries
                if e.get("type") != "directory"]

    def read_signal(self, queue: str, job_id: str, name: str) -> bytes | None:
        check_job_ref(queue, job_id)
        try:
            return self._cat(self._key(queue, SIGNAL_DIR, signal_file(job_id, name)), "")
        except JobNotFound:
            return None

    # -- operator controls -----------------------------------------------------------------

    def _control_key(self, queue: str, name: str) -> str:
        check_queue(queue)
        return f"{self.prefix}/{queue}/{check_control(name)}"

    def read_control(self, queue: str, name: str) -> bytes | None:
        try:
            return self._cat(self._control_key(queue, name), "")
        except JobNotFound:
            return None

    def write_control(self, queue: str, name: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self._control_key(queue, name), data)
        except OSError as exc:
            raise StoreError(f"cannot write {queue}/{name}: {exc}") from exc

    def delete_control(self, queue: str, name: str) -> None:
        _rm_quietly(self.fs, self._control_key(queue, name))

    def archive(self, queue: str, state: State, job_id: str, folder: str) -> bool:
        check_job_ref(queue, job_id)
        _check_plain(folder)
        source = self._job_key(queue, state, job_id)
        target = f"{self.prefix}/{queue}/{ARCHIVE_DIR}/{folder}"
        if not self.fs.exists(source):
            return False
        for kind in BLOB_KINDS:
            blob = self._key(queue, BLOB_DIR, f"{job_id}.{kind}")
            if self.fs.exists(blob):
                self.fs.copy(blob, f"{target}/{job_id}.{kind}")
                _rm_quietly(self.fs, blob)
        self.fs.copy(source, f"{target}/{job_id}{JOB_SUFFIX}")
        _rm_quietly(self.fs, source)
        _rm_quietly(self.fs, self._key(queue, CHECKPOINT_DIR, job_id + JOB_SUFFIX))
        return True


def _rm_quietly(fs: FileSystem, key: str) -> None:
    try:
        fs.rm_file(key)
    except FileNotFoundError:
        pass


def _info_time(info: FileInfo) -> float:
    for value in (info.get("mtime"), info.get("LastModified"), info.get("created")):
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float, str)):
            return float(value)
    return time.time()




def _check_plain(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidName(f"invalid file name {name!r}")
