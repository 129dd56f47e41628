"""S3 and S3-compatible servers: the bucket store with overlapping requests and deadlines.

:class:`S3Store` keeps the layout and the rules of :class:`~ckptd.store.bucket.BucketStore`
(a move is a copy, then a delete; recovery keeps the later copy) and adds what a real
object store needs:

- A client made for it: requests go through obstore (Rust's ``object_store``), which costs
  a fraction of s3fs's CPU per request; s3fs remains the fallback for options obstore
  cannot honour (:mod:`ckptd.store.s3.options`). Every request has its own deadline,
  retries and errors become ckptd's own: :mod:`ckptd.store.s3.requests`.
- Requests overlap. :meth:`S3Store.apply` runs the operations of one group concurrently, at
  most ``concurrency`` requests in flight, and keeps the operations of one job in their
  order; the deletes of the old copies go together at the end of the group
  (:mod:`ckptd.store.s3.writes`, which also says what each operation costs).
- Creating a job is create-only on the server (``PutObject`` with ``If-None-Match: *``) when
  it supports conditional writes, so two producers can never both create the same job.
  Support is probed once (a conditional PUT on a probe key); without it the store falls
  back to look-then-write and logs a warning. Conditional CopyObject is never used.
- A fence (:meth:`S3Store.set_fence`): every write request to a queue first checks that this
  process still leads the queue, and raises :class:`~ckptd.core.errors.NotLeader` otherwise.
- Listings are paged (1,000 keys a page) and never cached; the job files the daemon wrote
  itself are remembered until their claim, so a claim does not read back what was just
  written (:meth:`S3Store.prefetch` does the same for files producers put there).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

from ckptd.core.config import FsyncMode
from ckptd.core.errors import CkptdError, JobNotFound, StoreError
from ckptd.core.json_parts import table
from ckptd.core.names import check_job_ref, check_queue, is_valid_name
from ckptd.core.states import STATES, State
from ckptd.store.background import Background
from ckptd.store.base import (
    ARCHIVE_DIR,
    BLOB_DIR,
    BLOB_KINDS,
    CHECKPOINT_DIR,
    JOB_SUFFIX,
    QUARANTINE_DIR,
    QUEUE_CONTROLS,
    REASON_SUFFIX,
    TMP_DIR,
    Leftover,
    Op,
    Outcome,
    check_blob_kind,
    check_folder,
    split_job_name,
)
from ckptd.store.bucket import BucketStore, _check_plain
from ckptd.store.file_names import Line, Named, job_names
from ckptd.store.s3.cache import PendingCache
from ckptd.store.s3.conditional import S3ControlObjects
from ckptd.store.s3.options import NotHonoured, client_choice
from ckptd.store.s3.requests import S3Requests
from ckptd.store.s3.split_listing import listing_chunks
from ckptd.store.s3.writes import S3Writes

if TYPE_CHECKING:
    from ckptd.core.config import Settings

log = logging.getLogger(__name__)


def is_s3(root: str) -> bool:
    """Return True when ``root`` is an ``s3://`` (or ``s3a://``) URL."""
    return root.startswith(("s3://", "s3a://"))


def bucket_options(settings: Settings) -> dict[str, object]:
    """Bucket options from the settings: the ``[storage_options]`` table plus the endpoint."""
    options = dict(settings.storage_options)
    endpoint = settings.s3_endpoint_url
    client_kwargs = table(options.get("client_kwargs"))
    if endpoint and not options.get("endpoint_url") and not client_kwargs.get("endpoint_url"):
        options["endpoint_url"] = endpoint
    return options


def describe_bucket(settings: Settings) -> str:
    """How the bucket of ``settings.root`` is reached, every setting with its source (for
    ``doctor``); raises ValueError for settings that cannot work."""
    from ckptd.store.s3.aws_config import resolve
    from ckptd.store.s3.options import credentials_source

    options = bucket_options(settings)
    bucket = settings.root.split("://", 1)[1].split("/", 1)[0]
    address = resolve(bucket, options)
    return f"{address.describe()}; credentials from {credentials_source(options, address)}"


