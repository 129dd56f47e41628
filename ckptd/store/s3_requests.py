"""The S3 requests of :class:`~ckptd.store.s3.S3Store`: one place that talks to the server.

Every request has its own deadline (``timeout``, retries included) on top of botocore's
connect and read timeouts, so a server that stops answering costs a bounded wait and a
:class:`~ckptd.core.errors.StoreUnavailable`, never a hung daemon. botocore's standard retry
mode retries throttling (503 SlowDown), 5xx and reset connections; retries are counted.
At most ``concurrency`` requests are in flight. Errors become ckptd's own
(:meth:`S3Requests.translate`). A write to a queue first asks the fence, when one is set,
whether this process still leads that queue (:meth:`ckptd.store.base.Store.set_fence`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ckptd.core.errors import CkptdError, JobNotFound, StoreError, StoreUnavailable
from ckptd.store.objects import CONTROL_DIR, Conflict

log = logging.getLogger(__name__)

T = TypeVar("T")

MTIME = "ckptd-mtime"  # user metadata: the write time to the microsecond
PAGE_SIZE = 1000
_MISSING = ("NoSuchKey", "404", "NotFound")
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_UNSUPPORTED = ("NotImplemented", "501", "InvalidArgument", "InvalidRequest")


class S3Requests:
    """Requests to one bucket through s3fs's aiobotocore client, on s3fs's event loop."""

    def __init__(self, fs: Any, bucket: str, base: str, *, timeout: float, concurrency: int
                 ) -> None:
        self.fs = fs
        self.bucket = bucket
        self.base = base
        self.timeout = timeout
        self.concurrency = concurrency
        self.fence: Callable[[str], None] | None = None
        self.stats: Counter[str] = Counter()
        self._semaphore: asyncio.Semaphore | None = None

    def run(self, coro_func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine on s3fs's loop and wait for it (from any thread)."""
        import fsspec.asyn

        result: T = fsspec.asyn.sync(self.fs.loop, coro_func, *args)
        return result

    def split(self, path: str) -> str:
        """The object key of a path built by ``_key``/``_job_key`` (``bucket/key``)."""
        return path[len(self.bucket) + 1:]

    async def client(self) -> Any:
        return await self.fs.set_session()

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

    async def call(self, method: str, what: str, *, write: bool = False,
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
            self._check_fence(kwargs["Key"])  # at the last moment before the request leaves
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
            raise self.translate(exc, what) from exc

    async def _send(self, method: str, read_body: bool, kwargs: dict[str, Any]) -> Any:
        s3 = await self.client()
        response = await getattr(s3, method)(Bucket=self.bucket, **kwargs)
        self.stats["retries"] += int(response.get("ResponseMetadata", {})
                                     .get("RetryAttempts", 0) or 0)
        if read_body:
            async with response["Body"] as stream:
                return await stream.read()
        return response

    def translate(self, exc: Exception, what: str) -> CkptdError:
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

    async def get(self, path: str, what: str, byte_range: str | None = None) -> bytes | None:
        """The object's bytes, or None when there is none."""
        extra: dict[str, Any] = {"Range": byte_range} if byte_range else {}
        try:
            data: bytes = await self.call("get_object", what, read_body=True,
                                           Key=self.split(path), **extra)
            return data
        except JobNotFound:
            return None

    async def head(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.call("head_object", what, Key=self.split(path))
            return info
        except JobNotFound:
            return None

    async def put(self, path: str, data: bytes, what: str, *, create: bool = False,
                   if_match: str | None = None, fenced: bool = True) -> str:
        """PUT; ``create``: only if absent (Conflict otherwise); ``if_match``: only if the
        object has that ETag. Returns the new ETag."""
        extra: dict[str, Any] = {}
        if create:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        # The write time to the microsecond: Last-Modified has whole seconds only.
        response = await self.call("put_object", what, write=fenced, queued=fenced,
                                    Key=self.split(path), Body=data,
                                    Metadata={MTIME: f"{time.time():.6f}"}, **extra)
        return str(response.get("ETag", ""))

    async def copy(self, src: str, dst: str, what: str) -> None:
        # Never conditional: conditional CopyObject is not widely supported.
        await self.call("copy_object", what, write=True, Key=self.split(dst),
                         CopySource={"Bucket": self.bucket, "Key": self.split(src)})

    async def delete(self, path: str, what: str, *, if_match: str | None = None,
                      fenced: bool = True) -> None:
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            await self.call("delete_object", what, write=fenced, queued=fenced,
                             Key=self.split(path), **extra)
        except JobNotFound:
            pass

    async def list(self, path: str, *, delimiter: bool = True, start_after: str | None = None
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Every object directly under ``path/`` and its sub-folder names, page by page."""
        prefix = self.split(path).strip("/")
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
            page = await self.call("list_objects_v2", f"list {path}", **kwargs)
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
