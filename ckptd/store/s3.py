"""S3 and S3-compatible servers: the bucket store with overlapping requests and deadlines.

:class:`S3Store` keeps the layout and the rules of :class:`~ckptd.store.bucket.BucketStore`
(a move is a copy, then a delete; recovery keeps the later copy) and adds what a real
object store needs:

- Requests overlap. :meth:`S3Store.apply` runs the operations of one group concurrently on
  s3fs's event loop, at most ``concurrency`` requests in flight, and keeps the operations of
  one job in their order (they form a chain; chains run side by side).
- Every request has its own deadline and errors become ckptd's own: the requests
  themselves are in :mod:`ckptd.store.s3_requests`.
- Creating a job is create-only on the server (``PutObject`` with ``If-None-Match: *``) when
  it supports conditional writes, so two producers can never both create the same job.
  Support is probed once (a conditional PUT on a probe key); without it the store falls
  back to look-then-write and logs a warning. Conditional CopyObject is never used.
- A fence (:meth:`S3Store.set_fence`): every write request to a queue first checks that this
  process still leads the queue, and raises :class:`~ckptd.core.errors.NotLeader` otherwise.
- Listings are paged (``ListObjectsV2``, 1,000 keys a page) and never cached; the job files
  the daemon wrote itself are remembered until their claim, so a claim does not read back
  what was just written (:meth:`prefetch` does the same for files producers put there).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ckptd.core import crashpoints
from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, StoreError
from ckptd.core.names import check_job_ref, check_queue, is_valid_name
from ckptd.core.states import State
from ckptd.store.base import (
    BATCH_DIR,
    BLOB_DIR,
    BLOB_KINDS,
    CHECKPOINT_DIR,
    JOB_SUFFIX,
    OUTPUT_DIR,
    QUARANTINE_DIR,
    REASON_SUFFIX,
    TMP_DIR,
    Delete,
    DeleteCheckpoint,
    Leftover,
    Move,
    Op,
    Outcome,
    PutBlob,
    PutCheckpoint,
    PutManifest,
    PutNew,
    PutOutput,
    check_blob_kind,
    check_folder,
)
from ckptd.store.bucket import BucketStore, _check_plain
from ckptd.store.objects import CONTROL_DIR, Conflict
from ckptd.store.s3_requests import S3Requests, _etag_of, _info_time

if TYPE_CHECKING:
    from ckptd.core.config import Settings

log = logging.getLogger(__name__)

CACHE_ENTRIES = 50_000
CACHE_BYTES = 64 * 1024 * 1024
_OTHER_STATES = (State.CLAIMED, State.DONE, State.FAILED)


def is_s3(root: str) -> bool:
    """Return True when ``root`` is an ``s3://`` (or ``s3a://``) URL."""
    return root.startswith(("s3://", "s3a://"))


def bucket_options(settings: Settings) -> dict[str, Any]:
    """s3fs options from the settings: the ``[storage_options]`` table plus the endpoint."""
    options = dict(settings.storage_options)
    endpoint = settings.s3_endpoint_url
    client_kwargs = options.get("client_kwargs") or {}
    if endpoint and not options.get("endpoint_url") and not client_kwargs.get("endpoint_url"):
        options["endpoint_url"] = endpoint
    return options