def open_requests(bucket: str, base: str, options: Mapping[str, object], *, timeout: float,
                  concurrency: int) -> S3Requests:
    """The requests of a bucket: through obstore, or s3fs when asked or when obstore cannot
    honour the options (said once in the log)."""
    if client_choice(options) == "obstore":
        try:
            from ckptd.store.s3.obstore_client import ObstoreRequests

            return ObstoreRequests(bucket, base, options, timeout=timeout,
                                   concurrency=concurrency)
        except ImportError as exc:
            log.warning("obstore is not installed (%s): s3://%s goes through s3fs, which "
                        "costs more CPU per request", exc, bucket)
        except NotHonoured as exc:
            log.warning("[storage_options] has what obstore cannot honour (%s): s3://%s goes "
                        "through s3fs, which costs more CPU per request", exc, bucket)
    from ckptd.store.s3.botocore_client import BotocoreRequests

    return BotocoreRequests(bucket, base, options, timeout=timeout, concurrency=concurrency)


class S3Store(BucketStore, Background):
    """A store in an S3 bucket (AWS or any S3-compatible server), under a key prefix.

    ``bulk_deletes``: send the deletes of old copies together at the end of a group (one
    request per 1,000 keys) rather than one request each.
    """

    def __init__(self, url: str, fsync: FsyncMode = FsyncMode.BATCH,
                 storage_options: Mapping[str, object] | None = None, *, timeout: float = 10.0,
                 concurrency: int = 64, bulk_deletes: bool = True) -> None:
        # No fsspec file system here (BucketStore.__init__ makes one): every request goes
        # through self.req, whichever client sends it.
        self.url = url.rstrip("/")
        self.fsync = FsyncMode(fsync)  # an acknowledged PUT is durable; kept for display
        self.prefix = self.url.split("://", 1)[1].strip("/")
        self._lock = threading.Lock()
        self.bucket, _, base = self.prefix.partition("/")
        if not self.bucket:
            raise ValueError(f"no bucket in {url!r}: expected s3://BUCKET/PREFIX")
        self.base = base.strip("/")
        self.req = open_requests(self.bucket, self.base, storage_options or {},
                                 timeout=timeout, concurrency=concurrency)
        self.cache = PendingCache()
        self.writes = S3Writes(self.req, self.prefix, self.url, self.cache,
                               bulk_deletes=bulk_deletes)
        # control files read before, by (queue, name): ((time, size) listed, bytes)
        self._controls_seen: dict[tuple[str, str], tuple[tuple[float, int], bytes]] = {}
        # Reads and groups started in the background (Background), by the daemon's loop:
        self._reading: set[tuple[str, str]] = set()  # pending files being read
        self._unread: dict[tuple[str, str], CkptdError] = {}  # reads that found no file
        self._groups: set[Future[list[Outcome]]] = set()  # groups in flight
        self._missed: set[str] = set()  # queues whose next claim's file was not read yet
        self._background_lock = threading.Lock()
        self._wake: Callable[[], None] = lambda: None

    @property
    def client(self) -> str:
        """The library that sends the requests: ``obstore`` or ``s3fs``."""
        return self.req.client

    def close(self) -> None:
        self.settle(self.req.timeout)
        self.req.close()

    # -- the job-file cache ----------------------------------------------------------------

    def forget_prefetched(self) -> None:
        """Forget every remembered pending file (the daemon calls it when it stands by)."""
        self.cache.clear()
        with self._background_lock:
            self._unread.clear()

    def prefetch(self, queue: str, ids: Sequence[str],
                 priorities: Mapping[str, Line] | None = None) -> int:
        """Read the pending files of ``ids`` concurrently, for the next claims; return how many.

        Ids already remembered are skipped; files that are gone are ignored.
        """
        wanted = self.cache.missing(queue, list(ids))
        if not wanted:
            return 0

        async def fetch_all() -> int:
            async def one(job_id: str) -> int:
                try:
                    data = await self.req.get(self._pending_key(queue, job_id, priorities),
                                              f"read {queue}/pending/{job_id}")
                except StoreError:
                    return 0
                if data is None:
                    return 0
                self.cache.remember(queue, job_id, data)
                return 1
            return sum(await asyncio.gather(*(one(i) for i in wanted)))
        return self.req.run(fetch_all)

    def _pending_key(self, queue: str, job_id: str, priorities: Mapping[str, Line] | None
                     ) -> str:
        tag = priorities.get(job_id, 0) if priorities else 0
        priority, key = tag if isinstance(tag, tuple) else (tag, "")
        return self._job_key(queue, State.PENDING, job_id, priority, key)

    # -- capabilities ----------------------------------------------------------------------

    def conditional_writes(self) -> bool:
        """Return True when the server honours If-None-Match / If-Match on PUT (probed once)."""
        return self.req.run(self.writes.probe)

    def control_objects(self) -> S3ControlObjects:
        try:
            shared = self.conditional_writes()
        except StoreError as exc:  # not reachable now: the lease itself will say so
            log.warning("cannot check the bucket's conditional writes yet: %s", exc)
            shared = True
        return S3ControlObjects(self.req, self.prefix, shared)

    def set_fence(self, fence: Callable[[str], None] | None) -> bool:
        self.req.fence = fence
        return True

    def request_stats(self) -> dict[str, int]:
        return dict(self.req.stats)

    def probe_access(self) -> None:
        """List one key under the prefix; raise StoreError when the bucket cannot be read."""
        self.req.run(self.req.probe_access)

    # -- in the background: the daemon's loop never waits on a request -----------------------

    def apply_later(self, ops: Sequence[Op], then: Callable[[list[Outcome]], None]) -> None:
        count = len(ops)
        future = self.req.start(self.writes.apply, list(ops))
        with self._background_lock:
            self._groups.add(future)

        def ended(done: Future[list[Outcome]]) -> None:
            with self._background_lock:
                self._groups.discard(done)
            try:
                outcomes = done.result()
            except Exception as exc:  # noqa: BLE001 - a bug costs the group, not the loop
                log.exception("a group of %d store operation(s) failed", count)
                outcomes = [StoreError(f"cannot update {self.url}: {exc}")] * count
            then(outcomes)
        future.add_done_callback(ended)

    def probe_later(self, then: Callable[[CkptdError | None], None]) -> None:
        def ended(done: Future[None]) -> None:
            error = done.exception()
            then(error if isinstance(error, CkptdError) or error is None
                 else StoreError(f"cannot reach {self.url}: {error}"))
        self.req.start(self.req.probe_access).add_done_callback(ended)

    def notify(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def prefetch_later(self, queue: str, ids: Sequence[str],
                       priorities: Mapping[str, Line] | None = None) -> int:
        if self.cache.full():
            return 0
        with self._background_lock:
            wanted = [i for i in self.cache.missing(queue, list(ids))
                      if (queue, i) not in self._reading and (queue, i) not in self._unread]
            self._reading.update((queue, i) for i in wanted)
        if not wanted:
            return 0

        async def fetch_all() -> None:
            async def one(job_id: str) -> None:
                key = self._pending_key(queue, job_id, priorities)
                try:
                    data = await self.req.get(key, f"read {queue}/pending/{job_id}")
                    failure: CkptdError | None = None if data is not None else JobNotFound(
                        f"job {job_id!r} is not in {queue}/pending/")
                except CkptdError as exc:
                    data, failure = None, exc
                if data is not None:
                    self.cache.remember(queue, job_id, data)
                    if self.cache.peek(queue, job_id) is None:  # the cache is full
                        failure = None  # read again at its claim
                with self._background_lock:
                    self._reading.discard((queue, job_id))
                    if failure is not None:
                        self._unread[(queue, job_id)] = failure
            await asyncio.gather(*(one(i) for i in wanted))

        def ended(done: Future[None]) -> None:
            if done.exception() is not None:
                log.error("reading pending files of %s failed: %s", queue, done.exception())
            self._wake()
        self.req.start(fetch_all).add_done_callback(ended)
        return len(wanted)

    def locate_later(self, queue: str, ids: Sequence[str],
                     then: Callable[[dict[str, str | None], list[str]], None]) -> None:
        order = (State.DONE, State.FAILED, State.PENDING, State.CLAIMED)

        async def look_all() -> tuple[dict[str, str | None], list[str]]:
            async def one(job_id: str) -> tuple[str, str | None, bool]:
                try:
                    found = await asyncio.gather(*(self.req.head(
                        self._job_key(queue, state, job_id), f"look for {queue}/{job_id}")
                        for state in order))
                except CkptdError:
                    return job_id, None, False
                states = [s.value for s, info in zip(order, found) if info is not None]
                return job_id, states[0] if states else None, True
            looked = await asyncio.gather(*(one(i) for i in ids))
            return ({i: s for i, s, ok in looked if ok}, [i for i, _, ok in looked if not ok])

        def ended(done: Future[tuple[dict[str, str | None], list[str]]]) -> None:
            if done.exception() is not None:
                log.error("looking for jobs of %s failed: %s", queue, done.exception())
                then({}, list(ids))
            else:
                then(*done.result())
            self._wake()
        self.req.start(look_all).add_done_callback(ended)

    def ready(self, queue: str, job_id: str, priority: int = 0, key: str = "") -> bool:
        if self.cache.peek(queue, job_id) is not None or self.cache.full():
            return True  # (full: files are read at their claims, as without a cache)
        with self._background_lock:
            if (queue, job_id) in self._unread:
                return True
            self._missed.add(queue)
        self.prefetch_later(queue, [job_id], {job_id: (priority, key)})
        return False

    def missed(self) -> set[str]:
        with self._background_lock:
            found, self._missed = self._missed, set()
        return found

    def busy(self, queue: str, job_id: str) -> bool:
        return self.writes.busy(queue, job_id)

    def moved_out(self, queue: str, job_id: str, state: State, since: float) -> bool:
        return self.writes.moved.get((queue, job_id, state), 0.0) >= since

    def settle(self, timeout: float) -> bool:
        with self._background_lock:
            groups = list(self._groups)
        if groups:
            wait(groups, timeout=timeout)
        with self._background_lock:
            return not self._groups

    # -- reading ---------------------------------------------------------------------------

    def _ls(self, path: str) -> list[str]:
        objects, folders = self.req.run(lambda: self.req.list(path))
        return [o.name for o in objects] + folders

    def _ls_times(self, path: str) -> list[tuple[str, float]]:
        objects, _ = self.req.run(lambda: self.req.list(path))
        return [(o.name, o.time) for o in objects]

    def queues(self) -> list[str]:
        states = {s.value for s in STATES}

        async def find() -> list[str]:
            _, names = await self.req.list(self.prefix)
            names = [n for n in names if is_valid_name(n)]
            found = await asyncio.gather(*(self.req.list(f"{self.prefix}/{n}") for n in names))
            return sorted(n for n, (_, sub) in zip(names, found) if states & set(sub))
        return self.req.run(find)

    def listing_chunks(self, queue: str, state: State, size: int = 65536
                       ) -> Iterator[list[str]]:
        """Split across key ranges listed in parallel (:mod:`~ckptd.store.s3.split_listing`)."""
        check_queue(queue)
        return listing_chunks(self.req, f"{self.prefix}/{queue}/{state.value}", size)

    def ids_after(self, queue: str, state: State, start_after: str | None) -> list[str]:
        """The ids in ``state`` that sort after ``start_after`` (all when None), sorted."""
        return [found[0] for found in self._named_after(queue, state, start_after)]

    def pending_after(self, queue: str, start_after: str | None) -> list[Named]:
        return self._named_after(queue, State.PENDING, start_after)

    def _named_after(self, queue: str, state: State, start_after: str | None
                     ) -> list[Named]:
        check_queue(queue)
        path = f"{self.prefix}/{queue}/{state.value}"
        objects, _ = self.req.run(lambda: self.req.list(path, start_after=start_after))
        found = job_names([o.name for o in objects], state)
        # The listing starts after the key "<start_after>", so "<start_after>.json" is in it.
        return sorted(f for f in found if start_after is None or f[0] > start_after)

    def _cat(self, key: str, missing: str) -> bytes:
        data = self.req.run(lambda: self.req.get(key, f"read {self.req.split(key)}"))
        if data is None:
            raise JobNotFound(missing)
        return data

    def read(self, queue: str, state: State, job_id: str, priority: int = 0,
             key: str = "") -> bytes:
        check_job_ref(queue, job_id)
        if state is State.PENDING:
            cached = self.cache.take(queue, job_id)
            if cached is not None:
                return cached
            with self._background_lock:
                failed = self._unread.pop((queue, job_id), None)
            if failed is not None:  # a read in the background found no file, or failed
                raise failed
        return self._cat(self._job_key(queue, state, job_id, priority, key),
                         f"job {job_id!r} is not in {queue}/{state.value}/")

    def exists(self, queue: str, state: State, job_id: str, priority: int = 0,
               key: str = "") -> bool:
        check_job_ref(queue, job_id)
        obj = self._job_key(queue, state, job_id, priority, key)
        what = f"look for {self.req.split(obj)}"
        return self.req.run(lambda: self.req.head(obj, what)) is not None

    def find(self, queue: str, job_id: str, priority: int | None = None,
             key: str = "") -> list[State]:
        check_job_ref(queue, job_id)

        async def look() -> list[State]:
            found = await asyncio.gather(*(self.req.head(
                self._job_key(queue, s, job_id, priority or 0, key), f"look for {job_id}")
                for s in STATES))
            return [s for s, info in zip(STATES, found) if info is not None]
        found: list[State] = self.req.run(look)
        if not found and priority is None and self.pending_tag(queue, job_id) is not None:
            found = [State.PENDING]
        return found

    def mtime(self, queue: str, state: State, job_id: str, priority: int = 0,
              key: str = "") -> float:
        check_job_ref(queue, job_id)
        obj = self._job_key(queue, state, job_id, priority, key)
        info = self.req.run(lambda: self.req.head(obj, f"look for {self.req.split(obj)}"))
        if info is None:
            raise JobNotFound(f"job {job_id!r} is not in {queue}/{state.value}/")
        return info.time

    def read_blob_range(self, queue: str, job_id: str, kind: str, start: int, end: int
                        ) -> bytes:
        check_job_ref(queue, job_id)
        key = self._key(queue, BLOB_DIR, f"{job_id}.{check_blob_kind(kind)}")
        missing = f"blob {job_id}.{kind} is not in {queue}/{BLOB_DIR}/"
        what = f"read {self.req.split(key)}"
        if end <= start:
            if self.req.run(lambda: self.req.head(key, what)) is None:
                raise JobNotFound(missing)
            return b""
        data = self.req.run(lambda: self.req.get(key, what, (start, end)))
        if data is None:
            raise JobNotFound(missing)
        return data

    # -- writing ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[Outcome]:
        if not ops:
            return []
        return self.req.run(self.writes.apply, list(ops))

    # -- maintenance -----------------------------------------------------------------------

    def leftovers(self, queue: str, now: float) -> list[Leftover]:
        check_queue(queue)
        objects, _ = self.req.run(lambda: self.req.list(f"{self.prefix}/{queue}/{TMP_DIR}"))
        return sorted((Leftover(queue, o.name, now - o.time) for o in objects),
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

    # -- operator controls -----------------------------------------------------------------

    def read_control(self, queue: str, name: str) -> bytes | None:
        key = self._control_key(queue, name)
        return self.req.run(lambda: self.req.get(key, f"read {queue}/{name}"))

    def write_control(self, queue: str, name: str, data: bytes) -> None:
        key = self._control_key(queue, name)
        self.req.run(lambda: self.req.put(key, data, f"write {queue}/{name}"))

    def delete_control(self, queue: str, name: str) -> None:
        key = self._control_key(queue, name)
        self.req.run(lambda: self.req.delete(key, f"delete {queue}/{name}"))

    def _rm(self, key: str) -> None:
        self.req.run(lambda: self.req.delete(key, f"delete {key}"))

    def queue_controls(self) -> dict[str, dict[str, bytes]]:
        """The queues and their control files from the same listing as :meth:`queues`: a
        control file is read only when the listing shows it new or changed."""
        states = {s.value for s in STATES}

        async def survey() -> dict[str, dict[str, bytes]]:
            _, names = await self.req.list(self.prefix)
            names = [n for n in names if is_valid_name(n)]
            listed = await asyncio.gather(*(self.req.list(f"{self.prefix}/{n}")
                                            for n in names))
            found: dict[str, dict[str, bytes]] = {}
            wanted: list[tuple[str, str, tuple[float, int]]] = []
            for queue, (objects, folders) in zip(names, listed):
                if not states & set(folders) and not any(o.name in QUEUE_CONTROLS
                                                         for o in objects):
                    continue  # a queue: state folders, or a control file (paused first)
                found[queue] = {}
                for entry in objects:
                    if entry.name not in QUEUE_CONTROLS:
                        continue
                    mark = (entry.time, entry.size)
                    seen = self._controls_seen.get((queue, entry.name))
                    if seen is not None and seen[0] == mark:
                        found[queue][entry.name] = seen[1]
                    else:
                        wanted.append((queue, entry.name, mark))
            data = await asyncio.gather(*(self.req.get(self._control_key(q, n), f"read {q}/{n}")
                                          for q, n, _ in wanted))
            for (queue, name, mark), body in zip(wanted, data):
                if body is not None:
                    self._controls_seen[(queue, name)] = (mark, body)
                    found[queue][name] = body
            return found
        return self.req.run(survey)

    def finished(self, queue: str, state: State, cutoff: float | None = None
                 ) -> list[tuple[str, float]]:
        """One listing: the time of each object comes with it."""
        check_queue(queue)
        path = f"{self.prefix}/{queue}/{state.value}"
        objects, _ = self.req.run(lambda: self.req.list(path))
        found = [(job_id, o.time) for o in objects
                 if (job_id := split_job_name(o.name)) is not None]
        return sorted(found, key=lambda pair: pair[1])

    def archive(self, queue: str, state: State, job_id: str, folder: str) -> bool:
        check_job_ref(queue, job_id)
        _check_plain(folder)
        target = f"{self.prefix}/{queue}/{ARCHIVE_DIR}/{folder}"
        source = self._job_key(queue, state, job_id)
        what = f"archive {queue}/{state.value}/{job_id}"

        async def move() -> bool:
            if await self.req.head(source, what) is None:
                return False
            for kind in BLOB_KINDS:
                blob = self._key(queue, BLOB_DIR, f"{job_id}.{kind}")
                try:
                    await self.req.copy(blob, f"{target}/{job_id}.{kind}", what)
                except JobNotFound:
                    continue
                await self.req.delete(blob, what)
            await self.req.copy(source, f"{target}/{job_id}{JOB_SUFFIX}", what)
            await self.req.delete(source, what)
            await self.req.delete(self._key(queue, CHECKPOINT_DIR, job_id + JOB_SUFFIX), what)
            return True
        return bool(self.req.run(move))
