"""The requests of :class:`~ckptd.store.s3.backend.S3Store`: one place that talks to the server.

:class:`S3Requests` holds what every S3 client of ckptd does the same way, whatever library
sends the bytes:

- every request has its own deadline (``timeout``, retries included), so a server that
  stops answering costs a bounded wait and a :class:`~ckptd.core.errors.StoreUnavailable`,
  never a hung daemon;
- a request that failed for a reason that may pass (503 SlowDown, 5xx, a reset or refused
  connection, a stalled answer) is tried again with backoff within that deadline, and
  counted;
- at most ``concurrency`` requests are in flight (the leader lease's own skip that queue);
- a write to a queue first asks the fence, when one is set, whether this process still
  leads that queue (:meth:`ckptd.store.base.Store.set_fence`);
- errors become ckptd's own (:meth:`S3Requests.translate`): JobNotFound for a missing key,
  :class:`~ckptd.store.objects.Conflict` for a failed condition, StoreError with what to do
  for credentials, access and a missing bucket, StoreUnavailable for the rest.

Subclasses send the requests: :class:`~ckptd.store.s3.obstore_client.ObstoreRequests` (the
default, Rust's ``object_store`` through obstore) and
:class:`~ckptd.store.s3.botocore_client.BotocoreRequests` (s3fs's aiobotocore, the fallback). They
implement the primitives (``_get``, ``_put``, ...) and :meth:`S3Requests.classify`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from ckptd.core.errors import (
    CkptdError,
    JobNotFound,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from ckptd.store.objects import CONTROL_DIR, Conflict

log = logging.getLogger(__name__)

T = TypeVar("T")

MTIME = "ckptd-mtime"  # user metadata: the write time to the microsecond
PAGE_SIZE = 1000  # keys per listing page (S3's own maximum)
ATTEMPTS = 3  # tries of one request that fails for a passing reason (within its deadline)
BACKOFF_FIRST = 0.05  # seconds before the second try; doubles, with jitter
BULK_DELETE_MAX = 1000  # keys per DeleteObjects request (S3's own maximum)
UNREACHABLE_FIX = ("is the S3 server up there, and is the endpoint right? (set it with "
                   "s3_endpoint_url, AWS_ENDPOINT_URL or endpoint_url in ~/.aws/config)")


class Failure(enum.Enum):
    """What kind of failure a request met (see :meth:`S3Requests.classify`)."""

    MISSING = "missing"  # no such key (404 NoSuchKey)
    CONFLICT = "conflict"  # a condition failed (412, 409 ConditionalRequestConflict)
    NO_CREDENTIALS = "no-credentials"
    DENIED = "denied"  # 403, bad signature, unknown key
    NO_BUCKET = "no-bucket"
    UNSUPPORTED = "unsupported"  # 501 NotImplemented, a header the server refuses
    REFUSED = "refused"  # any other 4xx: trying again will not help
    UNAVAILABLE = "unavailable"  # 5xx, throttling, connection, timeout: may pass


@dataclass(frozen=True)
class Classified:
    """A failure's kind, the server's code (or HTTP status) and a short description in
    plain words; ``connect``: the request never reached a server (refused, no such host,
    a TLS handshake that failed, no answer at all)."""

    kind: Failure
    code: str
    detail: str
    connect: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD says of an object."""

    etag: str
    time: float  # when it was last written: the later of Last-Modified and ckptd's mark
    size: int


@dataclass(frozen=True)
class Entry:
    """An object in a listing: its name under the listed folder, write time, size and
    ETag (quotes stripped; "" when the server gave none)."""

    name: str
    time: float
    size: int
    etag: str = ""


class NotSupportedByServer(StoreError):
    """Raised when the server refuses a request it does not implement (501 NotImplemented,
    an argument or header it does not know)."""


class _Failed(Exception):
    """A request failed (classified), raised inside the deadline, translated outside it."""

    def __init__(self, failure: Classified, cause: BaseException) -> None:
        super().__init__(failure.detail)
        self.failure = failure
        self.cause = cause


