"""Jobs' own logs in the store: plain text, one log per attempt, under the job's queue.

On a local disk each attempt's log is one file that pieces are appended to, which ``tail``
and ``cat`` read as it grows::

    <queue>/logs/<id>/1.log     2.log ...

In a bucket, where nothing can be appended, each piece is an object of its own, named by
the offset of its first byte in the attempt's log (so that a piece written twice is one
object, and a listing gives them in order)::

    <queue>/logs/<id>/1/000000000000.log   1/000000004096.log ...

A piece whose offset is below the length already kept (it was written before) is skipped; a
log is cut at ``limit`` bytes (and :data:`NOTE_ROOM` more, for the worker's last line that
says how much it dropped). Retention removes a job's logs with the job; ``archive``
moves them beside it (``archive/<DATE>/logs/<id>/``).
"""

from __future__ import annotations

import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckptd.core.answer_types import LogsAnswer
from ckptd.core.errors import StoreError
from ckptd.core.names import check_job_ref, check_queue
from ckptd.store.base import ARCHIVE_DIR, Store
from ckptd.store.local.durable import holds_entries
from ckptd.store.objects import FileSystem

if TYPE_CHECKING:
    from ckptd.store.s3.requests import S3Requests

LOG_DIR = "logs"
NOTE_ROOM = 1024
_PIECE = re.compile(r"^(\d+)/(\d{12})\.log$")
_ATTEMPT_FILE = re.compile(r"^(\d+)\.log$")


@dataclass(frozen=True)
class LogPart:
    """Text of one attempt's log, from byte ``start``."""

    attempt: int
    start: int
    text: str

    @property
    def end(self) -> int:
        """The byte after this text (where reading goes on)."""
        return self.start + len(self.text.encode())


class JobLogs(ABC):
    """The logs of the jobs of one store."""

    @abstractmethod
    def append(self, queue: str, job_id: str, attempt: int, offset: int, text: str,
               limit: int) -> bool:
        """Add a piece at byte ``offset`` of an attempt's log; False when it was skipped
        (written before, or over ``limit``). Raises StoreError."""

    @abstractmethod
    def read(self, queue: str, job_id: str, since: dict[int, int] | None = None
             ) -> list[LogPart]:
        """What the logs of a job hold, by attempt, from the byte ``since[attempt]`` of each
        (0 when not given); [] when it has none."""

    @abstractmethod
    def remove(self, queue: str, job_ids: Sequence[str]) -> None:
        """Remove the logs of these jobs. Idempotent."""

    @abstractmethod
    def archive(self, queue: str, job_id: str, folder: str) -> None:
        """Move a job's logs under ``archive/<folder>/logs/<id>/``. Idempotent."""

    def tail(self, queue: str, job_id: str, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of the job's latest attempt that logged anything."""
        parts = self.read(queue, job_id)
        if not parts:
            return []
        last = max(p.attempt for p in parts)
        text = "".join(p.text for p in parts if p.attempt == last)
        return text.splitlines()[-lines:]


class LocalJobLogs(JobLogs):
    """Logs on a local disk: a file per attempt, appended to."""

    def __init__(self, root: str, file_mode: int = 0o640, dir_mode: int = 0o750) -> None:
        self.root = root
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def _folder(self, queue: str, job_id: str) -> str:
        check_job_ref(queue, job_id)
        return os.path.join(self.root, queue, LOG_DIR, job_id)

    def append(self, queue: str, job_id: str, attempt: int, offset: int, text: str,
               limit: int) -> bool:
        data = text.encode()
        limit += NOTE_ROOM
        if offset >= limit:
            return False
        folder = self._folder(queue, job_id)
        path = os.path.join(folder, f"{attempt}.log")
        try:
            os.makedirs(folder, mode=self.dir_mode, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         self.file_mode)
            try:
                size = os.fstat(fd).st_size
                if size > offset:
                    return False  # this piece is there already (sent twice)
                os.write(fd, data[:max(0, limit - size)])
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write the log {path}: {exc.strerror or exc}") from None
        return True

    def read(self, queue: str, job_id: str, since: dict[int, int] | None = None
             ) -> list[LogPart]:
        folder = self._folder(queue, job_id)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror or exc}") from None
        attempts = sorted(int(m.group(1)) for m in map(_ATTEMPT_FILE.match, names) if m)
        parts = []
        for attempt in attempts:
            start = (since or {}).get(attempt, 0)
            try:
                with open(os.path.join(folder, f"{attempt}.log"), "rb") as handle:
                    handle.seek(start)
                    data = handle.read()
            except FileNotFoundError:
                continue
            if data:
                parts.append(LogPart(attempt, start, _whole_lines(data)))
        return [p for p in parts if p.text]

    def remove(self, queue: str, job_ids: Sequence[str]) -> None:
        check_queue(queue)
        if not holds_entries(os.path.join(self.root, queue, LOG_DIR)):
            return  # no job of the queue logged anything
        for job_id in job_ids:
            shutil.rmtree(self._folder(queue, job_id), ignore_errors=True)

    def archive(self, queue: str, job_id: str, folder: str) -> None:
        source = self._folder(queue, job_id)
        if not os.path.isdir(source):
            return
        target = os.path.join(self.root, queue, ARCHIVE_DIR, folder, LOG_DIR)
        os.makedirs(target, mode=self.dir_mode, exist_ok=True)
        shutil.rmtree(os.path.join(target, job_id), ignore_errors=True)
        os.rename(source, os.path.join(target, job_id))


