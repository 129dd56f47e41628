"""S3 and S3-compatible servers: the bucket store with overlapping requests and deadlines.

:class:`S3Store` keeps the layout and the rules of :class:`~ckptd.store.bucket.BucketStore`
(a move is a copy, then a delete; recovery keeps the later copy) and adds what a real
object store needs:

- Requests overlap. :meth:`S3Store.apply` runs the operations of one group concurrently on
  s3fs's event loop, at most ``concurrency`` requests in flight, and keeps the operations of
  one job in their order (they form a chain; chains run side by side).
- Every request has its own deadline (``timeout``, retries included) on top of botocore's
  connect and read timeouts, so a server that stops answering costs a bounded wait and a
  :class:`~ckptd.errors.StoreUnavailable`, never a hung daemon. botocore's standard retry mode
  retries throttling (503 SlowDown), 5xx and reset connections; retries are counted.
- Creating a job is create-only on the server (``PutObject`` with ``If-None-Match: *``) when
  it supports conditional writes, so two producers can never both create the same job.
  Support is probed once (a conditional PUT on a probe key); without it the store falls
  back to look-then-write and logs a warning. Conditional CopyObject is never used.
- A fence: when ``fence`` is set (the daemon's leader lease), every write request first
  checks that the lease still holds and raises :class:`NotLeader` otherwise.
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
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ckptd.core import crashpoints
from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, StoreError, StoreUnavailable
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

log = logging.getLogger(__name__)

T = TypeVar("T")

MTIME = "ckptd-mtime"  # user metadata: the write time to the microsecond
CONTROL_DIR = ".ckptd"  # not a valid queue name (leading dot): never listed as a queue
PAGE_SIZE = 1000
CACHE_ENTRIES = 50_000
CACHE_BYTES = 64 * 1024 * 1024
_OTHER_STATES = (State.CLAIMED, State.DONE, State.FAILED)
_MISSING = ("NoSuchKey", "404", "NotFound")
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_UNSUPPORTED = ("NotImplemented", "501", "InvalidArgument", "InvalidRequest")


class NotLeader(StoreError):
    """Raised when a write is refused because this daemon's leader lease has run out."""


class Conflict(StoreError):
    """Raised when a conditional write finds the object not as it expected (HTTP 412)."""


def is_s3(root: str) -> bool:
    """Return True when ``root`` is an ``s3://`` (or ``s3a://``) URL."""
    return root.startswith(("s3://", "s3a://"))


