"""Stores: where job files live. :func:`open_store` picks the backend from the root's URL."""

from __future__ import annotations

from typing import Any

from ..durable import FsyncMode
from ..errors import ConfigError
from .base import Store
from .bucket import BucketStore
from .local import LocalStore

__all__ = ["Store", "LocalStore", "BucketStore", "open_store", "is_local"]


def is_local(root: str) -> bool:
    """Return True when ``root`` names a local folder (a path or a file:// URL)."""
    return "://" not in root or root.startswith("file://")


def open_store(root: str, fsync: FsyncMode | str = FsyncMode.BATCH, *,
               file_mode: int = 0o640, dir_mode: int = 0o750,
               storage_options: dict[str, Any] | None = None) -> Store:
    """Open the store at ``root``: a path or ``file://`` URL (local disk), ``memory://``
    (in-process, for tests) or any fsspec object-store URL such as ``s3://bucket/prefix``."""
    if not root:
        raise ConfigError("no store root given: pass --root PATH|URL or set CKPTD_ROOT")
    if is_local(root):
        path = root[len("file://"):] if root.startswith("file://") else root
        return LocalStore(path, FsyncMode(fsync), file_mode=file_mode, dir_mode=dir_mode)
    protocol = root.split("://", 1)[0]
    try:
        return BucketStore(root, FsyncMode(fsync), storage_options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot open store {root!r} ({protocol}://): {exc}") from exc