class S3Requests(ABC):
    """Requests to one bucket: deadlines, retries, the fence, counts, ckptd's errors.

    Paths are ``bucket/key`` (as the store builds them); keys are what the server sees.
    """

    client = "?"  # the library, for messages and status
    retries_inside = False  # True when the library retries by itself (and counts it)

    def __init__(self, bucket: str, base: str, *, timeout: float, concurrency: int) -> None:
        self.bucket = bucket
        self.base = base
        self.timeout = timeout
        self.concurrency = concurrency
        self.fence: Callable[[str], None] | None = None
        self.stats: Counter[str] = Counter()
        self._semaphore: asyncio.Semaphore | None = None
        self.bulk_deletes = True  # until the server says it has no DeleteObjects

    # -- what a client library provides ----------------------------------------------------

    @abstractmethod
    def run(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run a coroutine on the client's event loop and wait for it (from any thread)."""

    @abstractmethod
    def start(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> Future[T]:
        """Start a coroutine on the client's event loop without waiting for it."""

    def run_control(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run a request of the leases and membership records and wait for it: on a loop of
        their own where the client has one (a renewal never waits behind a big group).
        Such requests must not be ``queued`` (the slots belong to the requests' loop)."""
        return self.run(coro_func, *args)

    @abstractmethod
    async def _get(self, key: str, byte_range: tuple[int, int] | None) -> bytes: ...

    @abstractmethod
    async def _get_tagged(self, key: str) -> tuple[bytes, str]: ...

    @abstractmethod
    async def _head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    async def _put(self, key: str, data: bytes, create: bool, if_match: str | None) -> str:
        """PUT, with ckptd's mark of the write time (to the microsecond: Last-Modified has
        whole seconds) as user metadata :data:`MTIME`; return the new ETag."""

    @abstractmethod
    async def _copy(self, src: str, dst: str) -> None: ...

    @abstractmethod
    async def _delete(self, key: str, if_match: str | None) -> None: ...

    @abstractmethod
    async def _delete_many(self, keys: Sequence[str]) -> None: ...

    @abstractmethod
    async def _list(self, prefix: str, delimiter: bool, start_after: str | None
                    ) -> tuple[list[Entry], list[str], int]:
        """Every object under ``prefix`` (a folder, with its ``/``) and, with ``delimiter``,
        the sub-folders; and how many pages that took."""

    @abstractmethod
    def classify(self, exc: BaseException) -> Classified:
        """What kind of failure ``exc`` is."""

    def close(self) -> None:
        """Release what the client holds. Idempotent."""

    def location(self) -> str:
        """The store in words, for messages: its URL and, where known, the server's
        endpoint and where that setting came from."""
        return f"s3://{self.bucket}/{self.base}".rstrip("/")

    def endpoint(self) -> str | None:
        """The custom endpoint the requests go to (None: AWS itself, or not known)."""
        return None

    def server(self) -> str:
        """The server in words: its endpoint and where that setting came from."""
        return self.endpoint() or "AWS"

    # -- the frame of every request --------------------------------------------------------

    def split(self, path: str) -> str:
        """The object key of a path built by ``_key``/``_job_key`` (``bucket/key``)."""
        return path[len(self.bucket) + 1:]

    def _check_fence(self, key: str) -> None:
        if self.fence is None:
            return
        rest = key[len(self.base) + 1:] if self.base else key
        queue = rest.split("/", 1)[0]
        try:
            self.fence(queue)
        except CkptdError:
            self.stats["fenced"] += 1
            raise

    async def call(self, what: str, send: Callable[[], Awaitable[T]], *,
                   fenced_keys: Sequence[str] = (), queued: bool = True, pages: bool = False
                   ) -> T:
        """One request with its deadline and retries; errors become ckptd's.

        ``fenced_keys``: the keys a write touches (the fence is asked for each, at the last
        moment before every try). ``queued`` requests wait for one of the ``concurrency``
        slots; the leader lease's own do not (a big group must never delay a renewal).
        """
        if not queued:
            return await self._deadline(what, send, fenced_keys, pages)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            return await self._deadline(what, send, fenced_keys, pages)

    async def _deadline(self, what: str, send: Callable[[], Awaitable[T]],
                        fenced_keys: Sequence[str], pages: bool) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._tries(send, fenced_keys, pages)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise StoreUnavailable(f"cannot {what}: the store {self.location()} did not "
                                   f"answer within {self.timeout:g}s (store_timeout); "
                                   f"{UNREACHABLE_FIX}") from None
        except _Failed as failed:
            raise self.translate(failed.failure, what) from failed.cause

    async def _tries(self, send: Callable[[], Awaitable[T]], fenced_keys: Sequence[str],
                     pages: bool) -> T:
        attempt = 1
        while True:
            for key in fenced_keys:
                self._check_fence(key)
            if not pages:  # a listing counts its pages itself
                self.stats["requests"] += 1
            try:
                return await send()
            except CkptdError:
                raise
            except Exception as exc:  # noqa: BLE001 - the client's, the HTTP layer's, the OS's
                failure = self.classify(exc)
                if (failure.kind is not Failure.UNAVAILABLE or self.retries_inside
                        or attempt >= ATTEMPTS):
                    raise _Failed(failure, exc) from exc
                log.debug("trying again after %s", failure.detail)
            self.stats["retries"] += 1
            await asyncio.sleep(BACKOFF_FIRST * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
            attempt += 1

    def translate(self, failure: Classified, what: str) -> CkptdError:
        """ckptd's error for a failed request: what failed, the store, the cause in plain
        words and what to do about it."""
        code, where = failure.code, self.location()
        if failure.kind is Failure.MISSING:
            return JobNotFound(f"cannot {what}: not found")
        if failure.kind is Failure.CONFLICT:
            return Conflict(f"cannot {what}: the object changed ({code})")
        self.stats["errors"] += 1
        if failure.kind is Failure.NO_CREDENTIALS:
            return StoreError(f"cannot {what}: no AWS credentials for the store {where} "
                              f"({failure.detail}); set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, AWS_PROFILE (a profile in "
                              "~/.aws/credentials or ~/.aws/config), or key and secret in "
                              "[storage_options]")
        if failure.kind is Failure.DENIED:
            return StoreError(f"cannot {what}: the store {where} refused the credentials "
                              f"({failure.detail}); check the access key (AWS_ACCESS_KEY_ID, "
                              "AWS_PROFILE or [storage_options]) and the bucket's policy")
        if failure.kind is Failure.NO_BUCKET:
            endpoint = self.endpoint()
            create = f"aws s3 mb s3://{self.bucket}" + (f" --endpoint-url {endpoint}"
                                                         if endpoint else "")
            return StoreNotFound(f"cannot {what}: bucket {self.bucket!r} does not exist on "
                                 f"{self.server()}; create it ({create}) or correct --root "
                                 "(ckptd never creates buckets)")
        if failure.kind is Failure.UNSUPPORTED:
            return NotSupportedByServer(f"cannot {what} in {where}: not supported by the "
                                        f"server ({code})")
        if failure.kind is Failure.REFUSED:
            return StoreError(f"cannot {what} in {where}: {failure.detail}")
        if failure.connect:
            return StoreUnavailable(f"cannot {what}: the store {where} cannot be reached "
                                    f"({failure.detail}); {UNREACHABLE_FIX}")
        return StoreUnavailable(f"cannot {what} in {where}: {failure.detail}")

    # -- requests --------------------------------------------------------------------------

    async def get(self, path: str, what: str, byte_range: tuple[int, int] | None = None
                  ) -> bytes | None:
        """The object's bytes (``byte_range``: [start, end) of them), or None when absent."""
        key = self.split(path)
        try:
            return await self.call(what, lambda: self._get(key, byte_range))
        except JobNotFound:
            return None

    async def get_tagged(self, path: str, what: str, *, queued: bool = True
                         ) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when absent."""
        key = self.split(path)
        try:
            return await self.call(what, lambda: self._get_tagged(key), queued=queued)
        except JobNotFound:
            return None

    async def head(self, path: str, what: str) -> ObjectInfo | None:
        """What the server says of the object, or None when absent."""
        key = self.split(path)
        try:
            return await self.call(what, lambda: self._head(key))
        except JobNotFound:
            return None

    async def put(self, path: str, data: bytes, what: str, *, create: bool = False,
                  if_match: str | None = None, fenced: bool = True) -> str:
        """PUT; ``create``: only if absent, ``if_match``: only if the object has that ETag
        (:class:`Conflict` otherwise). Returns the new ETag.

        A create-only PUT is not fenced: the server refuses it when the object exists, so no
        writer can overwrite anything with it, whichever daemon leads the queue (a pipeline
        hands jobs over into a queue another daemon leads this way).
        """
        key = self.split(path)
        return await self.call(what, lambda: self._put(key, data, create, if_match),
                               fenced_keys=(key,) if fenced and not create else (),
                               queued=fenced)

    async def copy(self, src: str, dst: str, what: str) -> None:
        """Server-side copy (never conditional: conditional CopyObject is not widely
        supported); JobNotFound when ``src`` is absent."""
        source, target = self.split(src), self.split(dst)
        await self.call(what, lambda: self._copy(source, target), fenced_keys=(target,))

    async def delete(self, path: str, what: str, *, if_match: str | None = None,
                     fenced: bool = True) -> None:
        """DELETE (only if the object has ETag ``if_match``, when given); absent is fine."""
        key = self.split(path)
        try:
            await self.call(what, lambda: self._delete(key, if_match),
                            fenced_keys=(key,) if fenced else (), queued=fenced)
        except JobNotFound:
            pass

    async def delete_many(self, paths: Sequence[str], what: str) -> None:
        """Delete every path, up to :data:`BULK_DELETE_MAX` per request; absent is fine.

        Raises the error of the first request that failed (the others may have gone
        through: deleting is idempotent, so the caller tries them all again).
        """
        keys = [self.split(p) for p in paths]
        size = BULK_DELETE_MAX if self.bulk_deletes else 1
        chunks = [keys[i:i + size] for i in range(0, len(keys), size)]

        async def one(chunk: list[str]) -> None:
            if len(chunk) == 1:
                try:
                    await self.call(what, lambda: self._delete(chunk[0], None),
                                    fenced_keys=chunk)
                except JobNotFound:
                    pass
                return
            try:
                await self.call(what, lambda: self._delete_many(chunk),
                                fenced_keys=_one_key_per_queue(chunk, self.base))
            except NotSupportedByServer as exc:
                if self.bulk_deletes:
                    log.warning("s3://%s has no bulk delete (%s): deleting one key per "
                                "request", self.bucket, exc)
                self.bulk_deletes = False
                await asyncio.gather(*(one([k]) for k in chunk))
        await asyncio.gather(*(one(c) for c in chunks))

    async def list_page(self, path: str, start_after: str | None) -> tuple[list[Entry], bool]:
        """One page of the objects below ``path/`` (recursively) that sort after
        ``start_after``; and whether more may follow (the page was full)."""
        prefix = f"{self.split(path).strip('/')}/"

        async def send() -> tuple[list[Entry], bool]:
            self.stats["requests"] += 1
            return await self._list_page(prefix, start_after)
        return await self.call(f"list {path}", send, pages=True)

    async def _list_page(self, prefix: str, start_after: str | None
                         ) -> tuple[list[Entry], bool]:
        """One page of :meth:`list_page`; subclasses ask for one page only."""
        entries, _, _ = await self._list(prefix, False, start_after)
        return entries[:PAGE_SIZE], len(entries) > PAGE_SIZE

    async def list(self, path: str, *, delimiter: bool = True, start_after: str | None = None,
                   queued: bool = True) -> tuple[list[Entry], list[str]]:
        """Every object directly under ``path/`` (everything below it without
        ``delimiter``) that sorts after ``start_after``, and its sub-folder names
        (``queued``: see :meth:`call`)."""
        prefix = self.split(path).strip("/")
        prefix = f"{prefix}/" if prefix else ""

        async def send() -> tuple[list[Entry], list[str]]:
            objects, folders, pages = await self._list(prefix, delimiter, start_after)
            self.stats["requests"] += pages
            return objects, folders
        return await self.call(f"list {path}", send, pages=True, queued=queued)

    async def probe_access(self) -> None:
        """One cheap listing of the prefix; raises StoreError when it cannot be read."""
        prefix = f"{self.base}/" if self.base else ""

        async def send() -> None:
            self.stats["requests"] += 1
            await self._list_one(prefix)
        await self.call("list the bucket", send, pages=True)

    async def _list_one(self, prefix: str) -> None:
        """List one page (or less) under ``prefix``; subclasses make it cheaper."""
        await self._list(prefix, True, None)

    async def probe_conditional(self, prefix: str) -> bool:
        """Whether the server honours If-None-Match / If-Match on PUT (on a probe key)."""
        key = f"{prefix}/{CONTROL_DIR}/probe-{uuid.uuid4().hex}"
        what = "probe conditional writes"
        supported = True
        try:
            etag = await self.put(key, b"1", what, create=True, fenced=False)
            try:
                await self.put(key, b"2", what, create=True, fenced=False)
                supported = False  # a second create-only PUT went through
            except Conflict:
                pass
            if supported:
                try:
                    await self.put(key, b"3", what, if_match='"0"', fenced=False)
                    supported = False
                except Conflict:
                    pass
                if supported:
                    await self.put(key, b"4", what, if_match=etag, fenced=False)
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            log.debug("conditional write probe failed: %s", exc)
            supported = False
        finally:
            try:
                await self.delete(key, what, fenced=False)
            except StoreError:
                pass
        if not supported:
            log.warning("s3://%s does not honour conditional writes (If-None-Match, If-Match): "
                        "creating a job falls back to look-then-write, which two producers "
                        "racing on the same id can both pass; a standby daemon is unsafe",
                        self.bucket)
        return supported


def _one_key_per_queue(keys: Sequence[str], base: str) -> list[str]:
    """One key of each queue among ``keys`` (the fence is per queue)."""
    seen: dict[str, str] = {}
    for key in keys:
        rest = key[len(base) + 1:] if base else key
        seen.setdefault(rest.split("/", 1)[0], key)
    return list(seen.values())


def etag_of(data: bytes) -> str:
    """The ETag S3 gives a single-part upload of ``data``: its MD5, quoted."""
    import hashlib

    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def later_time(last_modified: float | None, mark: str | None) -> float:
    """When an object was last written: the later of Last-Modified and ckptd's own mark."""
    import time

    found: list[float] = [] if last_modified is None else [last_modified]
    if mark:
        try:
            found.append(float(mark))
        except ValueError:
            pass
    return max(found) if found else time.time()