class S3Store(BucketStore):
    """A store in an S3 bucket (AWS or any S3-compatible server), under a key prefix."""

    def __init__(self, url: str, fsync: FsyncMode = FsyncMode.BATCH,
                 storage_options: dict[str, Any] | None = None, *, timeout: float = 10.0,
                 concurrency: int = 64) -> None:
        options = dict(storage_options or {})
        config = dict(options.pop("config_kwargs", None) or {})
        # botocore's own timeouts end a stuck connection or read (a PUT waiting forever on
        # "Expect: 100-continue", a server that accepted the connection and went quiet);
        # the deadline of each request (asyncio.wait_for) bounds the retries on top.
        config.setdefault("connect_timeout", max(0.5, min(5.0, timeout / 4)))
        config.setdefault("read_timeout", max(1.0, timeout / 2))
        config.setdefault("retries", {"max_attempts": 3, "mode": "standard"})
        # A few connections beyond the requests of a group, for the leader lease's own.
        config.setdefault("max_pool_connections", concurrency + 8)
        # CRC checksums of every small body cost CPU and are not understood by every
        # S3-compatible server; the HTTP layer and the server's MD5 ETag suffice here.
        config.setdefault("request_checksum_calculation", "when_required")
        config.setdefault("response_checksum_validation", "when_required")
        options["config_kwargs"] = config
        options.setdefault("use_listings_cache", False)  # other writers change the bucket
        options.setdefault("skip_instance_cache", True)
        try:
            super().__init__(url, fsync, options)
        except TypeError as exc:  # an option s3fs does not know
            raise ValueError(str(exc)) from exc
        self.bucket, _, base = self.prefix.partition("/")
        if not self.bucket:
            raise ValueError(f"no bucket in {url!r}: expected s3://BUCKET/PREFIX")
        self.base = base.strip("/")
        self.req = S3Requests(self.fs, self.bucket, self.base, timeout=timeout,
                              concurrency=concurrency)
        self._conditional: bool | None = None
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._probe_lock: asyncio.Lock | None = None

    # -- the job-file cache ----------------------------------------------------------------

    def _remember(self, queue: str, job_id: str, data: bytes) -> None:
        with self._cache_lock:
            if (len(self._cache) >= CACHE_ENTRIES
                    or self._cache_bytes + len(data) > CACHE_BYTES):
                return  # full: the oldest are claimed first, so keep them, not the newest
            old = self._cache.pop((queue, job_id), None)
            if old is not None:
                self._cache_bytes -= len(old)
            self._cache[(queue, job_id)] = data
            self._cache_bytes += len(data)

    def _forget(self, queue: str, job_id: str) -> bytes | None:
        with self._cache_lock:
            data = self._cache.pop((queue, job_id), None)
            if data is not None:
                self._cache_bytes -= len(data)
            return data

    def forget_prefetched(self) -> None:
        """Forget every remembered pending file (the daemon calls it when it stands by)."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0

    def prefetch(self, queue: str, ids: Sequence[str]) -> int:
        """Read the pending files of ``ids`` concurrently, for the next claims; return how many.

        Ids already remembered are skipped; files that are gone are ignored.
        """
        with self._cache_lock:
            wanted = [i for i in ids if (queue, i) not in self._cache]
        if not wanted:
            return 0

        async def fetch_all() -> int:
            async def one(job_id: str) -> int:
                try:
                    data = await self.req.get(self._job_key(queue, State.PENDING, job_id),
                                           f"read {queue}/pending/{job_id}")
                except StoreError:
                    return 0
                if data is None:
                    return 0
                self._remember(queue, job_id, bytes(data))
                return 1
            return sum(await asyncio.gather(*(one(i) for i in wanted)))
        return self.req.run(fetch_all)

    # -- capabilities ----------------------------------------------------------------------

    def conditional_writes(self) -> bool:
        """Return True when the server honours If-None-Match / If-Match on PUT (probed once)."""
        if self._conditional is None:
            self._conditional = self.req.run(self.req.probe_conditional, self.prefix)
        return self._conditional

    def control_objects(self) -> S3ControlObjects:
        return S3ControlObjects(self)

    def set_fence(self, fence: Callable[[str], None] | None) -> bool:
        self.req.fence = fence
        return True

    def request_stats(self) -> dict[str, int]:
        return dict(self.req.stats)

    # -- reading ---------------------------------------------------------------------------

    def _ls(self, path: str) -> list[str]:
        objects, folders = self.req.run(lambda: self.req.list(path))
        return [o["name"] for o in objects] + folders

    def queues(self) -> list[str]:
        from ckptd.core.states import STATES

        states = {s.value for s in STATES}

        async def find() -> list[str]:
            _, names = await self.req.list(self.prefix)
            names = [n for n in names if is_valid_name(n)]
            found = await asyncio.gather(*(self.req.list(f"{self.prefix}/{n}") for n in names))
            return sorted(n for n, (_, sub) in zip(names, found) if states & set(sub))
        return self.req.run(find)

    def ids_after(self, queue: str, state: State, start_after: str | None) -> list[str]:
        """The ids in ``state`` that sort after ``start_after`` (all when None), sorted."""
        check_queue(queue)
        from ckptd.store.base import split_job_name

        objects, _ = self.req.run(lambda: self.req.list(f"{self.prefix}/{queue}/{state.value}",
                                                  start_after=start_after))
        return sorted(i for i in (split_job_name(o["name"]) for o in objects) if i is not None)

    def _cat(self, key: str, missing: str) -> bytes:
        data = self.req.run(lambda: self.req.get(key, f"read {self.req.split(key)}"))
        if data is None:
            raise JobNotFound(missing)
        return bytes(data)

    def read(self, queue: str, state: State, job_id: str) -> bytes:
        check_job_ref(queue, job_id)
        if state is State.PENDING:
            cached = self._forget(queue, job_id)
            if cached is not None:
                return cached
        return self._cat(self._job_key(queue, state, job_id),
                         f"job {job_id!r} is not in {queue}/{state.value}/")

    def exists(self, queue: str, state: State, job_id: str) -> bool:
        check_job_ref(queue, job_id)
        key = self._job_key(queue, state, job_id)
        what = f"look for {self.req.split(key)}"
        return self.req.run(lambda: self.req.head(key, what)) is not None

    def find(self, queue: str, job_id: str) -> list[State]:
        check_job_ref(queue, job_id)
        from ckptd.core.states import STATES

        async def look() -> list[State]:
            found = await asyncio.gather(*(self.req.head(self._job_key(queue, s, job_id),
                                                      f"look for {job_id}") for s in STATES))
            return [s for s, info in zip(STATES, found) if info is not None]
        return self.req.run(look)

    def mtime(self, queue: str, state: State, job_id: str) -> float:
        check_job_ref(queue, job_id)
        key = self._job_key(queue, state, job_id)
        info = self.req.run(lambda: self.req.head(key, f"look for {self.req.split(key)}"))
        if info is None:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/")
        return _info_time(info)

    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        check_job_ref(queue, job_id)
        key = self._key(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        if end <= start:
            if not self.req.run(lambda: self.req.head(key, f"look for {self.req.split(key)}")):
                raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")
            return b""
        data = self.req.run(lambda: self.req.get(key, f"read {self.req.split(key)}",
                                           f"bytes={start}-{end - 1}"))
        if data is None:
            raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")
        return bytes(data)

    def probe_access(self) -> None:
        """List one key under the prefix; raise StoreError when the bucket cannot be read."""
        self.req.run(lambda: self.req.call("list_objects_v2", "list the bucket", MaxKeys=1,
                                     Prefix=f"{self.base}/" if self.base else ""))

    # -- writing ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        if not ops:
            return []
        return self.req.run(self._apply, list(ops))

    async def _apply(self, ops: list[Op]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(ops)
        chains: dict[tuple[str, str], list[int]] = {}
        for i, op in enumerate(ops):
            chains.setdefault((op.queue, op.job_id), []).append(i)

        async def chain(positions: list[int]) -> None:
            for i in positions:  # the ops of one job in their order
                outcomes[i] = await self._outcome(ops[i])

        await asyncio.gather(*(chain(p) for p in chains.values()))
        return outcomes

    async def _outcome(self, op: Op) -> Outcome:
        try:
            check_job_ref(op.queue, op.job_id)
            await self._commit_op(op)
            return None
        except CkptdError as exc:
            if isinstance(exc, Conflict):
                return StoreError(f"cannot update {self.url}/{op.queue}: {exc}")
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug costs the op, not the group
            log.exception("unexpected error applying %r", op)
            return StoreError(f"cannot update {self.url}/{op.queue}: {exc}")

    async def _commit_op(self, op: Op) -> None:
        if isinstance(op, Move):
            await self._move(op)
        elif isinstance(op, PutNew):
            await self._put_new(op)
        elif isinstance(op, Delete):
            key = self._job_key(op.queue, op.state, op.job_id)
            if op.state is State.PENDING:
                self._forget(op.queue, op.job_id)
            what = f"delete {op.queue}/{op.state.value}/{op.job_id}"
            await self.req.delete(key, what)
            if op.attachments:
                keys = [self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX)]
                keys += [self._key(op.queue, BLOB_DIR, f"{op.job_id}.{k}") for k in BLOB_KINDS]
                await asyncio.gather(*(self.req.delete(k, what) for k in keys))
        elif isinstance(op, PutCheckpoint):
            await self.req.put(self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX),
                            op.data, f"save the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, DeleteCheckpoint):
            await self.req.delete(self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX),
                               f"delete the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, PutBlob):
            kind = check_blob_kind(op.kind)
            await self.req.put(self._key(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"), op.data,
                            f"write blob {op.queue}/{op.job_id}.{kind}")
        elif isinstance(op, PutOutput):
            await self.req.put(self._key(op.queue, OUTPUT_DIR, op.name), op.data,
                            f"write output {op.queue}/{op.name}")
        elif isinstance(op, PutManifest):
            await self.req.put(self._key(op.queue, BATCH_DIR, op.batch + JOB_SUFFIX), op.data,
                            f"write manifest {op.queue}/{op.batch}")
        else:
            raise TypeError(f"unknown store operation {op!r}")

    async def _move(self, op: Move) -> None:
        src = self._job_key(op.queue, op.src, op.job_id)
        dst = self._job_key(op.queue, op.dst, op.job_id)
        what = f"move {op.queue}/{op.job_id} from {op.src.value} to {op.dst.value}"
        missing = f"job {op.job_id!r} is not in {op.queue}/{op.src.value}/"
        if op.src is State.PENDING:
            self._forget(op.queue, op.job_id)
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
            # Look first: a move of a job that is not there must change nothing.
            if await self.req.head(src, what) is None:
                raise JobNotFound(missing)
            await self.req.put(dst, op.data, what)
            if op.dst is State.PENDING:
                self._remember(op.queue, op.job_id, op.data)
            if src == dst:
                return
        crashpoints.reached("after_copy")
        # Until this delete the job is under both keys; recovery keeps the later copy.
        await self.req.delete(src, what)

    async def _put_new(self, op: PutNew) -> None:
        dst = self._job_key(op.queue, State.PENDING, op.job_id)
        what = f"create {op.queue}/pending/{op.job_id}"
        if self._conditional is None:
            if self._probe_lock is None:
                self._probe_lock = asyncio.Lock()
            async with self._probe_lock:  # one probe, however many creates wait for it
                if self._conditional is None:
                    self._conditional = await self.req.probe_conditional(self.prefix)
        if self._conditional:
            try:
                etag: str | None = await self.req.put(dst, op.data, what, create=True)
            except Conflict:
                # A retry of our own PUT whose answer was lost finds our own object there.
                info = await self.req.head(dst, what)
                if info is None or info.get("ETag") != _etag_of(op.data):
                    raise JobExists(op.queue, op.job_id, State.PENDING.value) from None
                etag = str(info.get("ETag"))
        else:
            # Best effort without server support: one writer per key in this process.
            lock = self._key_locks.setdefault(dst, asyncio.Lock())
            async with lock:
                if await self.req.head(dst, what) is not None:
                    raise JobExists(op.queue, op.job_id, State.PENDING.value)
                await self.req.put(dst, op.data, what)
                etag = None
            self._key_locks.pop(dst, None)
        if op.check_other_states:
            # Checked after creating, so a copy moving between folders meanwhile is seen.
            found = await asyncio.gather(*(self.req.head(self._job_key(op.queue, s, op.job_id),
                                                      what) for s in _OTHER_STATES))
            for state, info in zip(_OTHER_STATES, found):
                if info is not None:
                    await self.req.delete(dst, what, if_match=etag if self._conditional else None)
                    raise JobExists(op.queue, op.job_id, state.value)
        self._remember(op.queue, op.job_id, op.data)

    # -- maintenance -----------------------------------------------------------------------

    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        check_queue(queue)
        objects, _ = self.req.run(lambda: self.req.list(f"{self.prefix}/{queue}/{TMP_DIR}"))
        return sorted((Leftover(queue, o["name"], now - o["time"]) for o in objects),
                      key=lambda f: f.name)

    def remove_leftover(self, queue: str, name: str) -> None:
        check_queue(queue)
        _check_plain(name)
        key = self._key(queue, TMP_DIR, name)
        self.req.run(lambda: self.req.delete(key, f"delete {self.req.split(key)}"))

    def quarantine(self, queue: str, folder: str, name: str, reason: str) -> str:
        check_queue(queue)
        check_folder(folder)
        _check_plain(name)

        async def move() -> str:
            target = self._key(queue, QUARANTINE_DIR, name)
            what = f"quarantine {queue}/{folder}/{name}"
            if await self.req.head(target, what) is not None:
                target = f"{target}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:6]}"
            source = self._key(queue, folder, name)
            try:
                await self.req.copy(source, target, what)
            except JobNotFound:
                return target
            await self.req.put(target + REASON_SUFFIX, reason.encode() + b"\n", what)
            await self.req.delete(source, what)
            return target
        return self.req.run(move)


class S3ControlObjects:
    """The control area of an S3 store (``<prefix>/.ckptd/``), written conditionally.

    These requests skip the queue of the store's own: a big group of job writes must never
    delay a lease renewal.
    """

    def __init__(self, store: S3Store) -> None:
        self.req = store.req
        self.base = f"{store.prefix}/{CONTROL_DIR}"
        try:
            self.shared = store.conditional_writes()
        except StoreError as exc:  # not reachable now: the lease itself will say so
            log.warning("cannot check the bucket's conditional writes yet: %s", exc)
            self.shared = True

    def get(self, name: str) -> tuple[bytes, str] | None:
        path = f"{self.base}/{name}"

        async def get() -> tuple[bytes, str] | None:
            try:
                response = await self.req.call("get_object", f"read {path}", queued=False,
                                               Key=self.req.split(path))
            except JobNotFound:
                return None
            async with response["Body"] as stream:
                data = await stream.read()
            return bytes(data), str(response.get("ETag", ""))
        return self.req.run(get)

    def put(self, name: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        path = f"{self.base}/{name}"
        return self.req.run(lambda: self.req.put(path, data, f"write {path}", create=create,
                                                 if_match=if_match, fenced=False))

    def delete(self, name: str, if_match: str | None = None) -> None:
        path = f"{self.base}/{name}"
        self.req.run(lambda: self.req.delete(path, f"delete {path}", if_match=if_match,
                                             fenced=False))

    def names(self, prefix: str) -> list[str]:
        objects, _ = self.req.run(lambda: self.req.list(self.base, delimiter=False))
        return sorted(o["name"] for o in objects if o["name"].startswith(prefix))
