"""S3 requests through s3fs's aiobotocore client: the fallback of the S3 store.

Used when ``[storage_options]`` asks for it (``s3_client = "s3fs"``) or holds options that
obstore cannot honour (see :mod:`ckptd.store.s3.options`): it takes anything
``s3fs.S3FileSystem`` takes. botocore retries by itself (its standard mode: throttling,
5xx, reset connections), and reports how often; the deadline of each request
(:class:`~ckptd.store.s3.requests.S3Requests`) bounds the retries on top.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Protocol, TypedDict, TypeVar

from ckptd.store.s3.requests import (
    MTIME,
    PAGE_SIZE,
    Classified,
    Entry,
    Failure,
    ObjectInfo,
    S3Requests,
    later_time,
)

T = TypeVar("T")

_MISSING = ("NoSuchKey", "404", "NotFound")
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_UNSUPPORTED = ("NotImplemented", "501", "InvalidArgument", "InvalidRequest")
_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")
_THROTTLED = ("SlowDown", "Throttling", "RequestTimeout")


class _Body(Protocol):
    """The streamed body of a GetObject answer (aiobotocore's StreamingBody)."""

    async def __aenter__(self) -> _Body: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def read(self) -> bytes: ...


class _Metadata(TypedDict, total=False):
    RetryAttempts: int
    HTTPStatusCode: int


class _Listed(TypedDict, total=False):
    Key: str
    LastModified: datetime
    Size: int
    ETag: str


class _Folder(TypedDict):
    Prefix: str


class _NotDeleted(TypedDict, total=False):
    Key: str
    Code: str
    Message: str


class _Answer(TypedDict, total=False):
    """What botocore answers, the fields read here (one type for the answers of every
    operation used: each has some of them)."""

    ResponseMetadata: _Metadata
    Body: _Body
    ETag: str
    LastModified: datetime
    Metadata: dict[str, str]
    ContentLength: int
    Errors: list[_NotDeleted]
    Contents: list[_Listed]
    CommonPrefixes: list[_Folder]
    NextContinuationToken: str
    IsTruncated: bool


def s3fs_options(options: Mapping[str, object], *, timeout: float, concurrency: int
                 ) -> dict[str, object]:
    """s3fs options with ckptd's defaults for timeouts, retries, connections, checksums."""
    result = {k: v for k, v in options.items() if k != "s3_client"}
    given = result.pop("config_kwargs", None) or {}
    if not isinstance(given, Mapping):
        raise ValueError(f"[storage_options] config_kwargs {given!r}: expected a table")
    config = dict(given)
    # botocore's own timeouts end a stuck connection or read (a PUT waiting forever on
    # "Expect: 100-continue", a server that accepted the connection and went quiet).
    config.setdefault("connect_timeout", max(0.5, min(5.0, timeout / 4)))
    config.setdefault("read_timeout", max(1.0, timeout / 2))
    config.setdefault("retries", {"max_attempts": 3, "mode": "standard"})
    # A few connections beyond the requests of a group, for the leader lease's own.
    config.setdefault("max_pool_connections", concurrency + 8)
    # CRC checksums of every small body cost CPU and are not understood by every
    # S3-compatible server; the HTTP layer and the server's MD5 ETag suffice here.
    config.setdefault("request_checksum_calculation", "when_required")
    config.setdefault("response_checksum_validation", "when_required")
    result["config_kwargs"] = config
    result.setdefault("use_listings_cache", False)  # other writers change the bucket
    result.setdefault("skip_instance_cache", True)
    return result


class BotocoreRequests(S3Requests):
    """Requests to one bucket through s3fs's aiobotocore client, on s3fs's event loop."""

    client = "s3fs"
    retries_inside = True

    def __init__(self, bucket: str, base: str, options: Mapping[str, object], *, timeout: float,
                 concurrency: int) -> None:
        super().__init__(bucket, base, timeout=timeout, concurrency=concurrency)
        import s3fs

        try:
            self.fs = s3fs.S3FileSystem(**s3fs_options(options, timeout=timeout,
                                                       concurrency=concurrency))
        except TypeError as exc:  # an option s3fs does not know
            raise ValueError(str(exc)) from exc

    def run(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> T:
        import fsspec.asyn

        result: T = fsspec.asyn.sync(self.fs.loop, coro_func, *args)
        return result

    def start(self, coro_func: Callable[..., Awaitable[T]], *args: object) -> Future[T]:
        import asyncio

        async def run() -> T:
            return await coro_func(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.fs.loop)

    async def _send(self, method: str, **kwargs: object) -> _Answer:
        s3 = await self.fs.set_session()
        response: _Answer = await getattr(s3, method)(Bucket=self.bucket, **kwargs)
        self._count_retries(response)
        return response

    async def _read(self, **kwargs: object) -> tuple[_Answer, bytes]:
        response = await self._send("get_object", **kwargs)
        async with response["Body"] as stream:
            return response, await stream.read()

    def _count_retries(self, response: object) -> None:
        if isinstance(response, dict):
            self.stats["retries"] += int(response.get("ResponseMetadata", {})
                                         .get("RetryAttempts", 0) or 0)

    # -- the primitives --------------------------------------------------------------------

    async def _get(self, key: str, byte_range: tuple[int, int] | None) -> bytes:
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1] - 1}"} if byte_range else {}
        _, data = await self._read(Key=key, **extra)
        return bytes(data)

    async def _get_tagged(self, key: str) -> tuple[bytes, str]:
        response, data = await self._read(Key=key)
        return bytes(data), str(response.get("ETag", ""))

    async def _head(self, key: str) -> ObjectInfo:
        info = await self._send("head_object", Key=key)
        modified = info.get("LastModified")
        return ObjectInfo(str(info.get("ETag", "")),
                          later_time(modified.timestamp() if modified is not None else None,
                                     (info.get("Metadata") or {}).get(MTIME)),
                          int(info.get("ContentLength", 0) or 0))

    async def _put(self, key: str, data: bytes, create: bool, if_match: str | None) -> str:
        import time

        extra: dict[str, str] = {}
        if create:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        response = await self._send("put_object", Key=key, Body=data,
                                    Metadata={MTIME: f"{time.time():.6f}"}, **extra)
        return str(response.get("ETag", ""))

    async def _copy(self, src: str, dst: str) -> None:
        await self._send("copy_object", Key=dst, CopySource={"Bucket": self.bucket, "Key": src})

    async def _delete(self, key: str, if_match: str | None) -> None:
        extra = {"IfMatch": if_match} if if_match is not None else {}
        await self._send("delete_object", Key=key, **extra)

    async def _delete_many(self, keys: Sequence[str]) -> None:
        response = await self._send("delete_objects", Delete={
            "Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            raise _BulkDeleteError(errors[0])

    async def _list(self, prefix: str, delimiter: bool, start_after: str | None
                    ) -> tuple[list[Entry], list[str], int]:
        objects: list[Entry] = []
        folders: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            kwargs: dict[str, object] = {"Prefix": prefix, "MaxKeys": PAGE_SIZE}
            if delimiter:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = prefix + start_after
            page = await self._send("list_objects_v2", **kwargs)
            pages += 1
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]
                if name:
                    modified = item.get("LastModified")
                    objects.append(Entry(name, later_time(
                        modified.timestamp() if modified is not None else None, None),
                        int(item.get("Size", 0) or 0), str(item.get("ETag") or "").strip('"')))
            for folder in page.get("CommonPrefixes", []):
                folders.append(folder["Prefix"][len(prefix):].rstrip("/"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return objects, folders, pages

    async def _list_page(self, prefix: str, start_after: str | None
                         ) -> tuple[list[Entry], bool]:
        kwargs: dict[str, object] = {"Prefix": prefix, "MaxKeys": PAGE_SIZE}
        if start_after:
            kwargs["StartAfter"] = prefix + start_after
        page = await self._send("list_objects_v2", **kwargs)
        entries = [Entry(item["Key"][len(prefix):], 0.0, int(item.get("Size", 0) or 0))
                   for item in page.get("Contents", []) if item["Key"][len(prefix):]]
        return entries, bool(page.get("IsTruncated"))

    async def _list_one(self, prefix: str) -> None:
        await self._send("list_objects_v2", MaxKeys=1, Prefix=prefix)

    # -- errors ----------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Classified:
        if isinstance(exc, _BulkDeleteError):
            code, status = exc.code, None
        else:
            code, status = _error_code(exc)
            self._count_retries(getattr(exc, "response", None))
        detail = f"{code or type(exc).__name__}: {exc}"
        if code in _MISSING:
            return Classified(Failure.MISSING, code, detail)
        if code in _CONFLICT:
            return Classified(Failure.CONFLICT, code, detail)
        if type(exc).__name__ == "NoCredentialsError":
            return Classified(Failure.NO_CREDENTIALS, code, detail)
        if code in _DENIED:
            return Classified(Failure.DENIED, code, detail)
        if code == "NoSuchBucket":
            return Classified(Failure.NO_BUCKET, code, detail)
        if code in _UNSUPPORTED:
            return Classified(Failure.UNSUPPORTED, code, detail)
        if status is not None and status < 500 and code not in _THROTTLED:
            return Classified(Failure.REFUSED, code, detail)
        return Classified(Failure.UNAVAILABLE, code, f"{type(exc).__name__}: {exc}")


class _BulkDeleteError(Exception):
    """A key of a DeleteObjects request that the server did not delete."""

    def __init__(self, error: _NotDeleted) -> None:
        super().__init__(f"{error.get('Key')}: {error.get('Code')}: {error.get('Message')}")
        self.code = str(error.get("Code") or "")


def _error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore error ("" and None otherwise)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code = str(error.get("Code") or (status or ""))
    return code, int(status) if status else None
