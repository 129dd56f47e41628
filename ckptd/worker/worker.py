"""Workers: run a handler on the jobs a daemon sends, and report back.

    from ckptd import Worker, Job

    def price(job: Job) -> dict:
        done = job.state or 0                    # resume from the last checkpoint
        for n, item in enumerate(job.payload["items"][done:], start=done):
            ...
            job.checkpoint(n + 1)                 # durable when it returns
            job.progress(n + 1, len(job.payload["items"]))
        return {"total": ...}                     # becomes "result" in done/<id>.json

    Worker("tcp://10.0.0.5:5550", "price", price, concurrency=4).run()

One thread (the caller of :meth:`Worker.run`) owns the ZeroMQ sockets; handlers run in a
pool of ``concurrency`` threads and hand their messages to it through a queue. The worker
says hello with its free slots, so the daemon never sends more jobs than it can start; it
sends heartbeats for running jobs, reconnects by itself when the daemon restarts, and on
SIGTERM lets running jobs finish before it exits.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import traceback
from typing import Any

import zmq

from ckptd.client.client import Client
from ckptd.codec import dumps
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, DaemonUnavailable, LeaseLost, ProtocolError
from ckptd.core.names import check_queue
from ckptd.core.outcomes import Fail, Retry
from ckptd.wire import protocol
from ckptd.wire.endpoints import peer_endpoint
from ckptd.wire.security import ClientCurve
from ckptd.worker.data import JobData
from ckptd.worker.failover import DaemonWatch
from ckptd.worker.job import Handler, Job

log = logging.getLogger(__name__)


class Worker:
    """Connects to a daemon, takes jobs of some queues, runs ``handler`` on each."""

    def __init__(self, connect: str | list[str], queues: str | list[str], handler: Handler, *,
                 concurrency: int = 1, prefetch: int = 0, name: str | None = None,
                 root: str | None = None, curve: ClientCurve | None = None,
                 context: zmq.Context[Any] | None = None, settings: Settings | None = None
                 ) -> None:
        self.endpoints = [connect] if isinstance(connect, str) else list(connect)
        self.queues = [check_queue(q) for q in ([queues] if isinstance(queues, str) else queues)]
        if not self.queues:
            raise CkptdError("a worker needs at least one queue (--queue)")
        if concurrency < 1:
            raise CkptdError("concurrency must be at least 1")
        if prefetch < 0:
            raise CkptdError("prefetch must not be negative")
        self.handler = handler
        self.concurrency = concurrency
        self.prefetch = prefetch
        host = socket.gethostname()
        self.name = name or f"{host}-{os.getpid()}-{os.urandom(3).hex()}"
        self.host = host
        self.root = root
        self.curve = curve
        self.settings = settings  # for a bucket's credentials, endpoint and options
        self._watch: DaemonWatch | None = None  # with several daemon addresses
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self.data = JobData(self._ctx, self.endpoints, curve, root, settings)
        self._outgoing: queue_mod.SimpleQueue[tuple[bytes, dict[str, Any]]] = \
            queue_mod.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._running: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._saved: dict[tuple[str, str, int], tuple[threading.Event, list[Any]]] = {}
        self._stopping = False
        self._stop_now = False
        self._heartbeat = 5.0
        self._blob_threshold = 256 * 1024
        self._next_beat = 0.0
        self._jobs: queue_mod.SimpleQueue[dict[str, Any] | None] = queue_mod.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._woken = False
        self._sock: zmq.Socket[bytes] | None = None
        self.jobs_done = 0
        self.jobs_failed = 0

    # -- life cycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking jobs; :meth:`run` returns once the running ones have finished."""
        self._stopping = True
        self._wake()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish running jobs, then exit (a second one: exit now)."""
        def on_signal(signum: int, frame: Any) -> None:
            if self._stopping:
                self._stop_now = True
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM after install_signal_handlers)."""
        dispatch = self._discover()
        sock = self._dispatch_socket(dispatch)
        self._start_threads()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._hello(sock)
        if len(self.endpoints) > 1:  # a standby: follow whichever daemon is active
            self._watch = DaemonWatch(self._ctx, self.endpoints, self.curve, self._heartbeat)
            poller.register(self._watch.sock, zmq.POLLIN)
        log.info("worker %s serving %s on %s with %d thread(s), prefetch %d", self.name,
                 ",".join(self.queues), dispatch, self.concurrency, self.prefetch)
        self._next_beat = time.monotonic() + self._heartbeat
        said_stop = False
        try:
            while True:
                timeout = max(0.0, self._next_beat - time.monotonic())
                events = dict(poller.poll(int(timeout * 1000)))
                if events.get(self._wake_r):
                    _drain(self._wake_r)
                    # After draining and before flushing: what a handler queues from now on
                    # rings again, and what it queued before is in the flush below.
                    self._woken = False
                if events.get(sock):
                    self._read(sock)
                watch = self._watch
                if watch is not None:
                    if events.get(watch.sock):
                        watch.read()
                    watch.interval = self._heartbeat
                    watch.tick(time.monotonic())
                    if watch.lost() and not self._stopping:
                        sock = self._follow(sock, poller)
                self._flush(sock)
                if time.monotonic() >= self._next_beat:
                    self._next_beat = time.monotonic() + self._heartbeat
                    self._beat(sock)
                if self._stopping:
                    if not said_stop:
                        said_stop = True
                        log.info("stopping: finishing %d running job(s)", len(self._running))
                        self._hello(sock, slots=0)
                    with self._lock:
                        idle = not self._running
                    if (idle and self._outgoing.empty()) or self._stop_now:
                        break
        finally:
            self._flush(sock)
            if not self._stop_now:
                self._send_now(sock, b"bye", {})
            self._stop_threads(wait=not self._stop_now)
            sock.close(5000 if not self._stop_now else 0)
            self._sock = None
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            if self._own_context:
                self._ctx.term()
            log.info("worker %s stopped: %d done, %d failed", self.name, self.jobs_done,
                     self.jobs_failed)

    def _dispatch_socket(self, dispatch: str) -> zmq.Socket[bytes]:
        """A DEALER socket connected to a daemon's dispatch endpoint."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.LINGER, 5000)  # let the last answers out on exit
        # IMMEDIATE stays off on purpose: answers queue up while the daemon restarts and
        # are delivered when it is back, so finished work is not done again.
        sock.setsockopt(zmq.IMMEDIATE, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)  # reconnect with backoff, capped
        sock.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)
        sock.setsockopt(zmq.SNDHWM, 100_000)  # answers must not be dropped while it is away
        if self.curve is not None:
            self.curve.apply_client(sock)
        sock.connect(dispatch)
        self._sock = sock
        return sock

    def _follow(self, sock: zmq.Socket[bytes], poller: zmq.Poller) -> zmq.Socket[bytes]:
        """The daemon is gone (or a standby): move to the active one if one answers.

        Returns the dispatch socket to use from now on (the old one while none answers).
        """
        watch = self._watch
        assert watch is not None
        old = watch.endpoint
        log.warning("the daemon at %s does not answer (or stands by); looking for the "
                    "active one among %s", old, ", ".join(watch.endpoints))
        poller.unregister(watch.sock)
        found = watch.find_active()
        poller.register(watch.sock, zmq.POLLIN)
        if found is None:
            return sock
        endpoint, answer = found
        self.endpoints = self.data.endpoints = list(watch.endpoints)
        self.data.daemon_root = answer.get("root") or self.data.daemon_root
        dispatch = peer_endpoint(endpoint, int(answer["dispatch_port"]))
        poller.unregister(sock)
        sock.close(0)  # what it still held was for the old daemon
        sock = self._dispatch_socket(dispatch)
        poller.register(sock, zmq.POLLIN)
        self._hello(sock)
        resend = watch.answers_to_resend()
        for start in range(0, len(resend), protocol.MAX_BATCH):
            self._send_batch(sock, resend[start:start + protocol.MAX_BATCH])
        log.warning("now working for the daemon at %s (dispatch %s); sent %d recent "
                    "answer(s) again", endpoint, dispatch, len(resend))
        return sock

    def _discover(self) -> str:
        """Ask the daemon's control socket where to connect for jobs."""
        delay = 0.2
        while True:
            client = Client(self.endpoints, timeout=5.0, context=self._ctx, curve=self.curve)
            try:
                answer = client.request("endpoints")
                self.endpoints = self.data.endpoints = \
                    client.endpoints[client._current:] + client.endpoints[:client._current]
                self.data.daemon_root = answer.get("root")
                return peer_endpoint(client.endpoint, int(answer["dispatch_port"]))
            except CkptdError as exc:
                if self._stopping:
                    raise
                log.warning("%s; retrying in %.1fs", exc, delay)
            finally:
                client.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _hello(self, sock: zmq.Socket[bytes], slots: int | None = None) -> None:
        with self._lock:
            running = [[q, i, a] for (q, i), a in self._running.items()]
        total = self.concurrency + self.prefetch if slots is None else slots
        self._send_now(sock, b"hello", {
            "worker": self.name, "queues": self.queues, "slots": total,
            "free": max(0, total - len(running)), "host": self.host, "pid": os.getpid(),
            "running": running})

    def _beat(self, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            running = [[q, i, a] for (q, i), a in self._running.items()]
        self._send_now(sock, b"heartbeat", {"jobs": running})

    # -- messages --------------------------------------------------------------------------

    def _read(self, sock: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                messages = protocol.decode_many(frames, protocol.DAEMON_MESSAGES)
            except ProtocolError as exc:
                log.warning("ignored a bad message from the daemon: %s", exc)
                continue
            for kind, body in messages:
                self._handle(sock, kind, body)

    def _handle(self, sock: zmq.Socket[bytes], kind: bytes, body: dict[str, Any]) -> None:
        if kind == b"job":
            self._start(body)
        elif kind == b"saved":
            waiter = self._saved.pop((body["queue"], body["id"], body["seq"]), None)
            if waiter is not None:
                waiter[1].append(body)
                waiter[0].set()
        elif kind == b"welcome":
            self._heartbeat = max(0.05, float(body["heartbeat"]))
            self._next_beat = min(self._next_beat, time.monotonic() + self._heartbeat)
            self.data.daemon_root = body.get("root") or self.data.daemon_root
            limit = body.get("blob_threshold")
            if isinstance(limit, int) and limit > 0:
                self._blob_threshold = limit
        elif kind == b"rehello":
            self._hello(sock, slots=0 if self._stopping else None)

    def send(self, kind: bytes, body: dict[str, Any]) -> None:
        """Queue a message for the I/O thread (safe from handler threads)."""
        self._outgoing.put((kind, body))
        self._wake()

    def _send_now(self, sock: zmq.Socket[bytes], kind: bytes, body: dict[str, Any]) -> None:
        try:
            sock.send_multipart(protocol.message(kind, body), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("cannot reach the daemon; %s not sent", kind.decode())

    def _flush(self, sock: zmq.Socket[bytes]) -> None:
        """Send what the handlers queued, as one batch."""
        messages: list[tuple[bytes, dict[str, Any]]] = []
        while len(messages) < protocol.MAX_BATCH:
            try:
                messages.append(self._outgoing.get_nowait())
            except queue_mod.Empty:
                break
        if messages:
            if self._watch is not None:
                for kind, body in messages:
                    self._watch.remember(kind, body)
            self._send_batch(sock, messages)

    def _send_batch(self, sock: zmq.Socket[bytes],
                    messages: list[tuple[bytes, dict[str, Any]]]) -> None:
        try:
            sock.send_multipart(protocol.batch(messages), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("cannot reach the daemon; %d answer(s) not sent", len(messages))

    def _wake(self) -> None:
        if self._woken:  # the I/O thread has been rung and has not looked yet
            return
        self._woken = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    # -- running jobs ----------------------------------------------------------------------

    def _start(self, body: dict[str, Any]) -> None:
        key = (body["queue"], body["id"])
        with self._lock:
            if key in self._running:
                return  # the same attempt twice (a resend): already running
            self._running[key] = body["attempt"]
        self._jobs.put(body)

    def _start_threads(self) -> None:
        """Start the handler threads: each takes jobs from one queue until told to stop."""
        self._jobs = queue_mod.SimpleQueue()
        self._threads = [threading.Thread(target=self._handler_loop, name=f"ckptd-job-{n}",
                                          daemon=True) for n in range(self.concurrency)]
        for thread in self._threads:
            thread.start()

    def _handler_loop(self) -> None:
        while True:
            body = self._jobs.get()
            if body is None:
                return
            self._run_job(body)

    def _stop_threads(self, wait: bool) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
        self._threads = []

    def _run_job(self, body: dict[str, Any]) -> None:
        queue, job_id, attempt = body["queue"], body["id"], body["attempt"]
        answer: dict[str, Any] = {"queue": queue, "id": job_id, "attempt": attempt}
        try:
            job = Job(job_id, queue, attempt, self.data.payload(body), self.data.state(body),
                      body.get("max_attempts", 0), body.get("created"), body.get("batch"),
                      _worker=self)
            result = self.handler(job)
            try:
                encoded = protocol.encode_body({"result": result})
            except ValueError as exc:
                raise Fail(f"the handler's result is not JSON-serialisable: {exc}") from None
            store = self.data.direct_store() if len(encoded) > self._blob_threshold else None
            if store is not None:
                # Too big to inline: store it beside the job, send only the reference.
                store.put_blob(queue, job_id, "result", dumps(result))
                answer["result_ref"] = f"blobs/{job_id}.result"
            else:
                answer["result"] = result
            kind = b"done"
            self.jobs_done += 1
        except Retry as exc:
            answer.update(error=exc.reason, type="Retry", retry=True, delay=exc.delay)
            kind = b"failed"
        except Fail as exc:
            answer.update(error=exc.reason, type="Fail", retry=False)
            kind = b"failed"
            self.jobs_failed += 1
        except LeaseLost as exc:
            log.warning("job %s/%s abandoned: %s", queue, job_id, exc)
            answer.update(error=str(exc), type="LeaseLost", retry=True)
            kind = b"failed"
        except Exception as exc:  # noqa: BLE001 - any handler error fails the attempt
            answer.update(error=f"{type(exc).__name__}: {exc}"[:4000], type=type(exc).__name__,
                          traceback=traceback.format_exc()[-8000:], retry=True)
            kind = b"failed"
            self.jobs_failed += 1
            log.info("job %s/%s attempt %d failed: %s: %s", queue, job_id, attempt,
                     type(exc).__name__, exc)
        with self._lock:
            self._running.pop((queue, job_id), None)
        self.send(kind, answer)

    # -- what a Job asks of its worker (ckptd.worker.job.JobHost) ---------------------------

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        """Bytes of a batch's source file (from the store, or through the daemon)."""
        return self.data.source_range(queue, batch, start, end)

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        """Write an output file (into the store, or through the daemon)."""
        return self.data.write_output(queue, name, data)

    def result_of(self, queue: str, job_id: str) -> Any:
        """The result of a done job (from the store, or through the daemon)."""
        return self.data.result_of(queue, job_id)

    def checkpoint(self, job: Job, seq: int, state: Any, timeout: float) -> None:
        """Send a checkpoint and wait until the daemon says it is durable."""
        event = threading.Event()
        box: list[Any] = []
        self._saved[(job.queue, job.id, seq)] = (event, box)
        self.send(b"checkpoint", {"queue": job.queue, "id": job.id, "attempt": job.attempt,
                                   "seq": seq, "state": state})
        if not event.wait(timeout):
            self._saved.pop((job.queue, job.id, seq), None)
            raise DaemonUnavailable(f"checkpoint of {job.queue}/{job.id} not confirmed "
                                    f"within {timeout:g}s")
        answer = box[0]
        if not answer["ok"]:
            raise LeaseLost(f"checkpoint of {job.queue}/{job.id} refused: {answer.get('error')}")


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass
