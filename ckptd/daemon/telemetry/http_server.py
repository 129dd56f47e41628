"""The daemon's HTTP side: Prometheus ``/metrics`` and the operator console.

Threads: the server (:mod:`ckptd.daemon.telemetry.web_server`) answers requests in a thread
of its own and never touches the engine. The daemon's loop publishes an immutable
:class:`~ckptd.daemon.telemetry.snapshot.Snapshot` every :data:`SNAPSHOT_INTERVAL` seconds
(one reference swap), and pages render the latest one. What a page or an action needs from
the loop itself (a lease, a control request such as ``retry``) is queued with
:meth:`Telemetry.call`: the loop is woken, runs it between two steps, and hands the answer
back; an action is the same control request the CLI and the client send, carried out by
the same code (:meth:`ckptd.daemon.requests.Control.local`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from ckptd.core.answer_types import LeaseInfo
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import ConfigError, remote_error
from ckptd.daemon.telemetry import exposition
from ckptd.daemon.telemetry.console_app import build_app
from ckptd.daemon.telemetry.console_auth import Sessions, Users
from ckptd.daemon.telemetry.job_search import Listings
from ckptd.daemon.telemetry.snapshot import Snapshot
from ckptd.daemon.telemetry.web_guard import allowed_hosts
from ckptd.daemon.telemetry.web_server import Limits, WebServer
from ckptd.store.admin import StoreAdmin
from ckptd.store.base import Store
from ckptd.wire import protocol
from ckptd.wire.endpoints import is_loopback
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 0.5
LOOP_CALL_TIMEOUT = 5.0
ACTION_TIMEOUT = 600.0  # a bulk action over many jobs answers when its last slice is done
T = TypeVar("T")

LocalRequest = Callable[[bytes, Body, float, Callable[[list[bytes]], None]], None]


class Telemetry:
    """Publishes snapshots from the daemon's loop and serves them over HTTP.

    It is given functions, not the daemon: ``snapshot(now)`` copies the figures out of the
    engine (loop only), ``request(kind, body, now, answer)`` carries out a control request
    (loop only), ``wake()`` makes the loop turn; the store is read (and replays and the
    audit log written) from the HTTP side's I/O threads.
    """

    def __init__(self, live: LiveSettings, store: Store, *,
                 snapshot: Callable[[float], Snapshot], request: LocalRequest,
                 lease: Callable[[str, str, float], LeaseInfo | None],
                 wake: Callable[[], None], clock: Callable[[], float] = time.time,
                 limits: Limits | None = None) -> None:
        self.live = live
        self.store = store
        self.admin = StoreAdmin(store, live, clock)
        self.listings = Listings(store)
        self._lease = lease
        self._snapshot = snapshot
        self._request = request
        self._wake = wake
        self._clock = clock
        self.limits = limits or Limits()
        self.snapshot: Snapshot | None = None
        self.requests: Counter[tuple[str, str]] = Counter()
        self._requests_lock = threading.Lock()
        self._calls: deque[tuple[Callable[[], None], Callable[[], bool]]] = deque()  # run, cancel
        self._next = 0.0
        self.users = Users(self.settings.console_users)
        self.sessions = Sessions()
        self.server: WebServer | None = None
        self.port = self.settings.metrics_port
        self.registry = exposition.make_registry(self._scrape_source)

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload changes the users file and host names too)."""
        return self.live.current

    # -- the daemon's loop -----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Publish a first snapshot and start serving; raise ConfigError if the port is taken
        or the bind is not loopback without --insecure."""
        settings = self.settings
        bind = settings.metrics_bind
        if not is_loopback(bind) and not settings.insecure:
            raise ConfigError(f"refusing to serve /metrics and the console on {bind}: they "
                              "have no authentication but the console's own login. Put them "
                              "behind an authenticating proxy on 127.0.0.1 (add the proxy's "
                              "name to console_hosts), or pass --insecure")
        self.publish(now)
        limits = _within_open_files(self.limits)
        self.users.path = settings.console_users
        self.server = WebServer(build_app(self, limits, self.count_request), bind,
                                settings.metrics_port, limits)
        self.port = self.server.port
        self.server.start()
        if not is_loopback(bind):
            log.warning("INSECURE: the metrics port listens on %s: anyone who can reach it "
                        "sees job ids and errors", bind)
        log.info("serving /metrics and the console", extra={"fields": {
            "url": f"http://{_host(bind)}:{self.port}/",
            "actions": "on" if settings.console_actions else "off (read-only)"}})

    def tick(self, now: float) -> None:
        """Run the HTTP side's queued calls; publish a snapshot when one is due."""
        while self._calls:
            run, _ = self._calls.popleft()
            run()
        if now >= self._next:
            self.publish(now)

    def publish(self, now: float) -> None:
        """Copy the figures out of the engine into a new snapshot (one reference swap)."""
        self.snapshot = self._snapshot(now)
        self._next = now + SNAPSHOT_INTERVAL

    def close(self) -> None:
        """Stop serving and wait for the server thread. Idempotent."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        while self._calls:
            self._calls.popleft()[1]()

    # -- the HTTP side ---------------------------------------------------------------------

    def call(self, func: Callable[[], T]) -> Future[T]:
        """Queue ``func`` for the daemon's loop; its result (or error) comes in the future."""
        future: Future[T] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except Exception as exc:  # handed to the asking thread, which reports it
                    future.set_exception(exc)

        self._calls.append((run, future.cancel))
        self._wake()
        return future

    async def in_loop(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the daemon's loop and await its result."""
        return await asyncio.wait_for(asyncio.wrap_future(self.call(func)),
                                      LOOP_CALL_TIMEOUT)

    async def ask(self, kind: str, body: Body) -> Body:
        """Send the control request ``kind`` through the daemon's loop, as the client would
        over the socket; return the answer, or raise the daemon's error."""
        answered: Future[list[bytes]] = Future()

        def send() -> None:
            self._request(kind.encode(), body, self._clock(), answered.set_result)

        await self.in_loop(send)
        frames = await asyncio.wait_for(asyncio.wrap_future(answered), ACTION_TIMEOUT)
        ok, answer = protocol.decode_reply(frames)
        if ok:
            return answer
        raise remote_error(str(answer.get("error", "error")),
                           str(answer.get("message", "the daemon refused")),
                           int(answer.get("exit_code", 1)))

    async def lease(self, queue: str, job_id: str) -> LeaseInfo | None:
        """The lease of a claimed job, asked of the daemon's loop."""
        return await self.in_loop(lambda: self._lease(queue, job_id, self._clock()))

    async def blocking(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the HTTP side's I/O pool."""
        assert self.server is not None
        return await self.server.blocking(func)

    def hosts(self) -> frozenset[str]:
        """The host names the console answers to now."""
        settings = self.settings
        self.users.path = settings.console_users  # a reload may name another file
        return allowed_hosts(settings.metrics_bind, settings.console_hosts)

    def count_request(self, method: str, code: str) -> None:
        """Count a served request (for ckptd_http_requests_total)."""
        with self._requests_lock:
            self.requests[(method, code)] += 1

    def _scrape_source(self) -> tuple[Snapshot | None, dict[tuple[str, str], int]]:
        with self._requests_lock:
            requests = dict(self.requests)
        return self.snapshot, requests


def _within_open_files(limits: Limits) -> Limits:
    """Room for the connection bound within the open-files limit (raised to its hard limit
    when that is needed and allowed), with 256 descriptors kept for the rest of the
    daemon; the bound is lowered when there is not enough."""
    from dataclasses import replace

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        room = max(16, soft - 256)
        log.warning("the open-files limit (%d) leaves room for %d HTTP connections", soft,
                    room)
        return replace(limits, connections=room)
    return limits


def _host(bind: str) -> str:
    return f"[{bind}]" if ":" in bind else bind

