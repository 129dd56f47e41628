"""The write path of the S3 store: a group of operations as concurrent requests.

:meth:`S3Writes.apply` runs the operations of one group side by side (at most
``concurrency`` requests in flight, :mod:`ckptd.store.s3.requests`) and keeps the operations
of one job in their order: they form a chain, and chains run side by side.

The requests of each operation, and why no fewer:

- create a job (:class:`PutNew`): one create-only PUT (``If-None-Match: *``) where the
  server honours conditional writes (probed once), else a look then a PUT; with
  ``check_other_states``, a look in each other state folder after it;
- move (:class:`Move`): a bucket has no rename, so a copy (or a PUT of the new bytes), then
  a delete of the old key. A move with new bytes looks first (HEAD), so that a move of a
  job that is not there changes nothing, unless the caller knows it is there
  (``src_known``); a plain copy needs no look (it fails when the source is absent);
- the deletes of old copies that end their chain are sent together at the end of the
  group, up to 1,000 keys per ``DeleteObjects`` request. Until then the job is under both
  keys, exactly as after a crash between copy and delete, which recovery resolves (the later
  state wins); no operation is reported done before its delete went through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ckptd.core import crashpoints
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, StoreError
from ckptd.core.names import check_job_ref
from ckptd.core.states import State, other_states
from ckptd.core.waits import signal_file
from ckptd.store.base import (
    BATCH_DIR,
    BLOB_DIR,
    BLOB_KINDS,
    CHECKPOINT_DIR,
    JOB_SUFFIX,
    OUTPUT_DIR,
    SIGNAL_DIR,
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
    check_blob_kind,
)
from ckptd.store.file_names import job_file_name
from ckptd.store.objects import Conflict
from ckptd.store.s3.cache import PendingCache
from ckptd.store.s3.requests import S3Requests, etag_of

log = logging.getLogger(__name__)

MOVED_KEPT = 100_000  # moves remembered for the listings that began before them


class S3Writes:
    """Applies groups of operations to one S3 root (see the module docstring)."""

    def __init__(self, req: S3Requests, prefix: str, url: str, cache: PendingCache, *,
                 bulk_deletes: bool = True) -> None:
        self.req = req
        self.prefix = prefix
        self.url = url
        self.cache = cache
        self.bulk_deletes = bulk_deletes
        self.conditional: bool | None = None
        self._probe_lock: asyncio.Lock | None = None
        self._key_locks: dict[str, asyncio.Lock] = {}
        # (queue, id) -> the end of the last group started with an op of that job: a
        # later group's ops of the job wait for it (deletes left to a group's end included)
        self._last_group: dict[tuple[str, str], asyncio.Future[None]] = {}
        # (queue, id, state) -> when a move took the job out of that state (wall clock)
        self.moved: dict[tuple[str, str, State], float] = {}

    def key(self, queue: str, folder: str, name: str) -> str:
        return f"{self.prefix}/{queue}/{folder}/{name}"

    def job_key(self, queue: str, state: State, job_id: str, priority: int = 0,
                key: str = "") -> str:
        name = job_file_name(state, job_id, priority, key)
        return f"{self.prefix}/{queue}/{state.value}/{name}"

    def busy(self, queue: str, job_id: str) -> bool:
        """True while a group with an op of the job runs (read from any thread: one lookup
        in a dict that only the event loop's thread changes)."""
        return (queue, job_id) in self._last_group

    async def probe(self) -> bool:
        """Whether the server honours conditional writes (probed once, however many ask)."""
        if self.conditional is None:
            if self._probe_lock is None:
                self._probe_lock = asyncio.Lock()
            async with self._probe_lock:
                if self.conditional is None:
                    # A listing first: some servers (SeaweedFS) create a missing bucket on
                    # the first PUT, where every other command says it does not exist.
                    await self.req.probe_access()
                    self.conditional = await self.req.probe_conditional(self.prefix)
        return self.conditional

    # -- a group ---------------------------------------------------------------------------

    async def apply(self, ops: list[Op]) -> list[Outcome]:
        """Carry out ``ops``; one outcome each (see :meth:`ckptd.store.base.Store.apply`).

        Groups may run side by side (the daemon starts one per turn of its loop without
        waiting): the ops of a job wait for the end of the last group started before with
        an op of that job, so a job's ops keep their order whatever group they are in.
        """
        outcomes: list[Outcome] = [None] * len(ops)
        chains: dict[tuple[str, str], list[int]] = {}
        for i, op in enumerate(ops):
            chains.setdefault((op.queue, op.job_id), []).append(i)
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = {key: self._last_group.get(key) for key in chains}
        for key in chains:
            self._last_group[key] = ended
        late: dict[int, list[str]] = {}  # op -> old keys it leaves for the group's end

        async def chain(key: tuple[str, str], positions: list[int]) -> None:
            earlier = before[key]
            if earlier is not None:
                await asyncio.shield(earlier)
            for n, i in enumerate(positions):  # the ops of one job in their order
                later = [ops[j] for j in positions[n + 1:]]
                leave = late.setdefault(i, []) if self._may_leave(ops[i], later) else None
                outcomes[i] = await self._outcome(ops[i], leave)

        try:
            await asyncio.gather(*(chain(k, p) for k, p in chains.items()))
            waiting = [i for i, keys in late.items() if keys and outcomes[i] is None]
            if waiting:
                try:
                    await self.req.delete_many([k for i in waiting for k in late[i]],
                                               "delete the old copies")
                except CkptdError as exc:
                    for i in waiting:  # each op is tried again whole: all is idempotent
                        outcomes[i] = self._failure(ops[i], exc)
        finally:
            ended.set_result(None)
            for key in chains:
                if self._last_group.get(key) is ended:
                    del self._last_group[key]
        return outcomes

    def _may_leave(self, op: Op, later: Sequence[Op]) -> bool:
        """True when ``op`` may leave its deletes to the group's end: no later op of its
        chain writes or reads a key it deletes."""
        if not self.bulk_deletes:
            return False
        if isinstance(op, Move):
            return not any(isinstance(o, (Move, PutNew, Delete)) for o in later)
        if isinstance(op, DeleteCheckpoint):
            return not any(isinstance(o, (PutCheckpoint, Delete)) for o in later)
        return False

    async def _outcome(self, op: Op, leave: list[str] | None) -> Outcome:
        try:
            check_job_ref(op.queue, op.job_id)
            await self._commit_op(op, leave)
            return None
        except CkptdError as exc:
            return self._failure(op, exc)
        except Exception as exc:  # noqa: BLE001 - a bug costs the op, not the group
            log.exception("unexpected error applying %r", op)
            return StoreError(f"cannot update {self.url}/{op.queue}: {exc}")

    def _failure(self, op: Op, exc: CkptdError) -> CkptdError:
        if isinstance(exc, Conflict):
            return StoreError(f"cannot update {self.url}/{op.queue}: {exc}")
        return exc

    # -- one operation ---------------------------------------------------------------------

    async def _commit_op(self, op: Op, leave: list[str] | None) -> None:
        req = self.req
        if isinstance(op, Move):
            await self._move(op, leave)
        elif isinstance(op, PutNew):
            await self._put_new(op)
        elif isinstance(op, Delete):
            if op.state is State.PENDING:
                self.cache.take(op.queue, op.job_id)
            what = f"delete {op.queue}/{op.state.value}/{op.job_id}"
            # The job file first: a job never loses its payload while it can still run.
            await req.delete(self.job_key(op.queue, op.state, op.job_id, op.priority, op.key), what)
            if op.attachments:
                keys = [self.key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX)]
                keys += [self.key(op.queue, BLOB_DIR, f"{op.job_id}.{k}") for k in BLOB_KINDS]
                await req.delete_many(keys, what)
        elif isinstance(op, PutCheckpoint):
            await req.put(self.key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX), op.data,
                          f"save the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, DeleteCheckpoint):
            key = self.key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX)
            if leave is not None:
                leave.append(key)
            else:
                await req.delete(key, f"delete the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, PutBlob):
            kind = check_blob_kind(op.kind)
            await req.put(self.key(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"), op.data,
                          f"write blob {op.queue}/{op.job_id}.{kind}")
        elif isinstance(op, PutOutput):
            await req.put(self.key(op.queue, OUTPUT_DIR, op.name), op.data,
                          f"write output {op.queue}/{op.name}")
        elif isinstance(op, PutManifest):
            await req.put(self.key(op.queue, BATCH_DIR, op.batch + JOB_SUFFIX), op.data,
                          f"write manifest {op.queue}/{op.batch}")
        elif isinstance(op, PutSignal):
            await req.put(self.key(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)),
                          op.data, f"write signal {op.queue}/{op.job_id}.{op.name}")
        elif isinstance(op, DeleteSignal):
            await req.delete(self.key(op.queue, SIGNAL_DIR, signal_file(op.job_id, op.name)),
                             f"delete signal {op.queue}/{op.job_id}.{op.name}")
        else:
            raise TypeError(f"unknown store operation {op!r}")

    async def _move(self, op: Move, leave: list[str] | None) -> None:
        src = self.job_key(op.queue, op.src, op.job_id, op.priority, op.key)
        dst = self.job_key(op.queue, op.dst, op.job_id, op.priority, op.key)
        what = f"move {op.queue}/{op.job_id} from {op.src.value} to {op.dst.value}"
        missing = f"job {op.job_id!r} is not in {op.queue}/{op.src.value}/"
        if op.src is State.PENDING:
            self.cache.take(op.queue, op.job_id)
        if op.data is None:
            if src == dst:
                if await self.req.head(src, what) is None:
                    raise JobNotFound(missing)
                return
            try:
                await self.req.copy(src, dst, what)  # fails with NoSuchKey if src is absent
            except JobNotFound:
                raise JobNotFound(missing) from None
        else:
            # Look first: a move of a job that is not there must change nothing. The caller
            # that knows it is there spares the request (see Move.src_known).
            if not op.src_known and await self.req.head(src, what) is None:
                raise JobNotFound(missing)
            await self.req.put(dst, op.data, what)
            if op.dst is State.PENDING:
                self.cache.remember(op.queue, op.job_id, op.data)
            if src == dst:
                return
        self._note_moved(op)
        crashpoints.reached("after_copy")
        # Until this delete the job is under both keys; recovery keeps the later copy.
        if leave is not None:
            leave.append(src)
        else:
            await self.req.delete(src, what)

    def _note_moved(self, op: Move) -> None:
        """Remember that the job left ``op.src`` (its new copy is written)."""
        self._note_gone(op.queue, op.job_id, op.src)

    def _note_gone(self, queue: str, job_id: str, state: State) -> None:
        """Remember that the job left ``state``: a listing that began before must not take
        the copy it may have seen there for a job."""
        moved = self.moved
        now = time.time()
        if len(moved) >= MOVED_KEPT:  # the oldest half goes
            cutoff = sorted(moved.values())[len(moved) // 2]
            for key in [k for k, at in moved.items() if at <= cutoff]:
                del moved[key]
        moved[(queue, job_id, state)] = now

    async def _put_new(self, op: PutNew) -> None:
        dst = self.job_key(op.queue, op.state, op.job_id, op.priority, op.key)
        what = f"create {op.queue}/{op.state.value}/{op.job_id}"
        conditional = await self.probe()
        etag: str | None = None
        if conditional:
            try:
                etag = await self.req.put(dst, op.data, what, create=True)
            except Conflict:
                # A retry of our own PUT whose answer was lost finds our own object there.
                info = await self.req.head(dst, what)
                if info is None or info.etag != etag_of(op.data):
                    raise JobExists(op.queue, op.job_id, op.state.value) from None
                etag = info.etag
        else:
            # Best effort without server support: one writer per key in this process.
            lock = self._key_locks.setdefault(dst, asyncio.Lock())
            async with lock:
                if await self.req.head(dst, what) is not None:
                    raise JobExists(op.queue, op.job_id, op.state.value)
                await self.req.put(dst, op.data, what)
            self._key_locks.pop(dst, None)
        if op.check_other_states:
            # Checked after creating, so a copy moving between folders meanwhile is seen.
            others = other_states(op.state)
            found = await asyncio.gather(*(self.req.head(self.job_key(op.queue, s, op.job_id),
                                                         what) for s in others))
            for state, info in zip(others, found):
                if info is not None:
                    await self.req.delete(dst, what, if_match=etag if conditional else None)
                    # The copy was there for a moment: a listing may have seen it.
                    self._note_gone(op.queue, op.job_id, op.state)
                    raise JobExists(op.queue, op.job_id, state.value)
        if op.state is State.PENDING:
            self.cache.remember(op.queue, op.job_id, op.data)
