"""Workers: run a handler on the jobs a daemon sends, and report back.

    from ckptd import Worker, Job

    def price(job: Job) -> dict:
        done = job.state or 0                    # resume from the last checkpoint
        for n, item in enumerate(job.payload["items"][done:], start=done):
            ...
            job.checkpoint(n + 1)                 # durable when it returns
            job.progress(n + 1, len(job.payload["items"]))
        return {"total": ...}                     # becomes "result" in done/<id>.json

    if __name__ == "__main__":
        Worker("tcp://10.0.0.5:5550", "price", price, concurrency=4).run()

One thread (the caller of :meth:`Worker.run`) owns the ZeroMQ sockets (the I/O loop);
handlers run in a pool (:mod:`~ckptd.worker.pools.base`: threads, child processes, or an event
loop for ``async def`` handlers) and hand their messages to it through a queue. The worker
says hello with its free slots, so the daemon never sends more jobs than it can start; it
sends heartbeats for running jobs, keeps every answer until the daemon confirms it and sends
it again after a reconnect, enforces time limits and cancels (:mod:`~ckptd.worker.limits`),
and on SIGTERM lets running jobs finish before it exits (:mod:`~ckptd.worker.signals`).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import queue as queue_mod
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import zmq

from ckptd.client.hooks import HookSpec
from ckptd.codec.crypto import Keyring
from ckptd.core import jobs, logs
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError
from ckptd.core.names import check_queue
from ckptd.wire.messages import Ack, Cancel, FromDaemon, JobMessage, Rehello, Saved, Welcome
from ckptd.wire.security import ClientCurve
from ckptd.worker import reports, signals
from ckptd.worker.around import around_of
from ckptd.worker.bell import ANSWER_DELAY, SHORT_ANSWER, Bell, answers_unrung
from ckptd.worker.calls import JobCalls
from ckptd.worker.data import JobData
from ckptd.worker.failover import find_daemon
from ckptd.worker.handlers import resolve_handler
from ckptd.worker.job import Handler, JobHost
from ckptd.worker.job_logs import LogTails
from ckptd.worker.limits import HARD, Limits
from ckptd.worker.pools.base import Pool, choose_pool
from ckptd.worker.reports import Answer
from ckptd.worker.routes import Link, Links
from ckptd.worker.running import Attempt, Running
from ckptd.worker.unconfirmed import Unconfirmed

log = logging.getLogger(__name__)

DEFAULT_GRACE = 5.0  # seconds between asking a handler to stop and stopping it by force
CONFIRM_WAIT = 10.0  # on a clean stop, how long to wait for the daemon to confirm answers
GIVE_BACK_WAIT = 2.0  # on a stop now, how long to wait for it to confirm the jobs given back
KILLED = {"process": "its child process was killed", "thread": "its thread was written off",
          "async": "its task was written off"}


class Worker:
    """Connects to a daemon, takes jobs of some queues, runs ``handler`` on each.

    ``handler`` is a function, or its name ``"MODULE:FUNCTION"`` (as ``ckptd worker`` takes
    it). ``pool``: ``thread`` (default for plain handlers), ``process`` (``concurrency`` child
    processes: CPU-bound work uses that many cores) or ``async`` (default for ``async def``
    handlers: ``concurrency`` jobs in flight on one event loop). ``time_limit``: seconds an
    attempt may run when neither the job nor its queue says (None: no limit); ``grace``:
    seconds between asking a handler to stop (time limit, cancel) and stopping it by force
    (default 5). ``max_jobs_per_child`` and ``max_memory_per_child`` (bytes) recycle child
    processes.
    """

    def __init__(self, connect: str | list[str], queues: str | list[str],
                 handler: Handler | str, *,
                 concurrency: int = 1, prefetch: int = 0, name: str | None = None,
                 root: str | None = None, curve: ClientCurve | None = None,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 settings: Settings | None = None,
                 pool: str | None = None, time_limit: float | None = None,
                 grace: float | None = None, max_jobs_per_child: int = 0,
                 max_memory_per_child: int = 0, hooks: Sequence[HookSpec] | None = None,
                 keys: Keyring | None = None) -> None:
        if isinstance(connect, str):
            connect = [e.strip() for e in connect.split(",") if e.strip()]
        self.endpoints = list(connect)
        self.queues = [check_queue(q) for q in ([queues] if isinstance(queues, str) else queues)]
        if not self.queues:
            raise CkptdError("a worker needs at least one queue (--queue)")
        if concurrency < 1:
            raise CkptdError("concurrency must be at least 1")
        grace = DEFAULT_GRACE if grace is None else grace
        if prefetch < 0 or grace < 0 or max_jobs_per_child < 0 or max_memory_per_child < 0:
            raise CkptdError("prefetch, grace and the per-child limits must not be negative")
        if time_limit is not None and time_limit <= 0:
            raise CkptdError("time_limit must be longer than 0s")
        self.handler = handler = resolve_handler(handler)
        self.pool_kind = choose_pool(pool, handler)
        if self.pool_kind != "process" and (max_jobs_per_child or max_memory_per_child):
            raise CkptdError("--max-jobs-per-child and --max-memory-per-child need "
                             "--pool process")
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_per_child = max_memory_per_child
        host = socket.gethostname()
        self.name = name or f"{host}-{os.getpid()}-{os.urandom(3).hex()}"
        self.host = host
        self.root = root
        self.curve = curve
        self.settings = settings  # for a bucket's credentials, endpoint and options
        self.limits = Limits(grace, time_limit)
        self.around = around_of(settings, hooks, keys)  # log, trace, codec, hooks of each job
        self.log_tails = LogTails()
        self.running = Running()
        self.unconfirmed = Unconfirmed()
        self.pool: Pool | None = None
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self.data = JobData(self._ctx, self.endpoints, curve, root, settings)
        self.calls = JobCalls(self.unconfirmed, self.send, self.data)
        self._links: Links | None = None  # a connection per daemon leading our queues
        self._outgoing: queue_mod.SimpleQueue[tuple[bytes, dict[str, object]]] = \
            queue_mod.SimpleQueue()
        self._bell = Bell()  # wakes the I/O thread (:mod:`ckptd.worker.bell`)
        self._lock = threading.Lock()
        self._stopping = False
        self._stop_now = False
        self._capacity_changed = False
        self._heartbeat = 5.0
        self._blob_threshold = 256 * 1024
        self._next_beat = 0.0
        self.connecting = False  # looking for the daemon: a stop signal ends run() at once
        self.interrupted = False  # run() returned because it was stopped while connecting
        self.restart_needed = False  # too many slots stuck: restart the process
        self.given_back: list[str] = []
        self.jobs_done = 0
        self.jobs_failed = 0
        self.jobs_parked = 0

    # -- life cycle ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""
        return self._stopping

    def stop(self) -> None:
        """Stop taking jobs; :meth:`run` returns once the running ones have finished."""
        self._stopping = True
        self._bell.ring()

    def stop_now(self) -> None:
        """Give the running jobs back to the daemon and return from :meth:`run` now."""
        self._stopping = self._stop_now = True
        self._bell.ring()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish running jobs, then exit (a second one: give them back and
        exit now). :meth:`run` does this by itself when called from the main thread."""
        signals.install(self)

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM / Ctrl-C, see :mod:`ckptd.worker.signals`)."""
        own_log = logs.configure_if_unset("ckptd")
        try:
            with signals.stop_signals(self):
                self._serve()
        finally:
            if own_log is not None:
                logging.getLogger("ckptd").removeHandler(own_log)

    def restart_process(self) -> None:
        """Replace this process by a fresh run of the same command line (what ``ckptd
        worker`` does when :attr:`restart_needed` is set after :meth:`run`)."""
        import sys

        log.warning("restarting the worker: %s", " ".join(sys.orig_argv))
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    def _serve(self) -> None:
        try:
            self.connecting = True  # before the line that says so: a stop from then on ends it
            try:
                log.info("worker %s: connecting to the daemon at %s", self.name,
                         ", ".join(self.endpoints))
                if self._stopping:  # asked before connecting began
                    raise signals.ConnectInterrupted()
                endpoint, answer = self._discover()
            finally:
                self.connecting = False
        except signals.ConnectInterrupted:
            self.interrupted = True
        except CkptdError:  # an answer that says the address or the keys are wrong
            self._close()
            raise
        if self.interrupted:  # (out of the except block: its traceback is gone)
            log.warning("worker %s stopped while connecting to %s: no job was taken",
                        self.name, ", ".join(self.endpoints))
            # The stop came at any point of a request: a socket half made may be held only
            # by the traceback's frames (collected now), or left open (closed by _close).
            gc.collect()
            self._close()
            return
        if self._stopping:
            self._close()
            return
        pool = self.pool = self._make_pool()
        try:
            pool.start()
        except BaseException:
            self._close()
            raise
        poller = zmq.Poller()
        links = self._links = Links(self._ctx, self.name, self.curve, self.queues,
                                    self.endpoints, poller)
        links.start(endpoint, answer)
        self.data.endpoints = links.known  # any daemon of the store serves a fetch
        poller.register(self._bell.fd, zmq.POLLIN)
        self._hello()
        log.info("worker %s serving %s on %s: %s pool of %d, prefetch %d", self.name,
                 ",".join(self.queues), ", ".join(f"{','.join(link.queues)} at {link.dispatch}"
                                                  for link in links.all()),
                 pool.kind, self.concurrency, self.prefetch)
        self._next_beat = time.monotonic() + self._heartbeat
        try:
            self._loop(poller)
        finally:
            self._flush()
            for link in links.all():
                link.link.send(b"bye", {})
            pool.stop(now=self._stop_now or self.restart_needed)
            links.close(2000 if not self._stop_now else 500)
            self._close()
            self._log_stopped()

    def _loop(self, poller: zmq.Poller) -> None:
        said_stop = False
        gave_back = False
        leave_at: float | None = None
        while True:
            timeout = self._bell.timeout(self._timeout_now)
            events = dict(poller.poll(math.ceil(timeout * 1000)))
            self._bell.woke()
            if events.get(self._bell.fd):
                self._bell.heard()
            self._follow(events)
            self._flush()
            now = time.monotonic()
            self._enforce_limits(now)
            if now >= self._next_beat:
                self._next_beat = now + self._heartbeat
                self._beat(now)
            self._check_capacity()
            if self._stop_now and not gave_back:
                gave_back = True
                self._give_back(self.running.all(), "the worker was stopped before the job "
                                "ended")
                leave_at = now + GIVE_BACK_WAIT
            if self._stopping:
                if not said_stop:
                    said_stop = True
                    log.info("stopping: finishing %d running job(s)%s", len(self.running),
                             "" if self._stop_now or self.restart_needed
                             else " (stop again to give them back and stop now)")
                    self._hello(slots=0)
                    assert self.pool is not None
                    self._give_back(self.pool.take_queued(), "the worker stopped before the "
                                    "job started")
                if not len(self.running) and self._outgoing.empty():
                    if not self.unconfirmed.answers():
                        return
                    if leave_at is None:
                        leave_at = now + CONFIRM_WAIT
                if leave_at is not None and now >= leave_at:
                    left = self.unconfirmed.answers()
                    if left:
                        log.warning("%d answer(s) not confirmed by the daemon: their jobs "
                                    "come back after their lease", left)
                    return

    def _timeout_now(self) -> tuple[float, bool]:
        """How long the I/O thread may sleep, and whether it looks within ANSWER_DELAY for
        answers that come unrung."""
        now = time.monotonic()
        wake_at = [self._next_beat, now + 1.0]
        attempts = self.running.all()
        deadline = self.limits.next_deadline(attempts)
        if deadline is not None:
            wake_at.append(deadline)
        if self._stopping:
            wake_at.append(now + 0.1)
        pool = self.pool
        soon = not self._outgoing.empty() or (pool is not None and answers_unrung(
            now, attempts, pool.waiting(), pool.size))
        if soon:
            wake_at.append(now + ANSWER_DELAY)
        return max(0.0, min(wake_at) - now), soon

    def _make_pool(self) -> Pool:
        settings = self.settings
        if self.pool_kind == "process":
            from ckptd.worker.pools.processes import ProcessPool

            return ProcessPool(self, self.handler, self.concurrency,
                               max_jobs_per_child=self.max_jobs_per_child,
                               max_memory_per_child=self.max_memory_per_child,
                               log_level=settings.log_level if settings else "info",
                               log_format=settings.log_format if settings else "auto")
        if self.pool_kind == "async":
            from ckptd.worker.pools.event_loop import AsyncPool

            return AsyncPool(self, self.handler, self.concurrency)  # type: ignore[arg-type]
        from ckptd.worker.pools.threads import ThreadPool

        return ThreadPool(self, self.handler, self.concurrency)  # type: ignore[arg-type]

    def _close(self) -> None:
        if not (self._stop_now or self.restart_needed):
            self.calls.close()  # the handlers have ended: their spawn clients go
        self._bell.close()
        if self._own_context and not (self._stop_now or self.restart_needed):
            # (after a stop now, a handler left running may still hold a socket of it, for
            # a fetch through the daemon: terminating would wait for it)
            if self.interrupted:
                # A stop while connecting came at any point of a request: a socket it had
                # opened may be left open (term would wait for it forever). Only this
                # thread used the context yet.
                self._ctx.destroy(linger=0)
            else:
                self._ctx.term()
            self._own_context = False

    def _log_stopped(self) -> None:
        back = f", {len(self.given_back)} given back to the daemon" if self.given_back else ""
        log.info("worker %s stopped: %d done, %d failed%s", self.name, self.jobs_done,
                 self.jobs_failed, back)
        if self.given_back:
            log.warning("jobs given back (they run again at once, without losing an attempt): "
                        "%s", ", ".join(self.given_back[:20]) +
                        (" ..." if len(self.given_back) > 20 else ""))

    # -- the daemon ------------------------------------------------------------------------

    def _discover(self) -> tuple[str, dict[str, Any]]:
        """Ask a daemon's control socket where to connect for jobs (and, with several
        daemons on the store, which one leads each queue)."""
        self.endpoints, answer, _ = find_daemon(self._ctx, self.endpoints, self.curve)
        self.data.endpoints = self.endpoints
        self.data.daemon_root = answer.get("root")
        return self.endpoints[0], answer

    def _follow(self, events: Mapping[object, int]) -> None:
        """Read what the daemons sent; follow the queues whose leader changed."""
        links = self._links
        assert links is not None
        for link in links.all():
            if link.link.sock is not None and events.get(link.link.sock):
                for _, body in link.link.receive():
                    self._handle(body, link)
            if link.link.monitor is not None and events.get(link.link.monitor):
                if link.link.reconnected():
                    log.warning("the connection to the daemon at %s came back: saying hello "
                                "again", link.control)
                    self._hello_again(link)
                elif link.link.down and links.watching:
                    link.lost = True  # ask the other daemons at once where its queues are
        links.interval = self._heartbeat
        changed, moved = links.tick(time.monotonic(), events)
        for link in changed:
            self._hello_again(link, moved)

    def _slots(self) -> int:
        assert self.pool is not None
        return max(0, self.pool.size - self.pool.stuck()) + self.prefetch

    def _refs(self, queues: list[str] | None = None) -> list[list[str | int]]:
        """The attempts to name to the daemon (of ``queues`` only, when given): running, or
        with an answer unconfirmed."""
        refs = self.running.refs()
        named = {(q, i) for q, i, _ in refs}
        refs += [r for r in self.unconfirmed.answer_refs() if (r[0], r[1]) not in named]
        return refs if queues is None else [r for r in refs if r[0] in queues]

    def _hello(self, slots: int | None = None, link: Link | None = None) -> None:
        """Say hello (to each daemon, or to ``link``'s) with the queues it leads for us."""
        assert self._links is not None
        total = (0 if self._stopping else self._slots()) if slots is None else slots
        for one in [link] if link is not None else self._links.all():
            one.link.send(b"hello", {
                "worker": self.name, "queues": one.queues or self.queues, "slots": total,
                "free": max(0, total - len(self.running)), "host": self.host,
                "pid": os.getpid(), "running": self._refs(one.queues)})

    def _hello_again(self, link: Link, queues: set[str] | None = None) -> int:
        """Hello (a new daemon, or one that forgot us), then what it has not confirmed (of
        ``queues`` only, when given: the queues that just moved there)."""
        self._hello(link=link)
        resend = [(kind, body) for kind, body in self.unconfirmed.everything(time.monotonic())
                  if body["queue"] in link.queues and (queues is None or body["queue"] in queues)]
        if resend:
            link.link.send_many(resend)
        return len(resend)

    def _beat(self, now: float) -> None:
        assert self._links is not None
        for link in self._links.all():
            link.link.send(b"heartbeat", {"jobs": self._refs(link.queues)})
        overdue = self.unconfirmed.overdue(now)
        if overdue:
            log.info("sending %d unconfirmed message(s) again", len(overdue))
            self._links.send_many(overdue)

    def _handle(self, body: FromDaemon, link: Link) -> None:
        if isinstance(body, JobMessage):
            self._take(body)
        elif isinstance(body, Ack):
            self.unconfirmed.confirm_answer(body.queue, body.id, body.attempt)
        elif isinstance(body, Saved):
            self.unconfirmed.confirm_checkpoint(body)
        elif isinstance(body, Cancel):
            self._cancel(body)
        elif isinstance(body, Welcome):
            self._heartbeat = max(0.05, float(body.heartbeat))
            self._next_beat = min(self._next_beat, time.monotonic() + self._heartbeat)
            self.data.daemon_root = body.root or self.data.daemon_root
            if body.blob_threshold > 0:
                self._blob_threshold = body.blob_threshold
            if not body.confirms:
                self.unconfirmed.forget_answers()  # an older daemon: it never will
        elif isinstance(body, Rehello):
            self._hello_again(link)

    def send(self, kind: bytes, body: dict[str, object], ring: bool = True) -> None:
        """Queue a message for the I/O thread (safe from any thread); ``ring=False``: it
        looks within ANSWER_DELAY anyway (:mod:`ckptd.worker.bell`)."""
        if kind == b"log":
            self.log_tails.keep(body)
        self._outgoing.put((kind, body))
        if ring:
            self._bell.ring()

    def _flush(self) -> None:
        """Send what the handlers queued, as batches."""
        messages: list[tuple[bytes, dict[str, object]]] = []
        while True:
            try:
                messages.append(self._outgoing.get_nowait())
            except queue_mod.Empty:
                break
        if messages and self._links is not None:
            self._links.send_many(messages)

    # -- attempts --------------------------------------------------------------------------

    def _take(self, body: JobMessage) -> None:
        attempt = Attempt(body, time_limit=self.limits.limit_of(body))
        if not self.running.add(attempt):
            return  # the same attempt twice (a resend): already held
        if self._stopping:
            self._give_back([attempt], "the worker is stopping")
            return
        assert self.pool is not None
        self.pool.submit(attempt)

    def _cancel(self, body: Cancel) -> None:
        attempt = self.running.get(body.queue, body.id, body.attempt)
        if attempt is None:
            return
        by = body.by
        log.warning("job %s cancelled by %s: asking it to stop", attempt.label(),
                    by or "an operator")
        self.limits.cancelled(attempt, time.monotonic(), by)
        if attempt.started is None:  # still waiting for a slot: it never starts
            attempt.killed = True
            self.finish(attempt, reports.failed(attempt.body, attempt.flags.stop or
                                                 Exception("cancelled")))

    def _enforce_limits(self, now: float) -> None:
        assert self.pool is not None
        for attempt, action in self.limits.due(self.running.all(), now):
            stop = attempt.flags.stop
            if action == HARD:
                self.pool.kill(attempt)
                self.finish(attempt, reports.stopped(
                    attempt.body, stop, f"{KILLED[self.pool.kind]} {self.limits.grace:g}s "
                    "after it was asked to stop"))
            else:
                log.warning("asking %s to stop: %s", attempt.label(),
                            stop.reason if stop else "stop")
                self.pool.interrupt(attempt)

    def _check_capacity(self) -> None:
        if not self._capacity_changed or self.pool is None:
            return
        self._capacity_changed = False
        stuck = self.pool.stuck()
        if stuck and stuck * 2 >= self.pool.size and not self.restart_needed:
            self.restart_needed = True
            log.error("%d of %d slots are stuck in handlers that outlived their hard limit: "
                      "stopping so that the worker restarts", stuck, self.pool.size)
            self.stop()
        if not self._stopping:
            self._hello()

    def _give_back(self, attempts: list[Attempt], reason: str) -> None:
        for attempt in attempts:
            attempt.killed = True
            self.finish(attempt, reports.given_back(attempt.body, reason))

    def finish(self, attempt: Attempt, answer: Answer) -> None:
        """Send the answer of ``attempt`` and keep it until the daemon confirms it; only the
        first way of ending an attempt counts (safe from any thread)."""
        if not self.running.end(attempt):
            return
        kind, body = answer
        self.log_tails.attach(kind, body)
        now = time.monotonic()
        short = False
        if attempt.started is not None:
            took = now - attempt.started
            body["took"] = round(took, 6)
            short = took < SHORT_ANSWER
        self.unconfirmed.add_answer(kind, body, now)
        with self._lock:
            if kind == b"done":
                self.jobs_done += 1
            elif kind == b"park":
                self.jobs_parked += 1
            elif body.get("given_back"):
                self.given_back.append(attempt.label())
            elif body.get("type") not in ("Retry", "LeaseLost"):
                self.jobs_failed += 1
        if kind == b"failed" and not body.get("given_back"):
            log.info("job %s/%s attempt %d failed: %s", attempt.queue, attempt.id,
                     attempt.number, reports.summary(kind, body))
        # Not rung when short while more wait for a slot (see ckptd.worker.bell).
        pool = self.pool
        self.send(kind, body, ring=not (short and pool is not None and pool.waiting()))

    # -- what a pool asks of its worker (ckptd.worker.pools.base.PoolHost) -----------------------

    @property
    def job_host(self) -> JobHost:
        """What handlers' jobs call (checkpoint, progress, ...)."""
        return self.calls

    def job_data(self, attempt: Attempt) -> tuple[Any, Any]:
        """The payload and last checkpoint of an attempt (from the store, or fetched)."""
        return self.data.payload(attempt.body), self.data.state(attempt.body)

    def started(self, attempt: Attempt) -> bool:
        """The handler of ``attempt`` starts now; False when it must not (it has ended)."""
        if attempt.ended or attempt.killed:
            return False
        self.limits.started(attempt, time.monotonic())
        if attempt.soft_at is not None or (self._bell.may_sleep and self.pool is not None
                                           and self.pool.waiting()):
            self._bell.ring()  # a new deadline; or its answer may come unrung (bell)
        return True

    def store_result(self, attempt: Attempt, answer: Answer) -> Answer:
        """A done answer whose result is too big to send, with the result stored as a blob
        beside the job when this host can reach the store."""
        kind, body = answer
        if kind != b"done" or "result" not in body:
            return answer
        encoded = jobs.encode_value(body["result"])
        store = self.data.direct_store() if len(encoded) > self._blob_threshold else None
        if store is None:
            return answer
        store.put_blob(attempt.queue, attempt.id, "result", encoded)
        body = {k: v for k, v in body.items() if k != "result"}
        body["result_ref"] = f"blobs/{attempt.id}.result"
        return kind, body

    def capacity_changed(self) -> None:
        """A slot was written off or came back: the I/O loop tells the daemon."""
        self._capacity_changed = True
        self._bell.ring()