class ObjectJobLogs(JobLogs):
    """Logs in a bucket: an object per piece (see the module docstring)."""

    def __init__(self, objects: Objects, prefix: str) -> None:
        self.objects = objects
        self.prefix = prefix.rstrip("/")

    def _folder(self, queue: str, job_id: str) -> str:
        check_job_ref(queue, job_id)
        return f"{self.prefix}/{queue}/{LOG_DIR}/{job_id}"

    def _pieces(self, folder: str) -> list[tuple[int, int, str]]:
        found = []
        for name in self.objects.names(folder):
            match = _PIECE.match(name)
            if match:
                found.append((int(match.group(1)), int(match.group(2)), name))
        return sorted(found)

    def append(self, queue: str, job_id: str, attempt: int, offset: int, text: str,
               limit: int) -> bool:
        limit += NOTE_ROOM
        if offset >= limit:
            return False
        data = text.encode()[:limit - offset]
        self.objects.put(f"{self._folder(queue, job_id)}/{attempt}/{offset:012d}.log", data)
        return True

    def read(self, queue: str, job_id: str, since: dict[int, int] | None = None
             ) -> list[LogPart]:
        folder = self._folder(queue, job_id)
        parts: dict[int, list[tuple[int, bytes]]] = {}
        for attempt, offset, name in self._pieces(folder):
            start = (since or {}).get(attempt, 0)
            data = self.objects.get(f"{folder}/{name}")
            if data is None or offset + len(data) <= start:
                continue
            parts.setdefault(attempt, []).append((offset, data[max(0, start - offset):]))
        out = []
        for attempt, pieces in sorted(parts.items()):
            start = max((since or {}).get(attempt, 0), pieces[0][0])
            text = _whole_lines(b"".join(data for _, data in pieces))
            if text:
                out.append(LogPart(attempt, start, text))
        return out

    def remove(self, queue: str, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            folder = self._folder(queue, job_id)
            names = [f"{folder}/{name}" for _, _, name in self._pieces(folder)]
            if names:
                self.objects.delete(names)

    def archive(self, queue: str, job_id: str, folder: str) -> None:
        source = self._folder(queue, job_id)
        target = f"{self.prefix}/{queue}/{ARCHIVE_DIR}/{folder}/{LOG_DIR}/{job_id}"
        pieces = self._pieces(source)
        for _, _, name in pieces:
            data = self.objects.get(f"{source}/{name}")
            if data is not None:
                self.objects.put(f"{target}/{name}", data)
        if pieces:
            self.objects.delete([f"{source}/{name}" for _, _, name in pieces])


def _whole_lines(data: bytes) -> str:
    """The text of ``data`` up to its last newline (a line still being written waits)."""
    end = data.rfind(b"\n")
    return data[:end + 1].decode(errors="replace") if end >= 0 else ""


class Objects(ABC):
    """The few object operations logs need, over one backend."""

    @abstractmethod
    def put(self, path: str, data: bytes) -> None:
        """Write an object (whole)."""

    @abstractmethod
    def get(self, path: str) -> bytes | None:
        """An object's bytes, None when absent."""

    @abstractmethod
    def names(self, folder: str) -> list[str]:
        """The names of every object under ``folder/`` (relative to it)."""

    @abstractmethod
    def delete(self, paths: Sequence[str]) -> None:
        """Delete objects; absent is fine."""


class S3Objects(Objects):
    """:class:`Objects` through an S3 store's requests."""

    def __init__(self, req: S3Requests) -> None:
        self.req = req

    def put(self, path: str, data: bytes) -> None:
        self.req.run(lambda: self.req.put(path, data, f"write {self.req.split(path)}"))

    def get(self, path: str) -> bytes | None:
        found = self.req.run(lambda: self.req.get(path, f"read {self.req.split(path)}"))
        return bytes(found) if found is not None else None

    def names(self, folder: str) -> list[str]:
        objects, _ = self.req.run(lambda: self.req.list(folder, delimiter=False))
        return [str(o.name) for o in objects]

    def delete(self, paths: Sequence[str]) -> None:
        self.req.run(lambda: self.req.delete_many(list(paths), "delete job logs"))


class FsObjects(Objects):
    """:class:`Objects` over an fsspec file system (``memory://``, other buckets)."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs

    def put(self, path: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def get(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc

    def names(self, folder: str) -> list[str]:
        try:
            found = self.fs.find(folder)
        except FileNotFoundError:
            return []
        base = folder.strip("/") + "/"
        return [str(p).strip("/")[len(base):] for p in found
                if str(p).strip("/").startswith(base)]

    def delete(self, paths: Sequence[str]) -> None:
        for path in paths:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass


def job_logs(store: Store) -> JobLogs:
    """The logs of ``store``'s jobs, as its backend keeps them."""
    from ckptd.store.local.backend import LocalStore

    if isinstance(store, LocalStore):
        return LocalJobLogs(store.root, store.file_mode, store.dir_mode)
    from ckptd.store.bucket import BucketStore  # here: it imports fsspec (and asyncio)

    if isinstance(store, BucketStore):
        from ckptd.store.s3.backend import S3Store

        if isinstance(store, S3Store):
            return ObjectJobLogs(S3Objects(store.req), store.prefix)
        return ObjectJobLogs(FsObjects(store.fs), store.prefix)
    raise StoreError(f"the store {store.url} keeps no job logs")


def remove_logs(store: Store, queue: str, job_ids: Sequence[str]) -> None:
    """Remove the logs of jobs that were removed (purge), when the store keeps logs."""
    try:
        job_logs(store).remove(queue, job_ids)
    except StoreError:
        pass


def log_tail(store: Store, queue: str, job_id: str, lines: int = 20) -> list[str]:
    """The last lines of a job's latest log ([] when it has none, or the store keeps none)."""
    try:
        return job_logs(store).tail(queue, job_id, lines)
    except StoreError:
        return []


def logs_answer(store: Store, queue: str, job_id: str, since: Mapping[str, int] | None,
                state: str | None) -> LogsAnswer:
    """The answer of a ``logs`` request: the parts of a job's logs after ``since``
    (attempt -> byte, keys as text on the wire; each taken through int(), as a client's
    JSON is) and the job's state (None: no such job)."""
    after = {int(k): int(v) for k, v in (since or {}).items() if str(k).isdigit()}
    parts = job_logs(store).read(queue, job_id, after)
    return {"state": state, "parts": [{"attempt": p.attempt, "start": p.start, "end": p.end,
                                       "text": p.text} for p in parts]}
