"""The store's operations: what :meth:`ckptd.store.base.Store.apply` carries out, one
frozen dataclass each, and what each one's outcome is.

A group of them is applied together (one flush in ``batch`` mode); each says in its
docstring what it does when there is nothing to do. :mod:`ckptd.store.base` names them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ckptd.core.errors import CkptdError
from ckptd.core.states import State


@dataclass(frozen=True)
class PutNew:
    """Create ``<state>/<id>.json`` (``pending/`` unless told; a pending file is named with
    its ``priority`` and ``key``, :mod:`ckptd.store.file_names`); fails with JobExists if the
    id is in any state."""

    queue: str
    job_id: str
    data: bytes
    check_other_states: bool = True
    state: State = State.PENDING
    priority: int = 0
    key: str = ""


@dataclass(frozen=True)
class Move:
    """Move a job from ``src`` to ``dst``, rewriting it with ``data`` when given.

    With ``src == dst`` and ``data`` the job file is rewritten in place.

    ``src_known``: the caller knows the job is in ``src`` (the daemon that leads the queue,
    ending an attempt it holds the lease of). A store that would otherwise look before it
    writes (a bucket, where a move is a copy and a delete) may then skip the look; see
    :meth:`ckptd.store.base.Store.move` for what the look protects. Stores that move
    atomically ignore it.
    """

    queue: str
    job_id: str
    src: State
    dst: State
    data: bytes | None = None
    src_known: bool = False
    priority: int = 0  # of the file in pending/, when src or dst is pending (its name)
    key: str = ""  # likewise


@dataclass(frozen=True)
class Delete:
    """Remove a job from ``state``, with its checkpoint and blobs unless told to keep them.

    Nothing happens if it is absent. Resolving a job found in two folders removes the losing
    copy with ``attachments=False``: the winner still needs its checkpoint and blobs.
    """

    queue: str
    state: State
    job_id: str
    attachments: bool = True
    priority: int = 0  # of the file, when it is in pending/ (its name)
    key: str = ""  # likewise


@dataclass(frozen=True)
class PutCheckpoint:
    """Replace the job's checkpoint with ``data``."""

    queue: str
    job_id: str
    data: bytes


@dataclass(frozen=True)
class DeleteCheckpoint:
    """Remove the job's checkpoint; nothing if absent."""

    queue: str
    job_id: str


@dataclass(frozen=True)
class PutBlob:
    """Write (or replace) the blob ``<id>.<kind>`` of a job."""

    queue: str
    job_id: str
    kind: str
    data: bytes


@dataclass(frozen=True)
class PutManifest:
    """Write (or replace) a batch's manifest ``batches/<batch>.json``."""

    queue: str
    batch: str
    data: bytes

    @property
    def job_id(self) -> str:
        """The name the file is made from (so name checks treat it like a job id)."""
        return self.batch


@dataclass(frozen=True)
class PutOutput:
    """Write (or replace) a named output file ``outputs/<name>`` (a reduce's price list, ...)."""

    queue: str
    name: str
    data: bytes

    @property
    def job_id(self) -> str:
        """The name the file is made from (so name checks treat it like a job id)."""
        return self.name


@dataclass(frozen=True)
class PutSignal:
    """Write (or replace) the signal ``signals/<id>.<name>.json`` of a job."""

    queue: str
    job_id: str
    name: str
    data: bytes


@dataclass(frozen=True)
class DeleteSignal:
    """Remove the signal ``signals/<id>.<name>.json``; nothing if absent."""

    queue: str
    job_id: str
    name: str


@dataclass(frozen=True)
class SignalFile:
    """A signal found in a queue's ``signals/``: whose, which, and when it was written."""

    job_id: str
    name: str
    mtime: float


Op = Union[PutNew, Move, Delete, PutCheckpoint, DeleteCheckpoint, PutBlob, PutManifest,
           PutOutput, PutSignal, DeleteSignal]
Outcome = Union[None, CkptdError]
