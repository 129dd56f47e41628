"""Conditional single-object writes in a store's control area (``<root>/.ckptd/``).

Leader leases (and, with several daemons, their membership records) live there. Only
conditional writes touch them: create-only (``If-None-Match: *``) and compare-and-swap
(``If-Match: <ETag>``); a failed condition raises :class:`Conflict`. A real bucket holds the
conditions across processes and machines; :class:`EmulatedObjects` holds them within one
process only (``memory://`` in tests) and says so with ``shared = False``.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime
from typing import Literal, Protocol, TypedDict, overload

from ckptd.core.errors import StoreError

CONTROL_DIR = ".ckptd"  # not a valid queue name (leading dot): never listed as a queue


class Conflict(StoreError):
    """Raised when a conditional write finds the object not as it expected (HTTP 412)."""

    code = "conflict"


class FileInfo(TypedDict, total=False):
    """What fsspec's ``info`` and ``ls(detail=True)`` say of an object: the keys read here
    (the time is under one name or another, as the file system has it)."""

    name: str
    type: str
    mtime: float | datetime
    LastModified: datetime
    created: float


class FileSystem(Protocol):
    """The methods of an fsspec file system that the bucket stores call (fsspec has no
    type hints of its own)."""

    def cat_file(self, path: str, start: int | None = None, end: int | None = None
                 ) -> bytes: ...
    def pipe_file(self, path: str, value: bytes) -> None: ...
    def rm_file(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...
    def copy(self, path1: str, path2: str) -> None: ...
    def find(self, path: str) -> list[str]: ...
    def info(self, path: str) -> FileInfo: ...
    @overload
    def ls(self, path: str, detail: Literal[False]) -> list[str]: ...
    @overload
    def ls(self, path: str, detail: Literal[True]) -> list[FileInfo]: ...


class ControlObjects(Protocol):
    """Conditional reads and writes of named objects in the control area."""

    shared: bool
    """True when the conditions hold across processes (a real bucket)."""

    def get(self, name: str) -> tuple[bytes, str] | None:
        """Return (bytes, ETag) of object ``name``, or None when there is none."""

    def put(self, name: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        """Write ``name``; ``create``: only if absent, ``if_match``: only if its ETag is that
        one. Return the new ETag; raise :class:`Conflict` when the condition fails."""

    def delete(self, name: str, if_match: str | None = None) -> None:
        """Delete ``name`` (only if its ETag is ``if_match``, when given); absent is fine."""

    def names(self, prefix: str) -> list[str]:
        """Return the sorted names that start with ``prefix``; [] when none."""

    def tagged(self, prefix: str) -> dict[str, str]:
        """Return {name: ETag} of the objects whose names start with ``prefix`` (one
        listing; ETags without quotes); {} when none."""


class EmulatedObjects:
    """:class:`ControlObjects` over an fsspec file system, for stores without conditional
    writes: the conditions hold within this process only (a lock and MD5 ETags)."""

    shared = False

    def __init__(self, fs: FileSystem, base: str) -> None:
        self.fs = fs
        self.base = f"{base.rstrip('/')}/{CONTROL_DIR}"
        self._lock = threading.Lock()

    @staticmethod
    def _etag(data: bytes) -> str:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def get(self, name: str) -> tuple[bytes, str] | None:
        try:
            data = bytes(self.fs.cat_file(f"{self.base}/{name}"))
        except FileNotFoundError:
            return None
        return data, self._etag(data)

    def put(self, name: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        with self._lock:
            current = self.get(name)
            if create and current is not None:
                raise Conflict(f"{name} exists")
            if if_match is not None and (current is None or current[1] != if_match):
                raise Conflict(f"{name} changed")
            self.fs.pipe_file(f"{self.base}/{name}", data)
            return self._etag(data)

    def delete(self, name: str, if_match: str | None = None) -> None:
        with self._lock:
            current = self.get(name)
            if current is not None and (if_match is None or current[1] == if_match):
                self.fs.rm_file(f"{self.base}/{name}")

    def names(self, prefix: str) -> list[str]:
        try:
            found = self.fs.find(self.base)
        except FileNotFoundError:
            return []
        marker = f"/{CONTROL_DIR}/"
        rel = [f"/{p}".split(marker, 1)[1] for p in found if marker in f"/{p}"]
        return sorted(n for n in rel if n.startswith(prefix))

    def tagged(self, prefix: str) -> dict[str, str]:
        found = {}
        for name in self.names(prefix):
            current = self.get(name)
            if current is not None:
                found[name] = current[1]
        return found
