"""The store interface: where job files live and how they move between state folders.

Layout under the root, one folder per queue and one per state::

    <queue>/pending/<id>.json   claimed/<id>.json   done/<id>.json   failed/<id>.json
    <queue>/state/<id>.json     the worker's latest checkpoint
    <queue>/blobs/<id>.payload  payloads (and results) too big to inline in the job file
    <queue>/waiting/<id>.json   jobs waiting for parents, a time or a signal
    <queue>/signals/<id>.<name>.json   signals sent to a job (dropped by hand, or sent)
    <queue>/quarantine/         files that could not be read, with a .reason.txt beside
    <queue>/tmp/                staging for atomic writes

Writes go through :meth:`Store.apply`, which takes a group of operations so that the
``batch`` fsync mode can make the whole group durable with one flush. The one-operation
methods (:meth:`Store.put_new`, :meth:`Store.move`, ...) are shorthands for a group of one.

Every backend keeps these promises; the contract tests in ``tests/store`` hold them to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, InvalidName, StoreError
from ckptd.core.states import STATES, State
from ckptd.store.file_names import JOB_SUFFIX, Line, job_file_name, split_job_name
from ckptd.store.listings import PendingListings
from ckptd.store.ops import (
    Delete,
    DeleteCheckpoint,
    DeleteSignal,
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
)

__all__ = ["Delete", "DeleteCheckpoint", "DeleteSignal", "Move", "Op", "Outcome", "PutBlob",
           "PutCheckpoint", "PutManifest", "PutNew", "PutOutput", "PutSignal", "SignalFile",
           "Store", "Lock", "Leftover", "Foreign", "JOB_SUFFIX", "split_job_name"]
"""The operations live in :mod:`ckptd.store.ops`, the names of job files in
:mod:`ckptd.store.file_names`; they are named here too."""

if TYPE_CHECKING:
    from ckptd.store.objects import ControlObjects

CHECKPOINT_DIR = "state"
BLOB_DIR = "blobs"
TMP_DIR = "tmp"
QUARANTINE_DIR = "quarantine"
REASON_SUFFIX = ".reason.txt"
TRASH_MARK = ".old."  # in tmp/: an old copy already replaced, waiting to be deleted
SIGNAL_DIR = "signals"
QUEUE_DIRS: tuple[str, ...] = tuple(s.value for s in STATES) + (CHECKPOINT_DIR, BLOB_DIR, TMP_DIR,
                                                               SIGNAL_DIR)
BLOB_KINDS = ("payload", "result", "source")
BATCH_DIR = "batches"
OUTPUT_DIR = "outputs"
ARCHIVE_DIR = "archive"
SCHEDULE_DIR = "schedules"
QUEUE_CONTROLS = ("paused", "limits.json", "key_limits.json")
"""Control files at a queue's top (``<queue>/paused``, ``<queue>/limits.json``,
``<queue>/key_limits.json``): what an operator sets on a queue, read by every listing of the
queues."""


@dataclass(frozen=True)
class Leftover:
    """A file in a queue's ``tmp/`` folder and its age in seconds."""

    queue: str
    name: str
    age: float


@dataclass(frozen=True)
class Foreign:
    """A file in a state folder that is not ``<valid id>.json``."""

    queue: str
    folder: str
    name: str



class Lock(Protocol):
    """A lock of a root that this process holds (:class:`ckptd.store.local.locks.HeldLock`)."""

    path: str
    exclusive: bool

    def describe(self, holder: Mapping[str, object]) -> None:
        """Write who holds the lock into it (exclusive locks only)."""

    def release(self) -> None:
        """Give the lock back. Idempotent."""


