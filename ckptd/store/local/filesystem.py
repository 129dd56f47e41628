"""What a local store sits on: the filesystem type, its mount, whether ext4 keeps a journal.

Read from ``/proc/self/mountinfo`` and ``/proc/fs`` (Linux); elsewhere the facts are
unknown (None), never guessed. ``ckptd doctor`` reports them, because they decide how fast
and how safe the store is:

- ext4 without a journal makes every file created after deletes cost about 0.5 ms (the
  block allocator searches), so a queue that moves thousands of jobs a second crawls;
- a network filesystem (NFS, CIFS, ...) does not report files that other hosts add to
  ``pending/`` (inotify sees local changes only), and its locks may not hold;
- tmpfs loses every job at a reboot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone",
    "fuse.glusterfs", "fuse.cephfs", "davfs", "fuse.davfs2", "virtiofs", "orangefs",
})
MEMORY_TYPES = frozenset({"tmpfs", "ramfs"})
JOURNALED_EXT = frozenset({"ext3", "ext4"})


@dataclass(frozen=True)
class Filesystem:
    """The mount a path is on."""

    mount_point: str
    fstype: str
    source: str
    journal: bool | None = None  # ext3/ext4 only: whether it has one (None: unknown)

    @property
    def network(self) -> bool:
        """True for a filesystem served by another machine."""
        return self.fstype in NETWORK_TYPES or self.fstype.startswith("nfs")

    @property
    def memory(self) -> bool:
        """True for a filesystem held in memory (gone at a reboot)."""
        return self.fstype in MEMORY_TYPES


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, str]]:
    """(mount point, filesystem type, source, major:minor) of each line of a mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 5 or len(fields) < dash + 3:
            continue
        mounts.append((_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2]),
                       fields[2]))
    return mounts


def _contains(mount_point: str, path: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point + "/")


def _device_name(dev: str) -> str | None:
    """The kernel's name of block device ``major:minor`` (``vda``, ``dm-0``), or None."""
    try:
        return os.path.basename(os.path.realpath(f"/sys/dev/block/{dev}"))
    except OSError:
        return None


def has_journal(dev: str, proc_fs: str = "/proc/fs") -> bool | None:
    """Whether the ext3/ext4 filesystem on device ``major:minor`` has a journal.

    A mounted journal shows as ``/proc/fs/jbd2/<device>-<inode>``; a mounted ext4 as
    ``/proc/fs/ext4/<device>``. None when the kernel does not say.
    """
    name = _device_name(dev)
    if not name or not os.path.isdir(os.path.join(proc_fs, "ext4", name)):
        return None
    try:
        journals = os.listdir(os.path.join(proc_fs, "jbd2"))
    except FileNotFoundError:
        return False  # no journal in use on this machine at all
    except OSError:
        return None
    return any(entry.startswith(name + "-") for entry in journals)


def filesystem_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> Filesystem | None:
    """The filesystem ``path`` (or its nearest existing parent) is on; None when unknown."""
    path = os.path.realpath(path)
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    try:
        with open(mountinfo) as handle:
            mounts = parse_mountinfo(handle.read())
    except OSError:
        return None
    best: tuple[str, str, str, str] | None = None
    for mount in mounts:  # the last, longest mount point that holds the path wins
        if _contains(mount[0], path) and (best is None or len(mount[0]) >= len(best[0])):
            best = mount
    if best is None:
        return None
    mount_point, fstype, source, dev = best
    journal = has_journal(dev) if fstype in JOURNALED_EXT else None
    return Filesystem(mount_point, fstype, source, journal)