def bucket_options(settings: Any) -> dict[str, Any]:
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
        self.timeout = timeout
        self.concurrency = concurrency
        self.fence: Callable[[], float] | None = None
        self.stats: Counter[str] = Counter()
        self._semaphore: asyncio.Semaphore | None = None
        self._conditional: bool | None = None
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._probe_lock: asyncio.Lock | None = None

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, coro_func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine on s3fs's loop and wait for it (from any thread)."""
        import fsspec.asyn

        result: T = fsspec.asyn.sync(self.fs.loop, coro_func, *args)
        return result

    def _split(self, path: str) -> str:
        """The object key of a path built by ``_key``/``_job_key`` (``bucket/key``)."""
        return path[len(self.bucket) + 1:]

    def control_key(self, name: str) -> str:
        """The path of an object of ckptd's own under ``<prefix>/.ckptd/``."""
        return f"{self.prefix}/{CONTROL_DIR}/{name}"

    async def _client(self) -> Any:
        return await self.fs.set_session()

    def _check_fence(self) -> None:
        if self.fence is not None and time.monotonic() >= self.fence():
            self.stats["fenced"] += 1
            raise NotLeader("this daemon no longer holds the leader lease; it writes nothing "
                            "more (a standby has taken over, or is about to)")

    async def _call(self, method: str, what: str, *, write: bool = False,
                    read_body: bool = False, queued: bool = True, **kwargs: Any) -> Any:
        """One S3 request with its deadline; errors become ckptd's (see :func:`_translate`).

        ``queued`` requests wait for one of the ``concurrency`` slots; the leader lease's
        own do not (a big group must never delay a renewal).
        """
        if not queued:
            return await self._call_now(method, what, write, read_body, kwargs)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            return await self._call_now(method, what, write, read_body, kwargs)

    async def _call_now(self, method: str, what: str, write: bool, read_body: bool,
                        kwargs: dict[str, Any]) -> Any:
        if write:
            self._check_fence()  # at the last moment before the request leaves
        self.stats["requests"] += 1
        try:
            return await asyncio.wait_for(self._send(method, read_body, kwargs), self.timeout)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise StoreUnavailable(f"cannot {what} in s3://{self.bucket}: no answer "
                                   f"within {self.timeout:g}s") from None
        except CkptdError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore, aiohttp, OS errors
            raise self._translate(exc, what) from exc

    async def _send(self, method: str, read_body: bool, kwargs: dict[str, Any]) -> Any:
        s3 = await self._client()
        response = await getattr(s3, method)(Bucket=self.bucket, **kwargs)
        self.stats["retries"] += int(response.get("ResponseMetadata", {})
                                     .get("RetryAttempts", 0) or 0)
        if read_body:
            async with response["Body"] as stream:
                return await stream.read()
        return response

    def _translate(self, exc: Exception, what: str) -> CkptdError:
        code, status = _error_code(exc)
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            self.stats["retries"] += int(response.get("ResponseMetadata", {})
                                         .get("RetryAttempts", 0) or 0)
        where = f"s3://{self.bucket}"
        if code in _MISSING:
            return JobNotFound(f"cannot {what}: not found")
        if code in _CONFLICT:
            return Conflict(f"cannot {what}: the object changed ({code})")
        self.stats["errors"] += 1
        name = type(exc).__name__
        if name == "NoCredentialsError":
            return StoreError(f"cannot {what} in {where}: no AWS credentials; set "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or "
                              "[storage_options] in the config file")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return StoreError(f"cannot {what} in {where}: access denied ({code}); check the "
                              "credentials and the bucket's policy")
        if code == "NoSuchBucket":
            return StoreError(f"cannot {what}: bucket {self.bucket!r} does not exist")
        if code in _UNSUPPORTED:
            return StoreError(f"cannot {what} in {where}: not supported by the server "
                              f"({code})")
        if status is not None and status < 500 and code not in ("SlowDown", "Throttling",
                                                                 "RequestTimeout"):
            return StoreError(f"cannot {what} in {where}: {code}: {exc}")
        return StoreUnavailable(f"cannot {what} in {where}: {name}: {exc}")

    # -- requests --------------------------------------------------------------------------

    async def _get(self, path: str, what: str, byte_range: str | None = None) -> bytes | None:
        """The object's bytes, or None when there is none."""
        extra: dict[str, Any] = {"Range": byte_range} if byte_range else {}
        try:
            data: bytes = await self._call("get_object", what, read_body=True,
                                           Key=self._split(path), **extra)
            return data
        except JobNotFound:
            return None

    async def _head(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self._call("head_object", what, Key=self._split(path))
            return info
        except JobNotFound:
            return None

    async def _put(self, path: str, data: bytes, what: str, *, create: bool = False,
                   if_match: str | None = None, fenced: bool = True) -> str:
        """PUT; ``create``: only if absent (Conflict otherwise); ``if_match``: only if the
        object has that ETag. Returns the new ETag."""
        extra: dict[str, Any] = {}
        if create:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        # The write time to the microsecond: Last-Modified has whole seconds only.
        response = await self._call("put_object", what, write=fenced, queued=fenced,
                                    Key=self._split(path), Body=data,
                                    Metadata={MTIME: f"{time.time():.6f}"}, **extra)
        return str(response.get("ETag", ""))

    async def _copy(self, src: str, dst: str, what: str) -> None:
        # Never conditional: conditional CopyObject is not widely supported.
        await self._call("copy_object", what, write=True, Key=self._split(dst),
                         CopySource={"Bucket": self.bucket, "Key": self._split(src)})

    async def _delete(self, path: str, what: str, *, if_match: str | None = None,
                      fenced: bool = True) -> None:
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            await self._call("delete_object", what, write=fenced, queued=fenced,
                             Key=self._split(path), **extra)
        except JobNotFound:
            pass

    async def _list(self, path: str, *, delimiter: bool = True, start_after: str | None = None
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Every object directly under ``path/`` and its sub-folder names, page by page."""
        prefix = self._split(path).strip("/")
        prefix = f"{prefix}/" if prefix else ""
        objects: list[dict[str, Any]] = []
        folders: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": PAGE_SIZE}
            if delimiter:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = prefix + start_after
            page = await self._call("list_objects_v2", f"list {path}", **kwargs)
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]
                if name:
                    objects.append({"name": name, "time": _info_time(item),
                                    "size": item.get("Size", 0)})
            for item in page.get("CommonPrefixes", []):
                folders.append(item["Prefix"][len(prefix):].rstrip("/"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return objects, folders

    # -- conditional writes ----------------------------------------------------------------

    def conditional_writes(self) -> bool:
        """Return True when the server honours If-None-Match / If-Match on PUT (probed once)."""
        if self._conditional is None:
            self._conditional = self._run(self._probe_conditional)
        return self._conditional

    async def _probe_conditional(self) -> bool:
        key = self.control_key(f"probe-{uuid.uuid4().hex}")
        what = "probe conditional writes"
        supported = True
        try:
            etag = await self._put(key, b"1", what, create=True, fenced=False)
            try:
                await self._put(key, b"2", what, create=True, fenced=False)
                supported = False  # a second create-only PUT went through
            except Conflict:
                pass
            if supported:
                try:
                    await self._put(key, b"3", what, if_match='"0"', fenced=False)
                    supported = False
                except Conflict:
                    pass
                if supported:
                    await self._put(key, b"4", what, if_match=etag, fenced=False)
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            log.debug("conditional write probe failed: %s", exc)
            supported = False
        finally:
            try:
                await self._delete(key, what, fenced=False)
            except StoreError:
                pass
        if not supported:
            log.warning("s3://%s does not honour conditional writes (If-None-Match, If-Match): "
                        "creating a job falls back to look-then-write, which two producers "
                        "racing on the same id can both pass; a standby daemon is unsafe",
                        self.bucket)
        return supported

    def get_object(self, path: str) -> tuple[bytes, str] | None:
        """Return (bytes, ETag) of an object, None when absent (for the leader lease)."""
        async def get() -> tuple[bytes, str] | None:
            try:
                response = await self._call("get_object", f"read {path}", queued=False,
                                            Key=self._split(path))
            except JobNotFound:
                return None
            async with response["Body"] as stream:
                data = await stream.read()
            return bytes(data), str(response.get("ETag", ""))
        return self._run(get)

    def put_object(self, path: str, data: bytes, *, create: bool = False,
                   if_match: str | None = None) -> str:
        """PUT an object of ckptd's own, conditionally; return its ETag (raises Conflict)."""
        return self._run(lambda: self._put(path, data, f"write {path}", create=create,
                                           if_match=if_match, fenced=False))

    def delete_object(self, path: str, if_match: str | None = None) -> None:
        """Delete an object of ckptd's own (only if it has ETag ``if_match``, when given)."""
        self._run(lambda: self._delete(path, f"delete {path}", if_match=if_match,
                                       fenced=False))

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

    def clear_cache(self) -> None:
        """Forget every remembered pending file (the daemon calls it when it stands by)."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0

    def prefetch(self, queue: str, ids: Iterable[str]) -> int:
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
                    data = await self._get(self._job_key(queue, State.PENDING, job_id),
                                           f"read {queue}/pending/{job_id}")
                except StoreError:
                    return 0
                if data is None:
                    return 0
                self._remember(queue, job_id, bytes(data))
                return 1
            return sum(await asyncio.gather(*(one(i) for i in wanted)))
        return self._run(fetch_all)

    # -- reading ---------------------------------------------------------------------------

    def _ls(self, path: str) -> list[str]:
        objects, folders = self._run(lambda: self._list(path))
        return [o["name"] for o in objects] + folders

    def queues(self) -> list[str]:
        from ckptd.core.states import STATES

        states = {s.value for s in STATES}

        async def find() -> list[str]:
            _, names = await self._list(self.prefix)
            names = [n for n in names if is_valid_name(n)]
            found = await asyncio.gather(*(self._list(f"{self.prefix}/{n}") for n in names))
            return sorted(n for n, (_, sub) in zip(names, found) if states & set(sub))
        return self._run(find)

    def ids_after(self, queue: str, state: State, start_after: str | None) -> list[str]:
        """The ids in ``state`` that sort after ``start_after`` (all when None), sorted."""
        check_queue(queue)
        from ckptd.store.base import split_job_name

        objects, _ = self._run(lambda: self._list(f"{self.prefix}/{queue}/{state.value}",
                                                  start_after=start_after))
        return sorted(i for i in (split_job_name(o["name"]) for o in objects) if i is not None)

    def _cat(self, key: str, missing: str) -> bytes:
        data = self._run(lambda: self._get(key, f"read {self._split(key)}"))
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
        return self._run(lambda: self._head(key, f"look for {self._split(key)}")) is not None

    def find(self, queue: str, job_id: str) -> list[State]:
        check_job_ref(queue, job_id)
        from ckptd.core.states import STATES

        async def look() -> list[State]:
            found = await asyncio.gather(*(self._head(self._job_key(queue, s, job_id),
                                                      f"look for {job_id}") for s in STATES))
            return [s for s, info in zip(STATES, found) if info is not None]
        return self._run(look)

    def mtime(self, queue: str, state: State, job_id: str) -> float:
        check_job_ref(queue, job_id)
        key = self._job_key(queue, state, job_id)
        info = self._run(lambda: self._head(key, f"look for {self._split(key)}"))
        if info is None:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/")
        return _info_time(info)

    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        check_job_ref(queue, job_id)
        key = self._key(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        if end <= start:
            if not self._run(lambda: self._head(key, f"look for {self._split(key)}")):
                raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")
            return b""
        data = self._run(lambda: self._get(key, f"read {self._split(key)}",
                                           f"bytes={start}-{end - 1}"))
        if data is None:
            raise JobNotFound(f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/")
        return bytes(data)

    def probe_access(self) -> None:
        """List one key under the prefix; raise StoreError when the bucket cannot be read."""
        self._run(lambda: self._call("list_objects_v2", "list the bucket", MaxKeys=1,
                                     Prefix=f"{self.base}/" if self.base else ""))

    # -- writing ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        if not ops:
            return []
        return self._run(self._apply, list(ops))

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
            await self._delete(key, what)
            if op.attachments:
                keys = [self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX)]
                keys += [self._key(op.queue, BLOB_DIR, f"{op.job_id}.{k}") for k in BLOB_KINDS]
                await asyncio.gather(*(self._delete(k, what) for k in keys))
        elif isinstance(op, PutCheckpoint):
            await self._put(self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX),
                            op.data, f"save the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, DeleteCheckpoint):
            await self._delete(self._key(op.queue, CHECKPOINT_DIR, op.job_id + JOB_SUFFIX),
                               f"delete the checkpoint of {op.queue}/{op.job_id}")
        elif isinstance(op, PutBlob):
            kind = check_blob_kind(op.kind)
            await self._put(self._key(op.queue, BLOB_DIR, f"{op.job_id}.{kind}"), op.data,
                            f"write blob {op.queue}/{op.job_id}.{kind}")
        elif isinstance(op, PutOutput):
            await self._put(self._key(op.queue, OUTPUT_DIR, op.name), op.data,
                            f"write output {op.queue}/{op.name}")
        elif isinstance(op, PutManifest):
            await self._put(self._key(op.queue, BATCH_DIR, op.batch + JOB_SUFFIX), op.data,
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
                if await self._head(src, what) is None:
                    raise JobNotFound(missing)
                return
            try:
                await self._copy(src, dst, what)  # fails with NoSuchKey if src is absent
            except JobNotFound:
                raise JobNotFound(missing) from None
        else:
            # Look first: a move of a job that is not there must change nothing.
            if await self._head(src, what) is None:
                raise JobNotFound(missing)
            await self._put(dst, op.data, what)
            if op.dst is State.PENDING:
                self._remember(op.queue, op.job_id, op.data)
            if src == dst:
                return
        crashpoints.reached("after_copy")
        # Until this delete the job is under both keys; recovery keeps the later copy.
        await self._delete(src, what)

    async def _put_new(self, op: PutNew) -> None:
        dst = self._job_key(op.queue, State.PENDING, op.job_id)
        what = f"create {op.queue}/pending/{op.job_id}"
        if self._conditional is None:
            if self._probe_lock is None:
                self._probe_lock = asyncio.Lock()
            async with self._probe_lock:  # one probe, however many creates wait for it
                if self._conditional is None:
                    self._conditional = await self._probe_conditional()
        if self._conditional:
            try:
                etag: str | None = await self._put(dst, op.data, what, create=True)
            except Conflict:
                # A retry of our own PUT whose answer was lost finds our own object there.
                info = await self._head(dst, what)
                if info is None or info.get("ETag") != _etag_of(op.data):
                    raise JobExists(op.queue, op.job_id, State.PENDING.value) from None
                etag = str(info.get("ETag"))
        else:
            # Best effort without server support: one writer per key in this process.
            lock = self._key_locks.setdefault(dst, asyncio.Lock())
            async with lock:
                if await self._head(dst, what) is not None:
                    raise JobExists(op.queue, op.job_id, State.PENDING.value)
                await self._put(dst, op.data, what)
                etag = None
            self._key_locks.pop(dst, None)
        if op.check_other_states:
            # Checked after creating, so a copy moving between folders meanwhile is seen.
            found = await asyncio.gather(*(self._head(self._job_key(op.queue, s, op.job_id),
                                                      what) for s in _OTHER_STATES))
            for state, info in zip(_OTHER_STATES, found):
                if info is not None:
                    await self._delete(dst, what, if_match=etag if self._conditional else None)
                    raise JobExists(op.queue, op.job_id, state.value)
        self._remember(op.queue, op.job_id, op.data)

    # -- maintenance -----------------------------------------------------------------------

    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        check_queue(queue)
        objects, _ = self._run(lambda: self._list(f"{self.prefix}/{queue}/{TMP_DIR}"))
        return sorted((Leftover(queue, o["name"], now - o["time"]) for o in objects),
                      key=lambda f: f.name)

    def remove_leftover(self, queue: str, name: str) -> None:
        check_queue(queue)
        _check_plain(name)
        key = self._key(queue, TMP_DIR, name)
        self._run(lambda: self._delete(key, f"delete {self._split(key)}"))

    def quarantine(self, queue: str, folder: str, name: str, reason: str) -> str:
        check_queue(queue)
        check_folder(folder)
        _check_plain(name)

        async def move() -> str:
            target = self._key(queue, QUARANTINE_DIR, name)
            what = f"quarantine {queue}/{folder}/{name}"
            if await self._head(target, what) is not None:
                target = f"{target}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:6]}"
            source = self._key(queue, folder, name)
            try:
                await self._copy(source, target, what)
            except JobNotFound:
                return target
            await self._put(target + REASON_SUFFIX, reason.encode() + b"\n", what)
            await self._delete(source, what)
            return target
        return self._run(move)


def _error_code(exc: Exception) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore error ("" and None otherwise)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code = str(error.get("Code") or (status or ""))
    return code, int(status) if status else None


def _info_time(info: dict[str, Any]) -> float:
    """When an object was last written: the later of Last-Modified and ckptd's own mark."""
    found: list[float] = []
    value = info.get("LastModified")
    if value is not None and hasattr(value, "timestamp"):
        found.append(float(value.timestamp()))
    mark = (info.get("Metadata") or {}).get(MTIME)
    if mark:
        try:
            found.append(float(mark))
        except ValueError:
            pass
    return max(found) if found else time.time()


def _etag_of(data: bytes) -> str:
    """The ETag S3 gives a single-part upload of ``data``: its MD5, quoted."""
    import hashlib

    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