class Store(PendingListings, ABC):
    """A root holding queues of job files. Safe to share between threads of one process."""

    url: str
    fsync: FsyncMode

    # -- reading ---------------------------------------------------------------------------

    @abstractmethod
    def queues(self) -> list[str]:
        """Return the sorted names of the queues under the root; [] when there are none.

        A queue exists once any of its state folders exists. Entries whose names are not
        valid queue names are ignored.
        """

    @abstractmethod
    def ids(self, queue: str, state: State) -> list[str]:
        """Return the ids in ``state``, sorted (FIFO for generated ids); [] when none.

        Files that are not ``<valid id>.json`` are skipped (see :meth:`foreign`).
        """

    def count(self, queue: str, state: State) -> int:
        """Return the number of jobs in ``state``; 0 when none."""
        return len(self.ids(queue, state))

    @abstractmethod
    def read(self, queue: str, state: State, job_id: str, priority: int = 0,
             key: str = "") -> bytes:
        """Return the bytes of ``<state>/<id>.json``; raise JobNotFound when absent
        (``priority``, ``key``: of a pending file, whose name carries them)."""

    def find(self, queue: str, job_id: str, priority: int | None = None,
             key: str = "") -> list[State]:
        """Return the states that hold ``job_id``: [] when none, two after a crash.
        ``priority``, ``key``: of its pending file; priority None: looked for under every
        name (a listing)."""
        found = [s for s in STATES if self.exists(queue, s, job_id, priority or 0, key)]
        if not found and priority is None and self.pending_tag(queue, job_id) is not None:
            found = [State.PENDING]
        return found

    @abstractmethod
    def exists(self, queue: str, state: State, job_id: str, priority: int = 0,
               key: str = "") -> bool:
        """Return True when ``<state>/<id>.json`` exists (``priority``, ``key``: as for
        read)."""

    @abstractmethod
    def mtime(self, queue: str, state: State, job_id: str, priority: int = 0,
              key: str = "") -> float:
        """Return the time the job file last changed; raise JobNotFound when absent."""

    @abstractmethod
    def read_checkpoint(self, queue: str, job_id: str) -> bytes | None:
        """Return the job's latest checkpoint, or None when it has none."""

    @abstractmethod
    def read_blob(self, queue: str, job_id: str, kind: str) -> bytes:
        """Return the blob ``<id>.<kind>``; raise JobNotFound when absent."""

    # -- writing ---------------------------------------------------------------------------

    @abstractmethod
    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        """Carry out a group of operations; return one outcome per op (None = done).

        Each op is atomic on its own: no reader ever sees a half-written file, and a crash
        leaves an op either not done, done, or (for a move on a backend without rename)
        in both folders, which :mod:`ckptd.core.states` resolves. Ops are idempotent except
        PutNew, which reports JobExists the second time. When this returns, every op that
        succeeded is as durable as the fsync mode promises; in ``batch`` mode the whole
        group shares its flushes. A failing op does not stop the others.
        """

    def _one(self, op: Op) -> None:
        outcome = self.apply([op])[0]
        if outcome is not None:
            raise outcome

    def put_new(self, queue: str, job_id: str, data: bytes, check_other_states: bool = True
                ) -> None:
        """Create a pending job (atomic, create-only); raise JobExists if the id is taken.

        With ``check_other_states`` an id found in claimed/, done/ or failed/ is refused
        too (generated ids skip the check: they cannot collide).
        """
        self._one(PutNew(queue, job_id, data, check_other_states))

    def move(self, queue: str, job_id: str, src: State, dst: State, data: bytes | None = None
             ) -> None:
        """Move a job between states (rewriting it when ``data`` is given).

        Raises JobNotFound when the job is not in ``src``. Idempotent in effect: repeating a
        completed move raises JobNotFound and changes nothing. (An op :class:`Move` with
        ``src_known`` and ``data`` may skip that look on a bucket: repeated after it
        completed, it writes the same ``data`` to ``dst`` again and finds nothing to delete,
        so it ends in the same state, and reports success.)
        """
        self._one(Move(queue, job_id, src, dst, data))

    def delete(self, queue: str, state: State, job_id: str) -> None:
        """Remove a job file, its checkpoint and blobs. Idempotent: absent is fine."""
        self._one(Delete(queue, state, job_id))

    def put_checkpoint(self, queue: str, job_id: str, data: bytes) -> None:
        """Atomically replace the job's checkpoint. Idempotent."""
        self._one(PutCheckpoint(queue, job_id, data))

    def delete_checkpoint(self, queue: str, job_id: str) -> None:
        """Remove the job's checkpoint. Idempotent: absent is fine."""
        self._one(DeleteCheckpoint(queue, job_id))

    def put_blob(self, queue: str, job_id: str, kind: str, data: bytes) -> None:
        """Atomically write the blob ``<id>.<kind>``. Idempotent."""
        self._one(PutBlob(queue, job_id, kind, data))

    @abstractmethod
    def ensure_queue(self, queue: str) -> None:
        """Create the queue's folders where the backend has folders. Idempotent."""

    # -- maintenance -----------------------------------------------------------------------

    @abstractmethod
    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        """Return the files in the queue's ``tmp/``, with their ages; [] when none."""

    @abstractmethod
    def remove_leftover(self, queue: str, name: str) -> None:
        """Remove a file from ``tmp/``. Idempotent."""

    @abstractmethod
    def foreign(self, queue: str) -> list[Foreign]:
        """Return files in state folders that are not ``<valid id>.json``; [] when none."""

    @abstractmethod
    def quarantine(self, queue: str, folder: str, name: str, reason: str) -> str:
        """Move ``<folder>/<name>`` to ``quarantine/`` with ``<name>.reason.txt`` beside it.

        Returns the new location, for the log. A file that is already gone is not an error.
        """

    @abstractmethod
    def quarantined(self, queue: str) -> list[str]:
        """Return the names of the quarantined files (without the reason files)."""

    @abstractmethod
    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        """Return bytes ``start`` to ``end`` of a blob; raise JobNotFound when absent."""

    @abstractmethod
    def read_manifest(self, queue: str, batch: str) -> bytes:
        """Return a batch's manifest; raise JobNotFound when the batch has none."""

    @abstractmethod
    def manifests(self, queue: str) -> list[str]:
        """Return the names of the queue's batches (that have a manifest); [] when none."""

    def put_output(self, queue: str, name: str, data: bytes) -> str:
        """Atomically write ``<queue>/outputs/<name>``; return where it is. Idempotent."""
        self._one(PutOutput(queue, name, data))
        return self.output_location(queue, name)

    def output_location(self, queue: str, name: str) -> str:
        """Where the output file ``name`` of ``queue`` is (a path or URL), for messages."""
        return f"{self.url.rstrip('/')}/{queue}/{OUTPUT_DIR}/{name}"

    @abstractmethod
    def read_output(self, queue: str, name: str) -> bytes:
        """Return an output file; raise JobNotFound when absent."""

    @abstractmethod
    def signals(self, queue: str) -> list[SignalFile]:
        """Return the signals in the queue's ``signals/`` (files named
        ``<id>.<name>.json``; others are left out), sorted; [] when none."""

    @abstractmethod
    def read_signal(self, queue: str, job_id: str, name: str) -> bytes | None:
        """Return the bytes of a signal file, or None when it is absent."""

    def put_manifest(self, queue: str, batch: str, data: bytes) -> None:
        """Atomically write a batch's manifest. Idempotent."""
        self._one(PutManifest(queue, batch, data))

    def delete_manifest(self, queue: str, batch: str) -> None:
        """Remove a batch's manifest (a batch given up before any of its jobs was made);
        nothing when absent. Idempotent.

        Default: StoreError (a backend that cannot remove it says so).
        """
        raise StoreError(f"{type(self).__name__} cannot remove the manifest of batch "
                         f"{batch!r}")

    def blob_ids(self, queue: str) -> list[tuple[str, str]]:
        """Return (job id, kind) of every blob of the queue; [] when none."""
        return []

    def checkpoint_ids(self, queue: str) -> list[str]:
        """Return the ids that have a checkpoint; [] when none."""
        return []

    def close(self) -> None:
        """Release what the store holds open. Idempotent."""

    # -- capabilities: what only some backends do, with the default of those that do not ----

    def root_exists(self) -> bool:
        """Return False when the root itself is missing (a mistyped path), so that commands
        that only read can say so instead of showing an empty store.

        Default: True (a bucket's prefix exists as soon as anything is written under it).
        """
        return True

    def ids_after(self, queue: str, state: State, start_after: str | None) -> list[str]:
        """Return the ids in ``state`` that sort after ``start_after`` (all when None), sorted.

        Default: a full listing, filtered. A bucket lists only the keys after it.
        """
        return [i for i, _, _ in self.pending_after(queue, start_after)] \
            if state is State.PENDING else \
            [i for i in self.ids(queue, state) if start_after is None or i > start_after]

    def prefetch(self, queue: str, ids: Sequence[str],
                 priorities: Mapping[str, Line] | None = None) -> int:
        """Read the pending files of ``ids`` (named with ``priorities``: a priority, or
        ``(priority, key)``; 0 where not given) ahead of their claims; return how many were
        read. Default: nothing (0); reads are cheap where there is no network in between."""
        return 0

    def keep_own_pending(self, watched: Callable[[str], bool]) -> bool:
        """Keep the pending files this process writes in memory until they are claimed, so a
        claim need not read them back. Only for queues where ``watched(queue)`` is true:
        the caller promises to report every change it sees there (:meth:`pending_changed`),
        in order. Return True when the backend keeps them.

        Default: False (nothing is kept).
        """
        return False

    def pending_changed(self, queue: str, job_id: str) -> None:
        """A watcher saw ``pending/<id>`` appear or change: whatever was kept of it is
        read again, unless this was the event of this process's own write.

        Default: nothing is kept, nothing to do.
        """

    def forget_prefetched(self) -> None:
        """Drop whatever :meth:`prefetch` or this process's own writes keep in memory.

        Default: nothing is kept. Idempotent.
        """

    def probe_access(self) -> None:
        """Raise StoreError when the store cannot be read now (one cheap request).

        Default: list the queues.
        """
        self.queues()

    def request_stats(self) -> dict[str, int]:
        """Counts of the requests made to a remote store (requests, retries, errors, ...).

        Default: {} (a local store makes no requests).
        """
        return {}

    def set_fence(self, fence: Callable[[str], None] | None) -> bool:
        """Have every write to a queue call ``fence(queue)`` first, which raises NotLeader when
        this process no longer leads that queue; None removes it. Return True when the
        backend fences its writes.

        Default: False, no fencing (a local root is kept to one daemon by a lock instead).
        """
        return False

    def lock(self, name: str, *, shared: bool = False) -> Lock | None:
        """Take the lock ``name`` of this root for this process, without waiting; it is
        released when the process ends, however it ends. Raises LockHeld (naming the holder)
        when another process holds it.

        Default: None, no locks (a bucket keeps daemons apart with leases instead).
        """
        return None

    def lock_holder(self, name: str) -> dict[str, object] | None:
        """Who holds lock ``name`` now ({} when unknown), or None when nobody does.

        Default: None.
        """
        return None

    def control_objects(self) -> ControlObjects | None:
        """The conditional objects of the store's control area (leases), or None.

        Default: None (a local root has no leases).
        """
        return None

    # -- operator controls: files at the top of a queue, archives ------------------------

    @abstractmethod
    def read_control(self, queue: str, name: str) -> bytes | None:
        """Return the control file ``<queue>/<name>`` (see :func:`check_control`), or None
        when it is absent."""

    @abstractmethod
    def write_control(self, queue: str, name: str, data: bytes) -> None:
        """Atomically write (or replace) the control file ``<queue>/<name>``, making the
        queue when it does not exist. Idempotent."""

    @abstractmethod
    def delete_control(self, queue: str, name: str) -> None:
        """Remove the control file ``<queue>/<name>``. Idempotent: absent is fine."""

    def queue_controls(self) -> dict[str, dict[str, bytes]]:
        """Every queue (as :meth:`queues` lists them; a bucket adds prefixes that hold only a
        control file) with the :data:`QUEUE_CONTROLS` files
        it has, by name: ``{"price": {"paused": b"maintenance"}, "ship": {}}``.

        Default: a listing of the queues, then a look for each file.
        """
        found: dict[str, dict[str, bytes]] = {}
        for queue in self.queues():
            files = {}
            for name in QUEUE_CONTROLS:
                data = self.read_control(queue, name)
                if data is not None:
                    files[name] = data
            found[queue] = files
        return found

    def finished(self, queue: str, state: State, cutoff: float | None = None
                 ) -> list[tuple[str, float]]:
        """Return (id, time its file last changed) of the jobs in ``state``, oldest first.

        With ``cutoff``, jobs that cannot have changed before it may be left out (an id
        made by :func:`ckptd.core.ids.new_id` carries its creation time, and a job cannot
        end before it began): the result holds at least every job older than ``cutoff``.
        Default: a listing, then a look at each file.
        """
        found = []
        for job_id in self.ids(queue, state):
            try:
                found.append((job_id, self.mtime(queue, state, job_id)))
            except CkptdError:
                continue  # gone meanwhile
        return sorted(found, key=lambda pair: pair[1])

    def remove_finished(self, queue: str, state: State, job_ids: Sequence[str]) -> list[str]:
        """Remove finished jobs with their checkpoints and blobs (retention); return the ids
        that were there. Safe to call from another thread than :meth:`apply`'s.

        Default: one group of :class:`Delete` operations.
        """
        ops: list[Op] = [Delete(queue, state, job_id) for job_id in job_ids]
        removed = []
        for job_id, outcome in zip(job_ids, self.apply(ops)):
            if outcome is not None:
                raise outcome
            removed.append(job_id)
        return removed

    @abstractmethod
    def archive(self, queue: str, state: State, job_id: str, folder: str) -> bool:
        """Move a finished job's file and blobs to ``<queue>/archive/<folder>/`` (its
        checkpoint is removed); return False when the job is not in ``state``. A crash in
        between leaves the job in one place or both (run it again: idempotent)."""

    def describe(self, queue: str, state: State, job_id: str, priority: int = 0,
                 key: str = "") -> str:
        """Return where a job file lives, for messages (a path or URL)."""
        return f"{self.url.rstrip('/')}/{queue}/{state.value}/" \
            f"{job_file_name(state, job_id, priority, key)}"


