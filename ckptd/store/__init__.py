"""Stores: where job files live. :func:`open_store` picks the backend from the root's URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ckptd.core.config import FsyncMode, Settings
from ckptd.core.errors import ConfigError
from ckptd.store.base import Store
from ckptd.store.local.backend import LocalStore

if TYPE_CHECKING:
    from ckptd.store.bucket import BucketStore

__all__ = ["Store", "LocalStore", "open_store", "store_from_settings", "is_local"]


def is_local(root: str) -> bool:
    """Return True when ``root`` names a local folder (a path or a file:// URL)."""
    return "://" not in root or root.startswith("file://")


def open_store(root: str, fsync: FsyncMode | str = FsyncMode.BATCH, *,
               file_mode: int = 0o640, dir_mode: int = 0o750,
               storage_options: Mapping[str, object] | None = None,
               timeout: float = 10.0, concurrency: int = 64) -> Store:
    """Open the store at ``root``: a path or ``file://`` URL (local disk), ``memory://``
    (in-process, for tests) or any fsspec object-store URL such as ``s3://bucket/prefix``.

    ``s3://`` gets :class:`~ckptd.store.s3.backend.S3Store` (``timeout`` per request,
    ``concurrency``
    requests in flight); other object stores the generic bucket store."""
    if not root:
        raise ConfigError("no store root given: pass --root PATH|URL or set CKPTD_ROOT")
    if is_local(root):
        path = root[len("file://"):] if root.startswith("file://") else root
        return LocalStore(path, FsyncMode(fsync), file_mode=file_mode, dir_mode=dir_mode)
    protocol = root.split("://", 1)[0]
    from ckptd.store.bucket import (
        BucketStore,  # imports fsspec: only when a bucket is used
    )

    try:
        if protocol in ("s3", "s3a"):
            from ckptd.store.s3.backend import S3Store

            return S3Store(root, FsyncMode(fsync), storage_options, timeout=timeout,
                           concurrency=concurrency)
        return BucketStore(root, FsyncMode(fsync), storage_options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot open store {root!r} ({protocol}://): {exc}") from exc


def store_from_settings(settings: Settings) -> Store:
    """Open the store of ``settings.root`` with every store setting (modes, bucket options)."""
    options = dict(settings.storage_options)
    if not is_local(settings.root):
        from ckptd.store.s3.backend import (
            bucket_options,  # the endpoint setting joins [storage_options]
        )

        options = bucket_options(settings)
    return open_store(settings.root, settings.fsync, file_mode=settings.file_mode,
                      dir_mode=settings.dir_mode, storage_options=options,
                      timeout=settings.store_timeout, concurrency=settings.store_concurrency)


def __getattr__(name: str) -> type[BucketStore]:
    """``BucketStore`` on demand: importing it pulls in fsspec, which the local path needs not."""
    if name == "BucketStore":
        from ckptd.store.bucket import BucketStore

        return BucketStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
