"""``ckptd serve``: the long-running daemon.

It owns two ZeroMQ sockets and one loop:

- ``control`` (ROUTER): requests of producers, operators and workers
  (:mod:`ckptd.daemon.requests`).
- ``dispatch`` (ROUTER): workers connect with DEALER, say hello with their free slots, and
  send heartbeats, checkpoints, progress and answers; the daemon sends each worker only as
  many jobs as it has free slots (credits), addressed to that worker.

Each turn of the loop (:meth:`Daemon.step`) reads what arrived, lets the engine decide, applies
the resulting store operations as one group (one sync in ``batch`` mode), and only then sends
replies and jobs: "accepted" and "done" are said after the sync.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import zmq

from ckptd.core.config import FsyncMode, LiveSettings, Settings, reloaded_settings
from ckptd.core.errors import CkptdError
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.binding import bind_socket, write_ready_file
from ckptd.daemon.cluster.bucket_role import BucketRole
from ckptd.daemon.cluster.leadership import Leading
from ckptd.daemon.dispatch_socket import MAX_WORKER_MESSAGES_PER_STEP, DispatchInput
from ckptd.daemon.engine.actions import Operators
from ckptd.daemon.engine.commit import commit
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.figures import build_snapshot, status_line
from ckptd.daemon.engine.group_commit import GroupCommit
from ckptd.daemon.engine.groups import Groups, run_callbacks
from ckptd.daemon.engine.store_guard import StoreGuard
from ckptd.daemon.requests import MAX_CONTROL_PER_STEP, Control
from ckptd.daemon.systemd import Notifier, credential_copy
from ckptd.daemon.telemetry.drops import Drops
from ckptd.daemon.telemetry.snapshot import Snapshot
from ckptd.daemon.watch.scans import Scans
from ckptd.daemon.watch.watcher import Watcher
from ckptd.store import Store, is_local, store_from_settings
from ckptd.store.admin import StoreAdmin
from ckptd.store.local.grouped import GroupedWrites
from ckptd.wire import protocol
from ckptd.wire.endpoints import check_bind
from ckptd.wire.frames import NOBLOCK, send_frames
from ckptd.wire.protocol import Body
from ckptd.wire.security import CurveServer, SocketGuard

if TYPE_CHECKING:  # aiohttp is imported only by a daemon that serves HTTP (metrics_port)
    from ckptd.daemon.telemetry.http_server import Telemetry

log = logging.getLogger(__name__)

IDLE_POLL = 0.25  # longest sleep of the loop, so timers stay punctual
WAITERS_INTERVAL = 0.05
REFUSALS_INTERVAL = 0.25  # refused handshakes are counted this often (not polled each turn)

class Daemon:
    """The daemon. ``start()`` binds and recovers; ``step()`` is one turn; ``run()`` loops."""

    def __init__(self, settings: Settings, store: Store | None = None, *,
                 clock: Callable[[], float] = time.time, ready_file: str | None = None
                 ) -> None:
        self.live = LiveSettings(settings)
        self.store = store or store_from_settings(settings)
        self.clock = clock
        self.ready_file = ready_file
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self.engine = Engine(self.store, self.live, name=self.name, wake=self.wake)
        self.operators = Operators(self.engine)
        self.admin = StoreAdmin(self.store, self.live, clock)
        self.notifier = Notifier()
        self.drops = Drops()
        self.endpoints: dict[str, str] = {}
        self.started_at = 0.0
        self.stopping_since: float | None = None
        self.stop_now = False
        self.reload_requested = False
        self.config_file: str | None = None
        self.config_flags: dict[str, object] = {}  # the command line's settings
        self.control = Control(self.engine, self.operators, self.admin, self.live,
                               endpoints=self.endpoints, daemon_info=self._daemon_info,
                               stopping=lambda: self.stopping_since is not None,
                               drop=self.drops.count, internal_error=self.drops.internal_error,
                               waiting_op=lambda q, i, now: self.guard.waiting(q, i, now))
        self.guard = StoreGuard(self.store, clock, self.wake)
        self.overlap: GroupCommit | None = None  # fsync batch on a local disk (start())
        self.role: BucketRole | None = None
        if not is_local(settings.root):
            self.role = BucketRole(self.store, self.live, self.engine, self.guard,
                                   name=self.name, wake=self.wake, clock=clock,
                                   endpoints=lambda: self.endpoints)
            self.engine.sweeper.may_write = self.role.writable  # retention: active only
        # On a bucket a turn's group runs while the loop goes on (daemon/engine/groups.py).
        self.groups = None if self.guard.background is None else Groups(
            self.engine, self.guard, lambda: self.role is None or self.role.writable())
        self.telemetry: Telemetry | None = None
        self.scans = Scans(self.store, self.engine, self.role, None, self.live, wake=self.wake,
                           clock=clock)
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._control: zmq.Socket[bytes] | None = None
        self._dispatch: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._watcher: Watcher | None = None
        self._timers: dict[str, float] = {}
        self._busy = False
        self._watch_fd: int | None = None  # the watcher's descriptor, read when it is ready
        self._guard: SocketGuard | None = None
        self.leading = Leading(self.store, self.live, self.engine, self.role, self.control)
        self.worker_input = DispatchInput(self.engine, self.leading, self.control, self.drops)

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload replaces them in :attr:`live`, for every part)."""
        return self.live.current

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets, rebuild the index from the store, start watching, say ready."""
        now = self.clock()
        self.started_at = now
        settings = self.settings
        guard = SocketGuard(CurveServer.from_settings(settings))  # loads and checks keys
        check_bind(settings.control, settings)
        check_bind(settings.dispatch, settings)
        if self.role is None:
            # One daemon leads a local root (or, with lead, some of its queues): a second
            # one is refused here, before it binds or reads anything (the kernel releases
            # the locks when this process dies).
            self.leading.take_local()
        self._ctx = zmq.Context()
        guard.start(self._ctx)  # the ZAP handler exists before any socket is bound
        self._guard = guard
        self._control = self._bind(zmq.ROUTER, settings.control, "control")
        self._dispatch = self._bind(zmq.ROUTER, settings.dispatch, "dispatch")
        self._dispatch.setsockopt(zmq.ROUTER_MANDATORY, 1)  # know when a worker is gone
        self._dispatch.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker takes over
        self._poller.register(self._control, zmq.POLLIN)
        self._poller.register(self._dispatch, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        for sock in guard.pollables():
            self._poller.register(sock, zmq.POLLIN)
        self.name = self.leading.named(self.endpoints)
        self.leading.describe({"pid": os.getpid(), "host": os.uname().nodename,
                               "started": utc_iso(now), "token": self.control.token})
        self.leading.start(now, self._ctx, self._poller)  # leases and routing, where shared
        if self.role is None:
            from ckptd.daemon.watch.watcher import make_watcher

            # Watch before listing: a job written meanwhile is in the listing or an event.
            self._watcher = make_watcher(self.store.url, self.wake, settings.watcher,
                                         settings.dir_mode)
            self._watcher.start([q for q in self.store.queues() if self.engine.index.leads(q)])
            self.scans.recover(self.engine.begin_recovery(), now)  # lists in a thread
            self.store.keep_own_pending(self._watcher.reports_in_order)
            if isinstance(self.store, GroupedWrites) and settings.fsync is FsyncMode.BATCH:
                ix = self.engine.index
                self.overlap = GroupCommit(self.store, self.wake, self.guard.settle,
                                           ix.note_apply, ix.in_flight,
                                           self.engine.pending_appeared)
                overlap = self.overlap
                self.scans.in_flight = lambda: len(overlap) > 0
            self.scans.watcher = self._watcher
            fd = self._watch_fd = self._watcher.fileno()
            if fd is not None:
                self._poller.register(fd, zmq.POLLIN)
        self._schedule_all(now)
        if settings.metrics_port:
            from ckptd.daemon.telemetry.http_server import Telemetry

            self.telemetry = Telemetry(self.live, self.store, snapshot=self._snapshot,
                                       request=self.control.local,
                                       lease=self.operators.lease_info, wake=self.wake,
                                       clock=self.clock)
            self.telemetry.start(now)
        self.notifier.ready(self._status_line())
        if self.ready_file:
            write_ready_file(self.ready_file, {
                "pid": os.getpid(), "control": self.endpoints["control"],
                "dispatch": self.endpoints["dispatch"], "root": self.store.url})
        log.info("serving", extra={"fields": {"control": self.endpoints["control"],
                                              "dispatch": self.endpoints["dispatch"],
                                              "root": self.store.url,
                                              "fsync": settings.fsync.value}})

    def _bind(self, kind: int, endpoint: str, name: str) -> zmq.Socket[bytes]:
        assert self._ctx is not None
        sock = bind_socket(self._ctx, kind, endpoint, name, guard=self._guard,
                           max_message_size=self.settings.max_message_size)
        self.endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def close(self) -> None:
        """Stop the watcher and close the sockets. Idempotent."""
        if self.overlap is not None:  # what is in flight is made durable and answered
            self.overlap.finish(self.engine.index.take_txn, run_callbacks)
            if self._control is not None and self._dispatch is not None:
                self._deliver()
            self.overlap = None
        if self.telemetry is not None:
            self.telemetry.close()
            self.telemetry = None
        if self._watcher is not None:
            fd = self._watcher.fileno()
            if fd is not None:
                self._poller.unregister(fd)
            self._watcher.stop()
            self._watcher = None
        self.scans.close()
        self.engine.sweeper.close()
        self.engine.off_loop.close()
        if self.groups is not None and self._control is not None:
            self.groups.finish(self._deliver, self.settings.store_timeout)  # their acks
        self.engine.log_writer.close()
        self.leading.close()  # gives the leases (or locks) back
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

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping_since is not None:
            self.stop_now = True
        else:
            self.stopping_since = self.clock()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
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
        # Rounded up: rounded down, a wait of less than a millisecond returned at once and the
        # loop spun until its next timer (a parked wait's every 50 ms: thousands of turns).
        events = dict(self._poller.poll(math.ceil(timeout * 1000)))
        now = self.clock()
        if events.get(self._wake_r):
            self._drain_wake_pipe()
        if self._guard is not None:
            self._guard.handle(events)  # ZAP requests (its refusals are read on a timer)
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        self.leading.read(events)  # replies of requests forwarded to other daemons
        self._follow_role(now)
        if self._watch_fd is None or events.get(self._watch_fd) or self.scans.new_queues:
            self.scans.read_events(now)
        if self.scans.rescan_now:
            self.scans.rescan_now = False
            self._timers["rescan"] = now
        self.scans.reconcile()
        capped = False  # a socket had more than a turn's share
        if self._control is not None and events.get(self._control):
            capped |= self.control.read(self._control, now) >= MAX_CONTROL_PER_STEP
            for identity, frames in self.control.take_replies(early=True):  # status, ping
                self._send_control(identity, frames)
        if self._dispatch is not None and events.get(self._dispatch):
            read = self.worker_input.read(self._dispatch, self.settings.max_message_size, now)
            capped |= read >= MAX_WORKER_MESSAGES_PER_STEP
        engine = self.engine
        engine.answers.expire_leases(now)
        engine.index.promote_delayed(now)
        engine.tick(now)  # operator controls: priorities, schedules, retention
        self.operators.tick(now)  # a slice of a bulk retry or purge
        self.guard.requeue(now, engine.txn)
        may_claim = self.guard.may_claim(now, engine.txn) and (
            self.role is None or self.role.may_dispatch(now))
        if may_claim:
            engine.dispatcher.dispatch(now, self.settings.message_inline_limit)
        # Counted only while a worker could take the jobs made ready (none: no next turn).
        ready = engine.dispatcher.ready_count() if engine.dispatcher.has_takers() else None
        wrote = bool(engine.txn.ops)
        self.commit()
        if wrote and self._watch_fd is not None:
            # The watcher's events of this turn's own renames are queued by now: read them in
            # this turn rather than wake for them into the next one.
            self.scans.read_events(now)
        if engine.ended:
            engine.forget_ended()
            if self.control.waiters:
                self.control.check_waiters(now)
                self.commit()
        self._timers_due(now)
        # Poll without sleeping only with work left: more to read, ops, jobs made ready that
        # a worker can take.
        self._busy = (capped or bool(engine.txn.ops) or self.operators.busy
                      or self._ready_grew(ready))

    def _ready_grew(self, before: int | None) -> bool:
        """Whether the turn made jobs ready that a worker with a free slot can take (a slot
        freed during the turn, ``before`` None: assume so)."""
        dispatcher = self.engine.dispatcher
        if not dispatcher.has_takers():
            return False
        return before is None or dispatcher.ready_count() > before

    def _follow_role(self, now: float) -> None:
        """Follow the leases (a bucket): recover the queues taken, drop those lost."""
        if self.leading.follow(now):
            self._schedule_all(now)

    def commit(self) -> None:
        """Apply the round's store ops as one group, run their callbacks, send the replies
        and the outbox (:func:`~ckptd.daemon.engine.commit.commit`, shared with the tests).

        Fenced on a bucket; what a store failure stopped is kept and retried. With
        ``fsync = batch`` on a local disk the groups are flushed on a thread of their own
        while the loop goes on (:mod:`~ckptd.daemon.engine.group_commit`): a group's
        callbacks run in the turn after its flush.
        """
        if self.groups is not None:  # a bucket: started now, finished at a later turn
            self.groups.commit(self._deliver)
            return
        commit(self.engine,
               lambda txn: self.guard.apply(txn, self.role is None or self.role.writable()),
               self._deliver, overlap=self.overlap)

    def _deliver(self) -> None:
        """Send the control replies (a client waits on its answer), then the outbox."""
        for identity, frames in self.control.take_replies():
            self._send_control(identity, frames)
        engine = self.engine
        if engine.outbox:
            outbox, engine.outbox = engine.outbox, []
            self._send_to_workers(outbox)  # a vanished worker's jobs go back: more ops

    def _send_control(self, identity: bytes, frames: list[bytes]) -> None:
        assert self._control is not None
        try:
            send_frames(self._control, [identity, *frames], NOBLOCK)
        except zmq.ZMQError as exc:  # the client left; its answer has nobody to go to
            log.debug("control reply not sent: %s", exc)

    def _send_to_workers(self, outbox: list[tuple[bytes, bytes, Body]]) -> None:
        """Send each worker its messages of this round as one batch (several when there are
        more than a worker accepts in one)."""
        assert self._dispatch is not None
        grouped: dict[bytes, list[tuple[bytes, Body]]] = {}
        for identity, kind, body in outbox:
            grouped.setdefault(identity, []).append((kind, body))
        now = self.clock()
        for identity, messages in grouped.items():
            for part, frames in protocol.batches(messages, True):
                try:
                    send_frames(self._dispatch, [identity, *frames], NOBLOCK)
                except zmq.ZMQError as exc:
                    lost = [body for kind, body in part if kind == b"job"]
                    # Said only when jobs were in it: else it was a worker that just left.
                    (log.info if lost else log.debug)(
                        "worker unreachable (%s): %d job(s) go back to pending", exc, len(lost))
                    for body in lost:
                        self.engine.dispatcher.undeliverable(identity, body, now)

    def _idle_timeout(self) -> float:
        now = self.clock()
        wake_at = [now + IDLE_POLL]
        nxt = self.engine.index.next_deadline()
        if nxt is not None:
            wake_at.append(nxt)
        wake_at.extend(t for name, t in self._timers.items() if name != "waiters")
        if self.scans.new_queues:
            wake_at.append(now + 0.02)  # a new queue's pending/ is about to appear
        if self.control.waiters:
            wake_at.append(self._timers["waiters"])
            deadline = self.control.next_waiter_deadline()
            if deadline is not None:
                wake_at.append(deadline)
        return max(0.0, min(wake_at) - now)

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- timers ----------------------------------------------------------------------------

    def _rescan_interval(self) -> float:
        settings = self.settings
        return settings.rescan_interval if self.role is None else settings.poll_interval

    def _schedule_all(self, now: float) -> None:
        self._timers = {
            "workers": now + self.settings.heartbeat,
            "rescan": now + self._rescan_interval(),
            "status": now + 5.0,
            "waiters": now + WAITERS_INTERVAL,
            "refusals": now + REFUSALS_INTERVAL,
        }
        if self.notifier.watchdog_interval:
            self._timers["watchdog"] = now

    def _timers_due(self, now: float) -> None:
        timers = self._timers
        if self.telemetry is not None:  # snapshots for /metrics, questions from the pages
            self.telemetry.tick(now)
        if self.control.waiters and now >= timers["waiters"]:
            timers["waiters"] = now + WAITERS_INTERVAL
            self.control.check_waiters(now)
            self.commit()
        if now >= timers["refusals"]:
            timers["refusals"] = now + REFUSALS_INTERVAL
            if self._guard is not None:  # refused handshakes count as drops
                for socket_name, reason in self._guard.refusals():
                    self.drops.count(socket_name, reason, now)
        if now >= timers["workers"]:
            timers["workers"] = now + self.settings.heartbeat
            self.engine.workers_part.forget_silent(now)
        if now >= timers["rescan"]:
            timers["rescan"] = now + self._rescan_interval()
            self.scans.start()
        if "watchdog" in timers and now >= timers["watchdog"]:
            timers["watchdog"] = now + (self.notifier.watchdog_interval or 10.0)
            self.notifier.watchdog(now)
        if now >= timers["status"]:
            timers["status"] = now + 5.0
            self.notifier.status(self._status_line())
            self.drops.log(now)
            self.leading.tidy()

    def _status_line(self) -> str:
        return status_line(self.engine)

    def _daemon_info(self, now: float) -> dict[str, object]:
        """What ``status`` says of the daemon itself (and, on a bucket, of its role)."""
        settings = self.settings
        info: dict[str, object] = {
            "name": self.name, "uptime_s": round(now - self.started_at, 3),
            "fsync": settings.fsync.value, "lease_s": settings.lease,
            "heartbeat_s": settings.heartbeat, "time": now,
            "curve": bool(settings.curve_secret_key), "role": "active",
            "stopping": self.stopping_since is not None}
        store = info["store"] = self.guard.view(now)  # available or not, ops to be retried
        if self.overlap is not None:
            store["flushes"] = self.overlap.figures()
        info["recovery"] = self.scans.recovery_view()  # listing the store while serving
        if self.role is not None:  # role, leader lease
            info.update(self.role.status(now))
        return {"drops": self.drops.as_dict(), "daemon": info}

    def _snapshot(self, now: float) -> Snapshot:
        return build_snapshot(self.engine, now, started_at=self.started_at,
                              drops=self.drops.as_dict(), stopping=self.stopping_since is not None)

    # -- reload ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the settings that can change while running (SIGHUP).

        The new settings replace the old ones in one place (:attr:`live`), which the engine,
        the flows, the store commands, the control socket and the bucket role all read.
        """
        self.notifier.reloading()
        try:
            fresh = reloaded_settings(self.settings, self.config_file, self.config_flags)
        except CkptdError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
            self.notifier.ready(self._status_line())
            return
        self.live.current = fresh
        for sock in (self._control, self._dispatch):
            if sock is not None:  # applies to connections made from now on
                sock.setsockopt(zmq.MAXMSGSIZE, fresh.max_message_size)
        if self._guard is not None:
            self._guard.reload(fresh.authorized_keys)  # a removed key is refused from now on
        logging.getLogger().setLevel(fresh.log_level.upper())
        log.info("reloaded the settings")
        if credential_copy(self.config_file):
            log.warning("the settings file %s is a systemd credential, copied when the service "
                        "started: a changed original takes effect at 'systemctl restart' "
                        "(this reload applied the authorized_keys folder and the rest of the "
                        "copy)", self.config_file)
        self.notifier.ready(self._status_line())