def check_blob_kind(kind: str) -> str:
    """Return ``kind`` when it is a blob kind; raise InvalidName otherwise."""
    if kind not in BLOB_KINDS:
        raise InvalidName(f"invalid blob kind {kind!r}: expected one of {', '.join(BLOB_KINDS)}")
    return kind


def check_folder(folder: str) -> str:
    """Return ``folder`` when it is one of a queue's folders; raise InvalidName otherwise."""
    if folder not in QUEUE_DIRS:
        raise InvalidName(f"invalid folder {folder!r}: expected one of {', '.join(QUEUE_DIRS)}")
    return folder


def check_control(name: str) -> str:
    """Return ``name`` when it is a control file: one of :data:`QUEUE_CONTROLS`, or a
    schedule's record ``schedules/<valid name>.json``; raise InvalidName otherwise."""
    from ckptd.core.names import is_valid_name

    if name in QUEUE_CONTROLS:
        return name
    folder, _, rest = name.partition("/")
    if folder == SCHEDULE_DIR and rest.endswith(JOB_SUFFIX) \
            and is_valid_name(rest[:-len(JOB_SUFFIX)]):
        return name
    raise InvalidName(f"invalid control file {name!r}: expected one of "
                      f"{', '.join(QUEUE_CONTROLS)} or {SCHEDULE_DIR}/<name>{JOB_SUFFIX}")


def is_trash(name: str) -> bool:
    """True for a file in tmp/ that is an old copy discarded by a move or delete: garbage
    whatever its age (the job lives on in its new folder, or was deleted on purpose)."""
    return TRASH_MARK in name
