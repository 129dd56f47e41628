"""``ckptd serve``: the long-running daemon.

It owns two ZeroMQ sockets and one loop:

- ``control`` (ROUTER): producers and operators send requests (submit, status, retry,
  cancel, ...); workers ask it for the dispatch endpoint and fetch big payloads.
- ``dispatch`` (ROUTER): workers connect with DEALER, say hello with their free slots, and
  send heartbeats, checkpoints, progress and answers; the daemon sends each worker only as
  many jobs as it has free slots (credits), addressed to that worker.

Each turn of the loop (:meth:`Daemon.step`) reads what arrived, lets the engine decide, applies
the resulting store operations as one group (one sync in ``batch`` mode), and only then sends
replies and jobs: "accepted" and "done" are said after the sync.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, ConfigError, JobNotFound, ProtocolError, StoreError
from ckptd.core.states import State, parse_state
from ckptd.daemon.engine import Engine
from ckptd.daemon.systemd import Notifier
from ckptd.store import Store, is_local, store_from_settings
from ckptd.store.admin import StoreAdmin, load_payload
from ckptd.wire import protocol
from ckptd.wire.endpoints import check_bind, port_of
from ckptd.wire.protocol import Body
from ckptd.wire.security import CurveServer, SocketGuard
from ckptd.wire.uploads import Uploads

log = logging.getLogger(__name__)

MAX_CONTROL_PER_STEP = 1000
MAX_WORKER_MESSAGES_PER_STEP = 5000
IDLE_POLL = 0.25  # longest sleep of the loop, so timers stay punctual
DROP_LOG_INTERVAL = 10.0
NEW_QUEUE_WATCH_TIMEOUT = 5.0


@dataclass
class Waiter:
    """A ``wait`` request parked until its jobs end or its deadline passes."""

    identity: bytes
    queue: str
    ids: list[str] | None
    deadline: float


class Daemon:
    """The daemon. ``start()`` binds and recovers; ``step()`` is one turn; ``run()`` loops."""

    def __init__(self, settings: Settings, store: Store | None = None, *,
                 clock: Callable[[], float] = time.time, ready_file: str | None = None
                 ) -> None:
        self.settings = settings
        self.store = store or store_from_settings(settings)
        self.clock = clock
        self.ready_file = ready_file
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self.engine = Engine(self.store, settings, name=self.name)
        self.admin = StoreAdmin(self.store, settings, clock)
        self.uploads = Uploads()  # files sent in parts by submit-file --connect
        self.notifier = Notifier()
        self.drops: Counter[str] = Counter()
        self.waiters: list[Waiter] = []
        self.endpoints: dict[str, str] = {}
        self.started_at = 0.0
        self.stopping_since: float | None = None
        self.stop_now = False
        self.reload_requested = False
        self.config_file: str | None = None
        self.config_flags: dict[str, Any] = {}
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._control: zmq.Socket[bytes] | None = None
        self._dispatch: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._watcher: Any = None
        self._scan_results: deque[dict[str, Any]] = deque()
        self._scan_thread: threading.Thread | None = None
        self._timers: dict[str, float] = {}
        self._last_drop_log = 0.0
        self._busy = False
        self._new_queues: dict[str, float] = {}  # queue -> until when to try watching it
        self._replies: list[tuple[bytes, list[bytes]]] = []
        self._guard: SocketGuard | None = None
        self.telemetry: Any = None  # ckptd.httpserver.Telemetry when metrics_port is set
        self.role: Any = None  # ckptd.bucket_role.BucketRole on a bucket store
        if not is_local(settings.root):
            from ckptd.daemon.bucket_role import BucketRole

            self.role = BucketRole(self)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets, rebuild the index from the store, start watching, say ready."""
        now = self.clock()
        self.started_at = now
        guard = SocketGuard(CurveServer.from_settings(self.settings))  # loads and checks keys
        check_bind(self.settings.control, self.settings)
        check_bind(self.settings.dispatch, self.settings)
        self._ctx = zmq.Context()
        guard.start(self._ctx)  # the ZAP handler exists before any socket is bound
        self._guard = guard
        self._control = self._bind(zmq.ROUTER, self.settings.control, "control")
        self._dispatch = self._bind(zmq.ROUTER, self.settings.dispatch, "dispatch")
        self._dispatch.setsockopt(zmq.ROUTER_MANDATORY, 1)  # know when a worker is gone
        self._dispatch.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker takes over
        self._poller.register(self._control, zmq.POLLIN)
        self._poller.register(self._dispatch, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        for sock in guard.pollables():
            self._poller.register(sock, zmq.POLLIN)
        if self.role is not None:
            self.role.start(now)  # the leader lease (or standby), then recovery
        else:
            started = time.monotonic()
            findings = self.engine.recover(now)
            counts = {q: i.counts() for q, i in self.engine.queues.items()}
            log.info("recovered the index from %s in %.3fs", self.store.url,
                     time.monotonic() - started,
                     extra={"fields": {"queues": len(counts), "repairs": len(findings),
                                       "pending": sum(c["pending"] for c in counts.values()),
                                       "claimed": sum(c["claimed"] for c in counts.values())}})
        if is_local(self.settings.root):
            from ckptd.daemon.watch import make_watcher

            self._watcher = make_watcher(self.store.url, self.wake, self.settings.watcher,
                                         self.settings.dir_mode)
            self._watcher.start(sorted(self.engine.queues))
            fd = self._watcher.fileno()
            if fd is not None:
                self._poller.register(fd, zmq.POLLIN)
        self._schedule_all(now)
        if self.settings.metrics_port:
            from ckptd.daemon.http.server import Telemetry

            self.telemetry = Telemetry(self, self.settings.metrics_bind,
                                       self.settings.metrics_port)
            self.telemetry.start(now)
        status = self._status_line()
        self.notifier.ready(status)
        if self.ready_file:
            self._write_ready_file()
        log.info("serving", extra={"fields": {"control": self.endpoints["control"],
                                              "dispatch": self.endpoints["dispatch"],
                                              "root": self.store.url,
                                              "fsync": self.settings.fsync.value}})

    def _bind(self, kind: int, endpoint: str, name: str) -> zmq.Socket[bytes]:
        assert self._ctx is not None
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 1000 if name == "control" else 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.settings.max_message_size)
        sock.setsockopt(zmq.SNDHWM, 100_000)  # credits bound what is queued; never block
        sock.setsockopt(zmq.RCVHWM, 100_000)
        if self._guard is not None:
            self._guard.secure(sock, name)  # CURVE server, handshake monitor
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise ConfigError(f"cannot bind the {name} socket to {endpoint}: {exc}; is another "
                              "ckptd running, or is the address wrong?") from None
        self.endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def _write_ready_file(self) -> None:
        assert self.ready_file is not None
        info = {"pid": os.getpid(), "control": self.endpoints["control"],
                "dispatch": self.endpoints["dispatch"], "root": self.store.url}
        tmp = f"{self.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w") as handle:
            json.dump(info, handle)
        os.replace(tmp, self.ready_file)

    def close(self) -> None:
        """Stop the watcher and close the sockets. Idempotent."""
        if self.telemetry is not None:
            self.telemetry.close()
            self.telemetry = None
        if self._watcher is not None:
            fd = self._watcher.fileno()
            if fd is not None:
                self._poller.unregister(fd)
            self._watcher.stop()
            self._watcher = None
        if self._scan_thread is not None:
            self._scan_thread.join(timeout=10)
            self._scan_thread = None
        if self.role is not None:
            self.role.close()  # gives the leader lease back
        for sock in (self._control, self._dispatch):
            if sock is not None and not sock.closed:
                try:
                    self._poller.unregister(sock)
                except KeyError:
                    pass
                sock.close()
        self._control = self._dispatch = None
        if self._guard is not None:
            self._guard.close(self._poller)
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        self.notifier.close()
        self.store.close()

    def wake(self) -> None:
        """Make the loop's poll return now (safe from any thread and signal handlers)."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full, so the loop will wake anyway

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: drain then stop (twice: stop now); SIGHUP: reload settings."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self.stopping_since is not None:
            self.stop_now = True
        else:
            self.stopping_since = self.clock()

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.reload_requested = True

    def request_stop(self) -> None:
        """Begin a graceful stop, as SIGTERM does."""
        if self.stopping_since is None:
            self.stopping_since = self.clock()
        self.wake()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; return the exit code (0 after a clean stop)."""
        self.install_signal_handlers()
        self.start()
        failures = 0
        try:
            while not self.finished():
                try:
                    self.step()
                    failures = 0
                except Exception:  # a bug must not stop the daemon: log it, back off, go on
                    failures += 1
                    self.engine.counters["loop_errors"] = \
                        self.engine.counters.get("loop_errors", 0) + 1
                    log.exception("unexpected error in the loop (%d in a row)", failures)
                    time.sleep(min(5.0, 0.05 * 2 ** min(failures, 7)))
        finally:
            self.notifier.stopping("stopped")
            self.close()
        log.info("stopped")
        return 0

    def finished(self) -> bool:
        """True when the daemon should leave its loop (stop now, or the drain is over)."""
        if self.stop_now:
            return True
        if self.stopping_since is None:
            return False
        if self.engine.dispatching:
            self.engine.dispatching = False
            self.notifier.stopping("draining")
            log.info("stopping: no new dispatch; waiting up to %gs for running jobs",
                     self.settings.drain_timeout,
                     extra={"fields": {"in_flight": self._in_flight()}})
        if self._in_flight() == 0:
            return True
        if self.clock() - self.stopping_since >= self.settings.drain_timeout:
            log.warning("drain timeout: %d job(s) stay claimed and come back after restart",
                        self._in_flight())
            return True
        return False

    def _in_flight(self) -> int:
        """Claimed jobs that a connected worker is running (an answer may still come)."""
        return sum(len(w.running) for w in self.engine.workers.values())

    def step(self, timeout: float | None = None) -> None:
        """One turn: read, decide, apply the group of store ops, then send and reply."""
        if timeout is None:
            timeout = 0.0 if self._busy else self._idle_timeout()
        events = dict(self._poller.poll(int(timeout * 1000)))
        now = self.clock()
        if events.get(self._wake_r):
            self._drain_wake_pipe()
        if self._guard is not None:
            for socket_name, reason in self._guard.handle(events):
                self._drop(socket_name, reason, now)  # refused handshakes count as drops
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        if self.role is not None and not self.role.serving(now, events):
            return  # a standby: the role answered the control socket; nothing else runs
        if self._watcher is not None:
            self._read_watch_events(now)
            if self._new_queues:
                self._watch_new_queues(now)
        self._read_scan_results()
        read = 0
        if self._control is not None and events.get(self._control):
            read += self._read_control(now)
        if self._dispatch is not None and events.get(self._dispatch):
            read += self._read_workers(now)
        engine = self.engine
        engine.expire_leases(now)
        engine.promote_delayed(now)
        claimed = (engine.dispatch(now, self.settings.message_inline_limit)
                   if self.role is None or self.role.may_dispatch(now) else 0)
        self.commit()
        if engine.ended:
            engine.ended.clear()
            if self.waiters:
                self._check_waiters(now)
        self._timers_due(now)
        self._busy = bool(read) or bool(claimed) or bool(engine.txn.ops)

    def commit(self) -> None:
        """Apply the round's store ops as one group, run their callbacks, send the outbox."""
        engine = self.engine
        txn = engine.txn
        if txn.ops:
            engine.txn = type(txn)()
            try:
                outcomes = (self.store.apply(txn.ops) if self.role is None
                            else self.role.apply(txn))  # fenced; keeps what must be retried
            except Exception as exc:  # a backend bug must not kill the loop; nothing is acked
                log.exception("store apply failed")
                error = StoreError(f"store failure: {exc}")
                outcomes = [error] * len(txn.ops)
            for callback, outcome in zip(txn.callbacks, outcomes):
                if callback is not None:
                    try:
                        callback(outcome)
                    except Exception:
                        log.exception("callback failed")
        if self._replies:
            replies, self._replies = self._replies, []
            for identity, frames in replies:
                self._send_control(identity, frames)
        if engine.outbox:
            self._send_to_workers(engine.outbox)
            engine.outbox = []
            if engine.txn.ops:  # a worker that vanished gave its jobs back
                self.commit()

    def _send_control(self, identity: bytes, frames: list[bytes]) -> None:
        assert self._control is not None
        try:
            self._control.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client left; its answer has nobody to go to
            log.debug("control reply not sent: %s", exc)

    def _send_to_workers(self, outbox: list[tuple[bytes, bytes, Body]]) -> None:
        """Send each worker its messages of this round as one batch."""
        assert self._dispatch is not None
        grouped: dict[bytes, list[tuple[bytes, Body]]] = {}
        for identity, kind, body in outbox:
            grouped.setdefault(identity, []).append((kind, body))
        now = self.clock()
        for identity, messages in grouped.items():
            try:
                self._dispatch.send_multipart([identity, *protocol.batch(messages)],
                                              zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.info("worker unreachable (%s): its jobs go back to pending", exc)
                for kind, body in messages:
                    if kind == b"job":
                        self.engine.undeliverable(identity, body, now)

    def _idle_timeout(self) -> float:
        now = self.clock()
        wake_at = [now + IDLE_POLL]
        nxt = self.engine.next_deadline()
        if nxt is not None:
            wake_at.append(nxt)
        wake_at.extend(t for name, t in self._timers.items() if name != "waiters")
        if self._new_queues:
            wake_at.append(now + 0.02)  # a new queue's pending/ is about to appear
        if self.waiters:
            wake_at.append(self._timers["waiters"])
            wake_at.append(min(w.deadline for w in self.waiters))
        return max(0.0, min(wake_at) - now)

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- timers ----------------------------------------------------------------------------

    def _schedule_all(self, now: float) -> None:
        self._timers = {
            "workers": now + self.settings.heartbeat,
            "rescan": now + (self.settings.rescan_interval if is_local(self.settings.root)
                             else self.settings.poll_interval),
            "status": now + 5.0,
            "waiters": now + 0.05,
        }
        if self.notifier.watchdog_interval:
            self._timers["watchdog"] = now

    def _timers_due(self, now: float) -> None:
        timers = self._timers
        if self.telemetry is not None:  # snapshots for /metrics, questions from the pages
            self.telemetry.tick(now)
        if self.waiters and now >= timers["waiters"]:
            timers["waiters"] = now + 0.05
            self._check_waiters(now)
        if now >= timers["workers"]:
            timers["workers"] = now + self.settings.heartbeat
            self.engine.forget_silent_workers(now)
        if now >= timers["rescan"]:
            interval = (self.settings.rescan_interval if is_local(self.settings.root)
                        else self.settings.poll_interval)
            timers["rescan"] = now + interval
            self._start_rescan()
        if "watchdog" in timers and now >= timers["watchdog"]:
            timers["watchdog"] = now + (self.notifier.watchdog_interval or 10.0)
            self.notifier.watchdog(now)
        if now >= timers["status"]:
            timers["status"] = now + 5.0
            self.notifier.status(self._status_line())
            self._log_drops(now)

    def _status_line(self) -> str:
        counts = [i.counts() for i in self.engine.queues.values()]
        total = {k: sum(c[k] for c in counts) for k in ("pending", "claimed", "done", "failed")}
        return (f"{len(self.engine.queues)} queue(s), {len(self.engine.workers)} worker(s); "
                f"pending {total['pending']}, claimed {total['claimed']}, "
                f"done {total['done']}, failed {total['failed']}")

    # -- rescans ---------------------------------------------------------------------------

    def _start_rescan(self) -> None:
        """List the store in a thread; the loop reconciles the result when it is ready."""
        if self._scan_thread is not None and self._scan_thread.is_alive():
            return
        marks = {name: (index.done, index.failed) for name, index in self.engine.queues.items()}
        for index in self.engine.queues.values():
            index.added_since_scan.clear()

        def scan() -> None:
            try:
                if self.role is not None:  # buckets: paged, incremental, resolves leftovers
                    self._scan_results.append(self.role.scan(marks))
                    self.wake()
                    return
                result: dict[str, Any] = {}
                for queue in self.store.queues():
                    result[queue] = {
                        "pending": self.store.ids(queue, State.PENDING),
                        "done": self.store.count(queue, State.DONE),
                        "failed": self.store.count(queue, State.FAILED),
                    }
                self._scan_results.append({"queues": result, "marks": marks})
            except CkptdError as exc:
                log.warning("rescan of %s failed: %s", self.store.url, exc)
                if self.role is not None:
                    self.role.health.failed(exc, self.clock())
            self.wake()

        self._scan_thread = threading.Thread(target=scan, name="ckptd-rescan", daemon=True)
        self._scan_thread.start()

    def _read_scan_results(self) -> None:
        while self._scan_results:
            scan = self._scan_results.popleft()
            if self.role is not None:
                self.role.reconcile(scan, self.clock())
                continue
            for queue, listed in scan["queues"].items():
                index = self.engine.queue(queue)
                self.engine.reconcile_pending(queue, listed["pending"])
                done0, failed0 = scan["marks"].get(queue, (0, 0))
                # What the loop moved while the listing ran is added on top of the listing.
                index.done = listed["done"] + max(0, index.done - done0)
                index.failed = listed["failed"] + max(0, index.failed - failed0)
                if self._watcher is not None:
                    self._watcher.watch_queue(queue)

    def _watch_new_queues(self, now: float) -> None:
        """Watch the pending/ of queues that appeared; list it once the watch is on.

        A producer creates ``<queue>/`` and then its folders and files: the watch can only
        begin once ``pending/`` exists, and what was put there before must be listed.
        """
        assert self._watcher is not None
        for queue, deadline in list(self._new_queues.items()):
            if self._watcher.watch_queue(queue) or now > deadline:
                del self._new_queues[queue]
                self._timers["rescan"] = now

    def _read_watch_events(self, now: float) -> None:
        assert self._watcher is not None
        engine = self.engine
        for kind, queue, job_id in self._watcher.drain():
            if kind == "added":
                engine.pending_appeared(queue, job_id)
            elif kind == "removed":
                if not self.store.exists(queue, State.PENDING, job_id):
                    engine.pending_vanished(queue, job_id)
            elif kind == "queue":
                engine.queue(queue)
                self._new_queues[queue] = now + NEW_QUEUE_WATCH_TIMEOUT
            elif kind == "overflow":
                log.warning("the watcher lost events (queue overflow); rescanning")
                self._timers["rescan"] = now

    # -- reload ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the settings that can change while running (SIGHUP)."""
        from ckptd.core.config import load_settings

        self.notifier.reloading()
        try:
            fresh = load_settings(self.config_file, flags=self.config_flags)
        except CkptdError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
            self.notifier.ready(self._status_line())
            return
        fixed = ("root", "control", "dispatch", "fsync", "metrics_port", "watcher", "file_mode",
                 "metrics_bind", "dir_mode", "storage_options", "curve_secret_key", "insecure",
                 "s3_endpoint_url", "store_timeout", "store_concurrency", "leader_lease")
        changed = [name for name in fixed if getattr(fresh, name) != getattr(self.settings, name)]
        if changed:
            log.warning("reload: %s can only change with a restart; keeping the old value(s)",
                        ", ".join(changed))
            fresh = _replace(fresh, {name: getattr(self.settings, name) for name in changed})
        self.settings = fresh
        self.engine.settings = fresh
        self.engine.flows.settings = fresh
        self.admin.settings = fresh
        if self._guard is not None:
            self._guard.reload(fresh.authorized_keys)  # a removed key is refused from now on
        logging.getLogger().setLevel(fresh.log_level.upper())
        log.info("reloaded the settings")
        self.notifier.ready(self._status_line())

    # -- workers ---------------------------------------------------------------------------

    def _read_workers(self, now: float) -> int:
        assert self._dispatch is not None
        sock = self._dispatch
        count = 0
        limit = self.settings.max_message_size
        schemas = protocol.WORKER_MESSAGES
        while count < MAX_WORKER_MESSAGES_PER_STEP:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            identity = frames[0]
            try:
                messages = protocol.decode_many(frames[1:], schemas, limit)
            except ProtocolError as exc:
                self._drop("dispatch", exc.reason, now)
                continue
            for kind, body in messages:
                try:
                    self._worker_message(identity, kind, body, now)
                except CkptdError as exc:
                    log.debug("refused a %s message: %s", kind.decode(), exc)
                    self._drop("dispatch", "refused", now)
                except Exception:  # a bug must cost one message, never the daemon
                    self._internal_error("dispatch", now)
        return count

    def _worker_message(self, identity: bytes, kind: bytes, body: Body, now: float) -> None:
        engine = self.engine
        if kind == b"hello":
            engine.hello(identity, body, now)
            return
        worker = engine.worker_for(identity, now)
        if kind == b"done":
            engine.done(worker, body, now)
        elif kind == b"failed":
            engine.failed(worker, body, now)
        elif worker is None:
            self._drop("dispatch", "unknown_worker", now)
        elif kind == b"heartbeat":
            engine.heartbeat(worker, body, now)
        elif kind == b"checkpoint":
            engine.checkpoint(worker, body, now)
        elif kind == b"progress":
            engine.progress(worker, body, now)
        elif kind == b"bye":
            engine.forget_worker(worker, "said goodbye")

    def _drop(self, socket_name: str, reason: str, now: float) -> None:
        self.drops[f"{socket_name}:{reason}"] += 1
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._log_drops(now)

    def _internal_error(self, socket_name: str, now: float) -> None:
        """Count an unexpected exception while handling a message; log it, rate-limited."""
        key = f"{socket_name}:internal_error"
        if self.drops[key] == 0 or now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.exception("unexpected error while handling a %s message; dropped it",
                          socket_name)
        self._drop(socket_name, "internal_error", now)

    def _log_drops(self, now: float) -> None:
        if self.drops and now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning("dropped malformed messages so far", extra={"fields": dict(self.drops)})

    # -- control ---------------------------------------------------------------------------

    def _read_control(self, now: float) -> int:
        assert self._control is not None
        sock = self._control
        count = 0
        while count < MAX_CONTROL_PER_STEP:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            identity, rest = frames[0], frames[1:]
            try:
                kind, body = protocol.decode_request(rest, self.settings.max_message_size)
            except ProtocolError as exc:
                self._drop("control", exc.reason, now)
                if len(rest) == 4 and rest[0] == b"":  # it looks like a request: say why
                    self._reply(identity, exc)
                continue
            try:
                self._handle(identity, kind, body, now)
            except CkptdError as exc:
                self._reply(identity, exc)
            except (ValueError, TypeError) as exc:
                self._reply(identity, CkptdError(str(exc)))
            except Exception:  # a bug must cost one request, never the daemon
                self._internal_error("control", now)
                self._reply(identity, CkptdError("internal error; see the daemon's log"))
        return count

    def _reply(self, identity: bytes, answer: Body | CkptdError) -> None:
        if isinstance(answer, CkptdError):
            frames = protocol.reply_error(type(answer).__name__, str(answer), answer.exit_code)
        else:
            try:
                frames = protocol.reply_ok(answer)
            except ValueError as exc:
                frames = protocol.reply_error("CkptdError", str(exc), 1)
        self._replies.append((identity, frames))

    def _replier(self, identity: bytes) -> Callable[[Body | CkptdError], None]:
        return lambda answer: self._reply(identity, answer)

    def _handle(self, identity: bytes, kind: bytes, body: Body, now: float) -> None:
        engine = self.engine
        if kind == b"submit":
            if self.stopping_since is not None:
                raise CkptdError("the daemon is stopping; submit again when it is back")
            engine.submit(body, now, self._replier(identity))
        elif kind == b"submit_many":
            self._submit_many(identity, body, now)
        elif kind == b"status":
            answer = engine.status(body.get("queue"), now)
            answer["drops"] = dict(self.drops)
            answer["daemon"] = {"name": self.name, "uptime_s": round(now - self.started_at, 3),
                                "fsync": self.settings.fsync.value,
                                "lease_s": self.settings.lease,
                                "stopping": self.stopping_since is not None}
            if self.role is not None:  # role, leader lease, "store unavailable"
                answer["daemon"].update(self.role.status(now))
            self._reply(identity, answer)
        elif kind == b"ping":
            self._reply(identity, {"pong": True, "daemon": self.name})
        elif kind == b"endpoints":
            self._reply(identity, {"dispatch": self.endpoints["dispatch"],
                                   "dispatch_port": port_of(self.endpoints["dispatch"]),
                                   "root": self.store.url})
        elif kind == b"ls":
            state = parse_state(body["state"]) if body.get("state") else None
            rows = self.admin.ls(body["queue"], state)
            self._reply(identity, {"jobs": [[s.value, i] for s, i in rows]})
        elif kind == b"show":
            info = self.admin.show(body["queue"], body["id"])
            info["lease"] = engine.lease_info(body["queue"], body["id"], now)
            self._reply(identity, info)
        elif kind == b"retry":
            engine.retry(body["queue"], body.get("ids"), body.get("attempts"),
                         self._replier(identity))
        elif kind == b"cancel":
            engine.cancel(body["queue"], body["id"], now, self._replier(identity))
        elif kind == b"purge":
            count = engine.purge(body["queue"], parse_state(body["state"]),
                                 body.get("older_than"), now)
            self._reply(identity, {"count": count})
        elif kind == b"fetch":
            self._reply(identity, self._fetch(body))
        elif kind == b"output":
            where = self.store.put_output(body["queue"], body["name"], body["text"].encode())
            self._reply(identity, {"location": where})
        elif kind == b"wait":
            self._wait(identity, body, now)
        elif kind == b"upload":
            self._reply(identity, {"size": self.uploads.add(body, now)})
        elif kind == b"submit_file":
            self._submit_file(identity, body, now)

    def _submit_many(self, identity: bytes, body: Body, now: float) -> None:
        if self.stopping_since is not None:
            raise CkptdError("the daemon is stopping; submit again when it is back")
        queue = body["queue"]
        items = body["jobs"]
        answers: list[Any] = [None] * len(items)
        left = [len(items)]

        def one(position: int) -> Callable[[Body | CkptdError], None]:
            def reply(answer: Body | CkptdError) -> None:
                answers[position] = (answer["id"] if isinstance(answer, dict)
                                     else {"error": str(answer)})
                left[0] -= 1
                if left[0] == 0:
                    self._reply(identity, {"ids": answers})
            return reply

        for position, item in enumerate(items):
            request = dict(item)
            request["queue"] = queue
            self.engine.submit(request, now, one(position))

    def _submit_file(self, identity: bytes, body: Body, now: float) -> None:
        """Split and store an uploaded file as submit-file --root does (in this turn: about
        a second per million lines on a local disk)."""
        if self.stopping_since is not None:
            raise CkptdError("the daemon is stopping; submit again when it is back")
        chunk, attempts = body.get("chunk", 1000), body.get("max_attempts")
        if chunk < 1 or (attempts is not None and attempts < 1):  # types: protocol.py
            raise CkptdError("chunk and max_attempts must be at least 1")
        data = self.uploads.take(body, now)
        answer = self.admin.submit_file(body["queue"], data, fmt=body["format"], chunk=chunk,
                                        batch=body.get("batch"), then=body.get("then"),
                                        max_attempts=attempts,
                                        source_name=body.get("source_name"))
        log.info("submit-file", extra={"fields": {"queue": body["queue"], "batch": answer.batch,
                                                  "jobs": answer.jobs, "new": answer.created,
                                                  "bytes": len(data)}})
        self._reply(identity, dataclasses.asdict(answer))

    def _fetch(self, body: Body) -> Body:
        queue, job_id, what = body["queue"], body["id"], body["what"]
        if what == "payload":
            for state in (State.CLAIMED, State.PENDING, State.DONE, State.FAILED):
                try:
                    from ckptd.core import jobs

                    job = jobs.decode(self.store.read(queue, state, job_id), queue, job_id)
                except JobNotFound:
                    continue
                return {"payload": load_payload(self.store, job)}
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        if what == "state":
            raw = self.store.read_checkpoint(queue, job_id)
            record = json.loads(raw) if raw is not None else None
            return {"state": record.get("state") if isinstance(record, dict) else None}
        if what == "result":
            from ckptd.core import jobs

            job = jobs.decode(self.store.read(queue, State.DONE, job_id), queue, job_id)
            if job.get("result_ref"):
                return {"result": json.loads(self.store.read_blob(queue, job_id, "result"))}
            return {"result": job.get("result")}
        if what == "source":  # a range of a batch's source file, as text
            start, end = int(body.get("start") or 0), int(body.get("end") or 0)
            if end - start > self.settings.max_message_size // 2:
                raise CkptdError(f"range of {end - start} bytes is too big to fetch at once")
            data = self.store.read_blob_range(queue, job_id, "source", start, end)
            return {"text": data.decode(errors="replace")}
        raise CkptdError(f"cannot fetch {what!r}: expected payload, state, result or source")

    # -- wait ------------------------------------------------------------------------------

    def _wait(self, identity: bytes, body: Body, now: float) -> None:
        queue, ids = body["queue"], body.get("ids")
        if ids:
            for job_id in ids:
                if self.engine.where(queue, job_id) is None:
                    raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        elif queue not in self.engine.queues:
            raise JobNotFound(f"no queue {queue!r}")
        waiter = Waiter(identity, queue, ids, now + float(body["timeout"]))
        if not self._answer_waiter(waiter, now):
            self.waiters.append(waiter)

    def _check_waiters(self, now: float) -> None:
        self.waiters = [w for w in self.waiters if not self._answer_waiter(w, now)]
        self.commit()

    def _answer_waiter(self, waiter: Waiter, now: float) -> bool:
        index = self.engine.queue(waiter.queue)
        if waiter.ids is None:
            open_jobs = len(index.pending) + len(index.claimed)
            finished = open_jobs == 0
            answer: Body = {"counts": index.counts(), "open": open_jobs}
        else:
            open_ids = [i for i in waiter.ids if i in index.pending or i in index.claimed
                        or self.engine.where(waiter.queue, i) in ("pending", "claimed")]
            finished = not open_ids
            answer = {"open": open_ids}
        if finished or now >= waiter.deadline:
            if waiter.ids is not None and finished:
                answer["states"] = {i: self.engine.where(waiter.queue, i) for i in waiter.ids}
            answer["timed_out"] = not finished
            self._reply(waiter.identity, answer)
            return True
        return False


def _replace(settings: Settings, values: dict[str, Any]) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **values)
