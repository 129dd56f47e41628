"""Durable-write helpers for local disks: write, fsync, rename, fsync the folder.

A file that appears in a state folder must be complete and, per the fsync setting, on the
disk. The recipe is the classic one: write the bytes to a new file in ``tmp/`` (same file
system, so the rename below cannot copy), fsync it, rename it into place, fsync the folder.
Each fsync below carries the reason it is there.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ckptd.core import crashpoints
from ckptd.core.errors import NoSpace, StoreError

_O_WRITE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def io_error(exc: OSError, action: str, path: str) -> StoreError:
    """Turn an OSError into the matching store error with a message a person can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left to {action} {path}: free space or move the store")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(f"permission denied to {action} {path}: check the owner and mode")
    return StoreError(f"cannot {action} {path}: {exc.strerror or exc}")


def write_new(path: str, data: bytes, mode: int, sync: bool) -> None:
    """Create ``path`` (which must not exist) holding ``data``; fsync it when ``sync``.

    On failure the partial file is removed and the error is raised.
    """
    fd = os.open(path, _O_WRITE_NEW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        crashpoints.reached("after_write")
        if sync:
            # The data must be on the disk before the rename makes it visible: otherwise a
            # power loss can leave an empty or partial file under the final name.
            os.fsync(fd)
            crashpoints.reached("after_file_fsync")
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a folder, so that the names created, renamed or removed in it are durable."""
    fd = os.open(path, _O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def holds_entries(folder: str) -> bool:
    """Whether ``folder`` exists and holds anything (reads at most its first entry): a
    sweep skips a job's side files in a folder that holds none, a syscall and an
    exception per job saved."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False


def unlink_quietly(path: str) -> None:
    """Remove ``path``; a file that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- rename without replacing -------------------------------------------------------------

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = None
_renameat2 = None
_syncfs = None
try:  # Linux: renameat2(RENAME_NOREPLACE) creates-if-absent in one atomic step.
    # The process's own symbols (libc is among them): find_library("c") forked
    # `ldconfig -p` at every start of the CLI.
    _libc = ctypes.CDLL(None, use_errno=True)
    _renameat2 = getattr(_libc, "renameat2", None)
    if _renameat2 is not None:
        _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
        _renameat2.restype = ctypes.c_int
    _syncfs = getattr(_libc, "syncfs", None)
    if _syncfs is not None:
        _syncfs.argtypes = [ctypes.c_int]
        _syncfs.restype = ctypes.c_int
except OSError:  # no C library to load (unusual platforms): use the portable fallbacks
    pass

_noreplace_works = _renameat2 is not None


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist; raise FileExistsError if it does.

    Atomic: of two callers racing for the same ``dst`` exactly one succeeds. Uses
    renameat2(RENAME_NOREPLACE) where the kernel and file system support it, else a hard
    link (which fails on an existing name) followed by removing ``src``.
    """
    global _noreplace_works
    if _noreplace_works:
        assert _renameat2 is not None
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), src)
        _noreplace_works = False  # this file system does not support the flag
    os.link(src, dst)
    os.unlink(src)


def sync_filesystem(any_fd: int) -> None:
    """Flush every dirty file of the file system holding ``any_fd`` in one call (syncfs).

    This is the group commit: a batch of files written without fsync becomes durable at
    the cost of one flush instead of one per file. Falls back to os.sync() elsewhere.
    """
    if _syncfs is not None:
        if _syncfs(any_fd) == 0:
            return
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.sync()


def open_dir(path: str) -> int:
    """Return a read-only descriptor of a folder (for fsync and syncfs)."""
    return os.open(path, _O_DIR)
