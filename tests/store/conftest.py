"""One store per backend, and raw access to what it holds (to plant files and look behind it).

Backends: the local store in a temporary folder under each fsync mode, the bucket store
on fsspec's in-process ``memory://`` file system under a unique prefix that is removed after
the test, and the S3 store on a real SeaweedFS, through obstore (``s3``) and through its
fallback, s3fs (``s3-s3fs``): those two are ``slow`` (a real server), the others are not.
Raw access goes straight to the disk or the (memory or S3) file system, not through the
store, so a test can plant a crash's leftovers and check what the store really wrote.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest

from ckptd.core.config import FsyncMode, Settings
from ckptd.store import BucketStore, LocalStore, Store
from ckptd.store.base import is_trash
from tests.s3server import SeaweedServer, s3_server  # noqa: F401  (a fixture)

BACKENDS = ["local-always", "local-batch", "local-never", "memory", "s3", "s3-s3fs"]


@dataclass
class Backend:
    """A store and raw access to the files under its root (paths relative to the root)."""

    name: str
    store: Store
    root: str  # a folder, or the key prefix on the memory file system
    fs: object | None = None  # the memory file system, None for local

    @property
    def local(self) -> bool:
        return self.fs is None

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def put(self, rel: str, data: bytes) -> None:
        """Write a file under the root, creating folders as needed."""
        if self.fs is None:
            os.makedirs(os.path.dirname(self._path(rel)), exist_ok=True)
            with open(self._path(rel), "wb") as handle:
                handle.write(data)
        else:
            self.fs.pipe_file(self._path(rel), data)  # type: ignore[attr-defined]

    def get(self, rel: str) -> bytes:
        if self.fs is None:
            with open(self._path(rel), "rb") as handle:
                return handle.read()
        return bytes(self.fs.cat_file(self._path(rel)))  # type: ignore[attr-defined]

    def exists(self, rel: str) -> bool:
        if self.fs is None:
            return os.path.lexists(self._path(rel))
        return bool(self.fs.exists(self._path(rel)))  # type: ignore[attr-defined]

    def remove(self, rel: str) -> None:
        if self.fs is None:
            os.unlink(self._path(rel))
        else:
            self.fs.rm_file(self._path(rel))  # type: ignore[attr-defined]

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the root with its bytes: compare two to prove nothing changed.

        Old copies a move discarded into tmp/ are left out: the local store deletes them on
        a thread of its own, so whether one is still there is a matter of timing, not state.
        """
        found: dict[str, bytes] = {}
        if self.fs is None:
            for folder, _, names in os.walk(self.root):
                for name in names:
                    if is_trash(name):
                        continue
                    path = os.path.join(folder, name)
                    with open(path, "rb") as handle:
                        found[os.path.relpath(path, self.root)] = handle.read()
            return found
        fs = self.fs
        if not fs.exists(self.root):  # type: ignore[attr-defined]
            return found
        for path in fs.find(self.root):  # type: ignore[attr-defined]
            found[path[len(self.root) + 1:]] = bytes(fs.cat_file(path))  # type: ignore[attr-defined]
        return found


_RAW_S3: dict[str, object] = {}


def raw_s3(server: SeaweedServer) -> object:
    """The file system that looks behind the S3 store: one per server (a new one costs a
    tenth of a second of CPU, for each of the hundreds of S3 cases); it caches no listing."""
    raw = _RAW_S3.get(server.endpoint)
    if raw is None:
        raw = _RAW_S3[server.endpoint] = fsspec.filesystem(
            "s3", use_listings_cache=False, skip_instance_cache=True,
            **server.storage_options())
    return raw


def make_backend(kind: str, tmp_path: Path, server: SeaweedServer | None = None) -> Backend:
    """Return a new empty backend of ``kind`` (one of :data:`BACKENDS`); ``s3*`` need the
    SeaweedFS ``server`` and get a prefix of their own in the server's bucket."""
    if kind.startswith("s3"):
        from ckptd.store.s3.backend import S3Store

        assert server is not None, "the s3 backends need the s3_server fixture"
        options = server.storage_options()
        if kind == "s3-s3fs":
            options["s3_client"] = "s3fs"
        store = S3Store(server.url(), storage_options=options)
        assert store.client == ("s3fs" if kind == "s3-s3fs" else "obstore")
        return Backend(kind, store, store.prefix, raw_s3(server))
    if kind.startswith("local-"):
        root = str(tmp_path / "store")
        store = LocalStore(root, FsyncMode(kind.split("-", 1)[1]))
        return Backend(kind, store, root)
    url = f"memory://ckptd-test-{uuid.uuid4().hex}"
    store = BucketStore(url)
    return Backend(kind, store, store.prefix, fsspec.filesystem("memory"))


def drop_backend(backend: Backend) -> None:
    """Close the store and, for the memory file system, remove everything under its prefix."""
    backend.store.close()
    if backend.fs is not None and backend.fs.exists(backend.root):  # type: ignore[attr-defined]
        backend.fs.rm(backend.root, recursive=True)  # type: ignore[attr-defined]


@pytest.fixture
def new_backend(tmp_path: Path, request: pytest.FixtureRequest
                ) -> Iterator[Callable[[str], Backend]]:
    """Factory of backends; every backend made is cleaned up after the test."""
    made: list[Backend] = []

    def make(kind: str) -> Backend:
        server = request.getfixturevalue("s3_server") if kind.startswith("s3") else None
        backend = make_backend(kind, tmp_path / f"b{len(made)}", server)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        drop_backend(backend)


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.slow) if kind.startswith("s3")
                        else kind for kind in BACKENDS])
def backend(request: pytest.FixtureRequest, new_backend: Callable[[str], Backend]) -> Backend:
    """An empty store of each backend in turn."""
    return new_backend(str(request.param))


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


@pytest.fixture
def settings() -> Settings:
    """Settings for admin tests: small inline limit, leftovers stale after 10 minutes."""
    return Settings(blob_threshold=1024, max_attempts=3, tmp_max_age=600.0)
