"""The HTTP server of the daemon's console and ``/metrics``: aiohttp, in a thread of its own.

Why aiohttp: it is already installed with ckptd (s3fs brings it), it is well kept, and its
server has what a port open to a browser needs: a limit on the request line and on each
header (``max_line_size``, ``max_field_size``), on the body (``client_max_size``), and a
keep-alive timer armed when a connection opens, so a client that connects and sends
nothing (or a header a byte at a time) is closed. What it lacks, a bound on connections,
is added here: past :attr:`Limits.connections` a new connection closes the oldest idle
one (none is busy with a request), or is refused when all are busy.

Threads: one event loop in one thread serves every connection (a thousand idle ones cost
memory, not threads), plus a small pool (:data:`BLOCKING_THREADS`) for what blocks: reading
job files, listings, checking a password. The engine is never touched from here: pages
render immutable snapshots, and actions travel to the daemon's loop through a queue.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from ckptd.core.errors import ConfigError

log = logging.getLogger(__name__)

BLOCKING_THREADS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server."""

    connections: int = 1024  # open at once; past it the oldest idle one is closed
    idle: float = 15.0  # a connection without a request this long is closed
    line: int = 128 * 1024  # the request line (a longer URL is cut off by the parser)
    url: int = 8 * 1024  # a URL longer than this gets 414
    header: int = 16 * 1024  # one header line
    body: int = 4 * 1024 * 1024  # a request body (a form, an upload)


class _BadRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a request line over the bound, garbage) with
    its traceback; it is the client's fault, answered 400: counted, not logged."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            self.count += 1
            return False
        return True


BAD_REQUESTS = _BadRequests()
logging.getLogger("aiohttp.server").addFilter(BAD_REQUESTS)


class _Refused(asyncio.Protocol):
    """A connection over the bound: answered 503 and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n")
        transport.close()


class WebServer:
    """An aiohttp application served from a thread of its own, within :class:`Limits`."""

    def __init__(self, app: web.Application, bind: str, port: int, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.busy: set[RequestHandler] = set()  # connections with a request in progress
        self.refused = 0  # connections refused (every one was busy)
        self.evicted = 0  # idle connections closed to make room
        self.pool = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="ckptd-http-io")
        self.loop = asyncio.new_event_loop()
        self._sock = _bind(bind, port)
        self.port = int(self._sock.getsockname()[1])
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (returns once the server listens)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._setup())
            except BaseException as exc:  # told to the starting thread
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._teardown())
            self.loop.close()

        self._thread = threading.Thread(target=main, name="ckptd-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    async def _setup(self) -> None:
        limits = self.limits
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     keepalive_timeout=limits.idle, max_line_size=limits.line,
                                     max_field_size=limits.header, handler_cancellation=True)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None

        def connection() -> asyncio.Protocol:
            if len(server.connections) >= limits.connections and not self._evict(server):
                self.refused += 1
                return _Refused()
            return server()

        self._server = await self.loop.create_server(connection, sock=self._sock,
                                                     backlog=512)

    def _evict(self, server: web.Server) -> bool:
        """Close the oldest idle connection; False when every one is busy."""
        for handler in server.connections:  # oldest first
            if handler not in self.busy:
                self.evicted += 1
                handler.force_close()
                transport = handler.transport
                if transport is not None:
                    transport.close()
                return True
        return False

    async def _teardown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def open_connections(self) -> int:
        """Connections open now (read from any thread; approximate)."""
        runner = self._runner
        return len(runner.server.connections) if runner and runner.server else 0

    async def blocking(self, func: Callable[[], T]) -> T:
        """Run ``func`` in the pool (from a request handler) and await its result."""
        return await self.loop.run_in_executor(self.pool, func)

    def run(self, coro: Coroutine[object, None, T]) -> T:
        """Run ``coro`` in the server's loop and wait for it (other threads only)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        """Stop serving, close every connection, wait for the thread. Idempotent."""
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
        self.pool.shutdown(wait=False, cancel_futures=True)
        try:
            self._sock.close()
        except OSError:
            pass


def _bind(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind:port``; ConfigError when it cannot be had."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(bind).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot serve metrics on {bind}:{port}: {exc.strerror or exc}; "
                          "is the port in use (metrics_port)?") from None
    sock.setblocking(False)
    return sock
