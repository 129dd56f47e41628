"""The daemon's HTTP side: Prometheus ``/metrics`` and the read-only dashboard.

Threads: the server answers requests in its own threads and never touches the engine. The
daemon's loop publishes an immutable :class:`ckptd.daemon.telemetry.snapshot.Snapshot` every
:data:`SNAPSHOT_INTERVAL` seconds (one reference swap), and the HTTP threads render the latest
one. The only thing a page needs from the loop itself, a claimed job's lease, is asked for
through :meth:`Telemetry.call`: the request is queued, the loop is woken, runs it between two
steps and hands the answer back.

Only GET and HEAD are served; every other method gets 405. Nothing here changes state.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ckptd.core.errors import CkptdError, ConfigError, JobNotFound
from ckptd.core.explain import explain
from ckptd.core.names import is_valid_name
from ckptd.daemon.telemetry import dashboard, exposition
from ckptd.daemon.telemetry.snapshot import Snapshot
from ckptd.wire.endpoints import is_loopback

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 0.5
LOOP_CALL_TIMEOUT = 2.0
T = TypeVar("T")

SECURITY_HEADERS = {
    # No scripts, no frames, nothing fetched from elsewhere: a page cannot act.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Telemetry:
    """Publishes snapshots from the daemon's loop and serves them over HTTP.

    It is given functions, not the daemon: ``snapshot(now)`` copies the figures out of the
    engine (loop only), ``show(queue, id)`` reads a job from the store (any thread),
    ``lease_info(queue, id, now)`` asks the engine (loop only, through :meth:`call`) and
    ``wake()`` makes the loop turn.
    """

    def __init__(self, bind: str, port: int, *, insecure: bool,
                 snapshot: Callable[[float], Snapshot],
                 show: Callable[[str, str], dict[str, Any]],
                 lease_info: Callable[[str, str, float], dict[str, Any] | None],
                 wake: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.bind = bind
        self.port = port
        self.insecure = insecure
        self._snapshot = snapshot
        self._show = show
        self._lease_info = lease_info
        self._wake = wake
        self._clock = clock
        self.snapshot: Snapshot | None = None
        self.requests: Counter[tuple[str, str]] = Counter()
        self._requests_lock = threading.Lock()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._next = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.registry = exposition.make_registry(self._scrape_source)

    # -- the daemon's loop -----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Publish a first snapshot and start serving; raise ConfigError if the port is taken."""
        self.publish(now)
        try:
            address = ipaddress.ip_address(self.bind)
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        except ValueError:
            family = socket.AF_INET
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        if not is_loopback(self.bind) and not self.insecure:
            raise ConfigError(f"refusing to serve /metrics and the dashboard on {self.bind}: "
                              "they have no authentication. Keep metrics_bind on 127.0.0.1 and "
                              "put an authenticating proxy in front, or pass --insecure")
        try:
            server = server_class((self.bind, self.port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.bind}:{self.port}: "
                              f"{exc.strerror or exc}; is the port in use (metrics_port)?"
                              ) from None
        server.telemetry = self
        self._server = server
        self.port = int(server.server_address[1])
        if not is_loopback(self.bind):
            log.warning("INSECURE: the metrics port listens on %s: anyone who can reach it sees "
                        "job ids and errors (read-only)", self.bind)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ckptd-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics and the dashboard", extra={"fields": {
            "url": f"http://{_host(self.bind)}:{self.port}/"}})

    def tick(self, now: float) -> None:
        """Run the HTTP thread's queued questions; publish a snapshot when one is due."""
        while self._calls:
            func, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except Exception as exc:  # handed to the asking thread, which reports it
                    future.set_exception(exc)
        if now >= self._next:
            self.publish(now)

    def publish(self, now: float) -> None:
        """Copy the figures out of the engine into a new snapshot (one reference swap)."""
        self.snapshot = self._snapshot(now)
        self._next = now + SNAPSHOT_INTERVAL

    def close(self) -> None:
        """Stop serving and wait for the server thread. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        while self._calls:
            self._calls.popleft()[1].cancel()

    # -- the HTTP threads ------------------------------------------------------------------

    def call(self, func: Callable[[], T], timeout: float = LOOP_CALL_TIMEOUT) -> T:
        """Run ``func`` in the daemon's loop and return its result (HTTP threads only)."""
        future: Future[T] = Future()
        self._calls.append((func, future))
        self._wake()
        return future.result(timeout)

    def count_request(self, method: str, code: str) -> None:
        """Count a served request (for ckptd_http_requests_total)."""
        with self._requests_lock:
            self.requests[(method, code)] += 1

    def _scrape_source(self) -> tuple[Snapshot | None, dict[tuple[str, str], int]]:
        with self._requests_lock:
            requests = dict(self.requests)
        return self.snapshot, requests

    def job_page(self, queue: str, job_id: str) -> tuple[int, str]:
        """The status code and HTML of a job's page (reads the store, asks the loop)."""
        if not (is_valid_name(queue) and is_valid_name(job_id)):
            return 400, dashboard.render_message("Bad request", "not a valid queue name or id")
        try:
            info = self._show(queue, job_id)
        except JobNotFound:
            return 404, dashboard.render_message("Not found",
                                                 f"no job {job_id!r} in queue {queue!r}")
        except CkptdError as exc:
            return 503, dashboard.render_message("Store error", str(exc))
        problem = None
        try:
            info["lease"] = self.call(lambda: self._lease_info(queue, job_id, self._clock()))
        except (FutureTimeout, RuntimeError):
            info.pop("lease", None)
            problem = "The daemon's loop did not answer in time: lease details are missing."
        return 200, dashboard.render_job(queue, job_id, info, explain(info, time.time()),
                                         problem)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    telemetry: Telemetry


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ckptd"
    sys_version = ""
    timeout = 30  # a client that sends nothing does not hold a thread for ever
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"read-only: only GET and HEAD\n",
                   head=False, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _serve(self, head: bool) -> None:
        telemetry = self.server.telemetry
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                body = exposition.render(telemetry.registry)
                self._send(200, exposition.CONTENT_TYPE, body, head)
            elif path in ("/", "/index.html"):
                html = dashboard.render_index(telemetry.snapshot)
                self._send(200, "text/html; charset=utf-8", html.encode(), head)
            elif path.startswith("/job/") and path.count("/") == 3:
                _, _, queue, job_id = (unquote(p) for p in path.split("/"))
                code, html = telemetry.job_page(queue, job_id)
                self._send(code, "text/html; charset=utf-8", html.encode(), head)
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n", head)
            else:
                html = dashboard.render_message("Not found", "no such page")
                self._send(404, "text/html; charset=utf-8", html.encode(), head)
        except Exception:  # a rendering bug must answer 500, not kill the thread silently
            log.exception("the HTTP request %s failed", self.path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n", head)

    def _send(self, code: int, content_type: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        code_text = str(getattr(code, "value", code))
        self.server.telemetry.count_request(self.command or "-", code_text)
        log.debug("http request", extra={"fields": {
            "method": self.command, "path": self.path, "code": code_text,
            "client": self.client_address[0]}})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        log.debug("http: " + format, *args)




def _host(bind: str) -> str:
    return f"[{bind}]" if ":" in bind else bind
