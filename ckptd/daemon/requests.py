"""The control socket: requests from producers, operators and workers, and their replies.

Each request is decoded (:mod:`ckptd.wire.protocol`), handed to the engine, the operators'
actions or the store commands, and answered; answers that depend on store operations
(submit, retry, cancel, purge) are given once those operations are applied, by the daemon's
commit. ``wait`` requests are parked until their jobs end or their deadline passes. Where
several daemons share a store, a :class:`~ckptd.daemon.cluster.routing.Router` first sends requests
about queues that another daemon leads on to it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import zmq

from ckptd.client.direct import submit_settings
from ckptd.codec import decode_job
from ckptd.core.config import LiveSettings, Settings
from ckptd.core.errors import (
    CkptdError,
    ConfigError,
    JobExists,
    JobNotFound,
    ProtocolError,
    Standby,
)
from ckptd.core.states import State, parse_state
from ckptd.daemon.engine.actions import Operators
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.queue_moves import move_job
from ckptd.store import is_local
from ckptd.store.admin import StoreAdmin, load_payload
from ckptd.store.base import Outcome, PutOutput
from ckptd.store.job_logs import logs_answer
from ckptd.wire import protocol
from ckptd.wire.control_requests import (
    BatchOpen,
    BatchSeal,
    CancelJob,
    Endpoints,
    Fetch,
    Graph,
    Limit,
    Logs,
    Ls,
    Move,
    Output,
    Pause,
    Ping,
    Purge,
    Request,
    Resume,
    Retry,
    RunSchedule,
    Schedules,
    Show,
    Signal,
    Status,
    Submit,
    SubmitFile,
    SubmitMany,
    Upload,
    Wait,
)
from ckptd.wire.endpoints import port_of
from ckptd.wire.frames import waiting_messages
from ckptd.wire.protocol import Body
from ckptd.wire.uploads import Uploads

ReplyTo = bytes | tuple[bytes, bytes]
"""Where a reply goes: the client's identity on the control socket, with the tag of its
request when it gave one (a client with several requests in flight on one socket)."""


def identity_of(to: ReplyTo) -> bytes:
    """The identity on the control socket of the client that ``to`` answers."""
    return to if isinstance(to, bytes) else to[0]


class Router(Protocol):
    """What the control socket asks of the cluster's router (:mod:`ckptd.daemon.cluster.routing`),
    given to it where several daemons share a store."""

    def divert(self, to: ReplyTo, kind: bytes, body: Request, frames: list[bytes]) -> bool:
        """Send on (or answer) a request about a queue another daemon leads."""

    def ping(self, body: Ping) -> Body:
        """What a ping's answer adds about the daemons of the store."""

    def endpoints(self) -> Body:
        """The addresses of the daemons that lead each queue."""

    def status(self, answer: Body, queue: str | None) -> None:
        """Add the other daemons' part to a status answer."""

log = logging.getLogger(__name__)

MAX_CONTROL_PER_STEP = 1000
LOCAL_IDENTITY = b"\x00console-"  # never a ZeroMQ peer's (those are 5 bytes from a 0 byte)

Reply = Callable[[Body | CkptdError], None]
Drop = Callable[[str, str, float], None]


@dataclass
class Waiter:
    """A ``wait`` request parked until its jobs end or its deadline passes."""

    identity: ReplyTo
    queue: str
    ids: list[str] | None
    deadline: float
    #: The ids not yet seen ended: each check looks only at these, so waiting on many jobs
    #: costs one look per job once it ends, not one per job per check.
    left: set[str] = field(default_factory=set)
    checked: bool = False  # every id was found in some state (else: JobNotFound)
    #: The states learnt so far, kept: on a bucket they come in the background.
    states: dict[str, str | None] = field(default_factory=dict)


class Control:
    """Serves the control socket for one daemon."""

    def __init__(self, engine: Engine, operators: Operators, admin: StoreAdmin,
                 live: LiveSettings, *, endpoints: dict[str, str],
                 daemon_info: Callable[[float], dict[str, object]],
                 stopping: Callable[[], bool], drop: Drop, internal_error: Drop,
                 waiting_op: Callable[[str, str, float], dict[str, object] | None] | None = None,
                 ) -> None:
        self.engine = engine
        self.waiting_op = waiting_op  # a store op of a job kept for a retry (StoreGuard)
        self.operators = operators
        self.admin = admin
        self.live = live
        self.endpoints = endpoints
        self.daemon_info = daemon_info
        self.stopping = stopping
        self.drop = drop
        self.internal_error = internal_error
        self.uploads = Uploads()  # files sent in parts by submit-file --connect
        # Written into the root's lock too: a client on this host that finds it there knows
        # it may submit straight into this daemon's store (ckptd.client.direct).
        self.token = os.urandom(8).hex()
        self.replies: list[tuple[bytes, list[bytes]]] = []
        self.early: list[tuple[bytes, list[bytes]]] = []  # answers that wait for no sync
        self.waiters: list[Waiter] = []
        self.router: Router | None = None  # several daemons on one store
        self._local: dict[bytes, Callable[[list[bytes]], None]] = {}  # the console's
        self._local_ids = 0

    @property
    def settings(self) -> Settings:
        return self.live.current

    # -- the socket ------------------------------------------------------------------------

    def read(self, sock: zmq.Socket[bytes], now: float) -> int:
        """Handle the requests that arrived (at most a step's worth); return how many."""
        count = 0
        limit = self.settings.max_message_size
        for frames in waiting_messages(sock, MAX_CONTROL_PER_STEP):
            count += 1
            rest = frames[1:]
            tag = protocol.request_tag(rest)
            identity: ReplyTo = (frames[0], tag) if tag else frames[0]
            try:
                kind, body = protocol.decode_request(rest, limit)
            except ProtocolError as exc:
                self.drop("control", exc.reason, now)
                if protocol.looks_like_request(rest):  # it looks like a request: say why
                    self.reply(identity, exc)
                continue
            self._carry_out(identity, kind, body, rest, now)
        return count

    def _carry_out(self, identity: ReplyTo, kind: bytes, body: Request, frames: list[bytes],
                   now: float) -> None:
        try:
            if self.router is None or not self.router.divert(identity, kind, body, frames):
                self.handle(identity, kind, body, now)
        except CkptdError as exc:
            self.reply(identity, exc)
        except (ValueError, TypeError) as exc:
            self.reply(identity, CkptdError(str(exc)))
        except Exception:  # a bug must cost one request, never the daemon
            self.internal_error("control", "internal_error", now)
            self.reply(identity, CkptdError("internal error; see the daemon's log"))

    def local(self, kind: bytes, body: Body, now: float,
              answer: Callable[[list[bytes]], None]) -> None:
        """Carry out a request of the daemon's own console as if it came over the socket:
        the same frames, schema, routing and code; ``answer`` gets the reply's frames when
        the socket's replies are sent (after the sync)."""
        self._local_ids += 1
        identity = LOCAL_IDENTITY + str(self._local_ids).encode()
        self._local[identity] = answer
        frames = protocol.request(kind, body)
        try:
            kind, request = protocol.decode_request(frames, self.settings.max_message_size)
        except ProtocolError as exc:
            self.reply(identity, exc)
            return
        self._carry_out(identity, kind, request, frames, now)

    def reply(self, to: ReplyTo, answer: Body | CkptdError, at_once: bool = False) -> None:
        """Queue an answer; it leaves with the round's other replies, after the sync (an
        answer that waits for no write, ``at_once``, leaves before the round's sync)."""
        identity, tag = (to, b"") if isinstance(to, bytes) else to
        if isinstance(answer, CkptdError):
            leader = answer.leader if isinstance(answer, Standby) else None
            frames = protocol.reply_error(answer.code, str(answer), answer.exit_code, leader,
                                          tag)
        else:
            try:
                # The daemon's answers hold what it decoded and its own fields: the fast
                # encoder; the standard library's for what that one refuses (odd dict keys).
                frames = protocol.reply_ok(answer, decoded=True, tag=tag)
            except ValueError:
                try:
                    frames = protocol.reply_ok(answer, tag=tag)
                except ValueError as exc:
                    frames = protocol.reply_error(CkptdError.code, str(exc), 1, tag=tag)
        (self.early if at_once else self.replies).append((identity, frames))

    def reply_raw(self, identity: bytes, frames: list[bytes]) -> None:
        """Queue a reply as it came (from the daemon a request was forwarded to)."""
        self.replies.append((identity, frames))

    def wrong_port(self, tag: bytes = b"") -> list[bytes]:
        """The error reply to a control request sent to the dispatch port."""
        error = ConfigError(f"this is the daemon's dispatch port, where workers take jobs; "
                            f"connect to its control port instead: {self.endpoints['control']}")
        return protocol.reply_error(error.code, str(error), error.exit_code, tag=tag)

    def replier(self, identity: ReplyTo) -> Reply:
        """A function that answers ``identity`` (for answers given after the sync)."""
        return lambda answer: self.reply(identity, answer)

    def take_replies(self, early: bool = False) -> list[tuple[bytes, list[bytes]]]:
        """The replies to send now (``early``: those that wait for no sync, before it; those
        to the console are handed to it here)."""
        if early or self.early:
            replies, self.early = self.early, []
            if not early:
                replies += self.replies
                self.replies = []
        else:
            replies, self.replies = self.replies, []
        if self._local:
            for identity, frames in [r for r in replies if r[0] in self._local]:
                self._local.pop(identity)(frames)
            replies = [r for r in replies if not r[0].startswith(LOCAL_IDENTITY)]
        return replies

    def refuse_waiters(self, error: CkptdError, queue: str | None = None) -> None:
        """Answer every parked ``wait`` (of ``queue`` only, when given) with ``error`` (the
        daemon stopped leading it)."""
        for waiter in self.waiters:
            if queue is None or waiter.queue == queue:
                self.reply(waiter.identity, error)
        self.waiters = [w for w in self.waiters if queue is not None and w.queue != queue]

    # -- requests --------------------------------------------------------------------------

    def _refuse_when_stopping(self) -> None:
        if self.stopping():
            raise CkptdError("the daemon is stopping; submit again when it is back")

    def handle(self, identity: ReplyTo, kind: bytes, body: Request, now: float) -> None:
        """Carry out one decoded request."""
        engine = self.engine
        if isinstance(body, Submit):
            self._refuse_when_stopping()
            engine.submit(protocol.fields_of(body), now, self.replier(identity))
        elif isinstance(body, SubmitMany):
            self._submit_many(identity, body, now)
        elif isinstance(body, Status):
            answer = self.operators.status(body.queue, now)
            answer.update(self.daemon_info(now))
            if self.router is not None:
                self.router.status(answer, body.queue)
            self.reply(identity, answer, at_once=True)
        elif isinstance(body, Ping):
            pong: Body = {"pong": True, "daemon": engine.name}
            self.reply(identity, pong if self.router is None else {**pong,
                                                                    **self.router.ping(body)},
                       at_once=True)
        elif isinstance(body, Endpoints):
            where: Body = {"dispatch": self.endpoints["dispatch"],
                           "dispatch_port": port_of(self.endpoints["dispatch"]),
                           "root": engine.store.url}
            if is_local(engine.store.url):
                where["submit"] = submit_settings(engine.store.url, self.settings, self.token)
            if self.router is not None:
                where.update(self.router.endpoints())
            self.reply(identity, where)
        elif isinstance(body, Ls):
            state = parse_state(body.state) if body.state else None
            rows = self.operators.dispatch_order(
                body.queue, self.admin.ls(body.queue, state, ordered=False))
            self.reply(identity, {"jobs": [[s.value, i] for s, i in rows]})
        elif isinstance(body, Show):
            info: Body = dict(self.admin.show(body.queue, body.id))
            info["lease"] = self.operators.lease_info(body.queue, body.id, now)
            waiting = self.waiting_op(body.queue, body.id, now) if self.waiting_op else None
            if waiting is not None:
                info["waiting_op"] = waiting
            info["controls"] = self.operators.controls_view(body.queue, now, job_id=body.id)
            self.reply(identity, info)
        elif isinstance(body, (Pause, Resume, Limit, Schedules)):
            self.reply(identity, self.operators.control_request(
                kind.decode(), protocol.fields_of(body), now))
        elif isinstance(body, Retry):
            self.operators.retry(body.queue, body.ids, body.attempts, self.replier(identity))
        elif isinstance(body, CancelJob):
            self.operators.cancel(body.queue, body.id, now, self.replier(identity),
                                  by=body.by or "an operator")
        elif isinstance(body, Purge):
            self.operators.purge(body.queue, parse_state(body.state), body.older_than, now,
                                 self.replier(identity), ids=body.ids)
        elif isinstance(body, Move):
            move_job(engine, body.queue, body.id, body.to, self.replier(identity),
                     now=now, by=body.by or "an operator")
        elif isinstance(body, RunSchedule):
            engine.scheduler.run_now(body.name, now, body.by or "an operator",
                                     self.replier(identity))
        elif isinstance(body, Fetch):  # (on a bucket the reads run beside the loop)
            fetch = body
            if not engine.off_loop.start(lambda: self._fetch(fetch), self.replier(identity)):
                self.reply(identity, self._fetch(fetch))
        elif isinstance(body, Logs):
            self.reply(identity, dict(logs_answer(engine.store, body.queue, body.id, body.since,
                                                  engine.index.where(body.queue, body.id))))
        elif isinstance(body, Output):
            engine.txn.add(PutOutput(body.queue, body.name, body.text.encode()),
                           self._output_written(identity, body))
        elif isinstance(body, Wait):
            self._wait(identity, body, now)
        elif isinstance(body, Upload):  # the rights of a submit, and the bounds of uploads
            self._refuse_when_stopping()
            settings = self.settings
            self.uploads.max_bytes = settings.upload_limit_total
            self.uploads.max_client_bytes = settings.upload_limit_client
            self.reply(identity, {"size": self.uploads.add(body, now, identity_of(identity))})
        elif isinstance(body, SubmitFile):
            self._submit_file(identity, body, now)
        elif isinstance(body, (Signal, BatchOpen, BatchSeal)):
            self._refuse_when_stopping()
            engine.graph.request(body, now, self.replier(identity))
        elif isinstance(body, Graph):
            self.reply(identity, dict(self.admin.graph(body.queue, body.id, body.depth)))

    def _output_written(self, identity: ReplyTo, body: Output) -> Callable[[Outcome], None]:
        def then(outcome: Outcome) -> None:
            if outcome is not None:
                self.reply(identity, outcome)
                return
            where = self.engine.store.output_location(body.queue, body.name)
            self.reply(identity, {"location": where})
        return then

    def _submit_many(self, identity: ReplyTo, body: SubmitMany, now: float) -> None:
        self._refuse_when_stopping()
        queue = body.queue
        items = body.jobs
        answers: list[object] = [None] * len(items)
        left = [len(items)]

        def one(position: int) -> Reply:
            def reply(answer: Body | CkptdError) -> None:
                answers[position] = (answer["id"] if isinstance(answer, dict)
                                     else {"error": str(answer)})
                left[0] -= 1
                if left[0] == 0:
                    self.reply(identity, {"ids": answers})
            return reply

        for position, item in enumerate(items):
            request = dict(item)
            request["queue"] = queue
            self.engine.submit(request, now, one(position))

    def _submit_file(self, identity: ReplyTo, body: SubmitFile, now: float) -> None:
        """Split and store an uploaded file as submit-file --root does (in this turn: about
        a second per million lines on a local disk)."""
        self._refuse_when_stopping()
        chunk, attempts = body.chunk, body.max_attempts
        if chunk < 1 or (attempts is not None and attempts < 1):  # types: protocol.py
            raise CkptdError("chunk and max_attempts must be at least 1")
        data = self.uploads.take(body.upload, body.size, now)
        plan = self.admin.plan_file(body.queue, data, fmt=body.format, chunk=chunk,
                                    batch=body.batch, then=body.then, max_attempts=attempts,
                                    source_name=body.source_name, key=body.key)
        # Through the transaction like every write of the daemon: the source and manifest
        # first, then (once they are stored) the jobs, create-only.
        txn = self.engine.txn
        problems: list[CkptdError] = []
        created = [0]
        left = [len(plan.first)]
        reply = self.replier(identity)

        def job_made(last: bool) -> Callable[[Outcome], None]:
            def then(outcome: Outcome) -> None:
                if outcome is None:
                    created[0] += 1
                elif not isinstance(outcome, JobExists):
                    problems.append(outcome)
                if last:
                    if problems:
                        reply(problems[0])
                        return
                    answer = dataclasses.replace(plan.answer, created=created[0])
                    log.info("submit-file", extra={"fields": {
                        "queue": body.queue, "batch": answer.batch, "jobs": answer.jobs,
                        "new": answer.created, "bytes": len(data)}})
                    reply(dataclasses.asdict(answer))
            return then

        def first_stored(outcome: Outcome) -> None:
            if outcome is not None:
                problems.append(outcome)
            left[0] -= 1
            if left[0]:
                return
            if problems:
                reply(problems[0])
                return
            ops = [op for group in plan.groups for op in group]
            for position, op in enumerate(ops):
                self.engine.txn.add(op, job_made(position == len(ops) - 1))

        for op in plan.first:
            txn.add(op, first_stored)

    def _fetch(self, body: Fetch) -> Body:
        store = self.engine.store
        queue, job_id, what = body.queue, body.id, body.what
        if what == "payload":
            for state in (State.CLAIMED, State.PENDING, State.DONE, State.FAILED):
                try:
                    job = decode_job(store.read(queue, state, job_id), queue, job_id)
                except JobNotFound:
                    continue
                return {"payload": load_payload(store, job)}
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        if what == "state":
            raw = store.read_checkpoint(queue, job_id)
            record = json.loads(raw) if raw is not None else None
            return {"state": record.get("state") if isinstance(record, dict) else None}
        if what == "result":
            try:
                raw = store.read(queue, State.DONE, job_id)
            except JobNotFound:
                raise self._no_result(queue, job_id) from None
            job = decode_job(raw, queue, job_id)
            if job.get("result_ref"):
                return {"result": json.loads(store.read_blob(queue, job_id, "result"))}
            return {"result": job.get("result")}
        if what == "source":  # a range of a batch's source file, as text
            start, end = body.start or 0, body.end or 0
            if end - start > self.settings.max_message_size // 2:
                raise CkptdError(f"range of {end - start} bytes is too big to fetch at once")
            data = store.read_blob_range(queue, job_id, "source", start, end)
            return {"text": data.decode(errors="replace")}
        raise CkptdError(f"cannot fetch {what!r}: expected payload, state, result or source")

    def _no_result(self, queue: str, job_id: str) -> JobNotFound:
        """Why a job has no result: the state it is in, and what to run next."""
        for state in (State.FAILED, State.CLAIMED, State.PENDING):
            if self.engine.store.exists(queue, state, job_id):
                then = ("see why: ckptd explain" if state is State.FAILED
                        else "wait for it: ckptd wait")
                return JobNotFound(f"job {job_id!r} of queue {queue!r} has no result: it is "
                                   f"{state.value}; {then} {queue} {job_id}")
        return JobNotFound(f"no job {job_id!r} in queue {queue!r}")

    # -- wait ------------------------------------------------------------------------------

    def _wait(self, identity: ReplyTo, body: Wait, now: float) -> None:
        queue, ids = body.queue, body.ids
        if not ids:
            self.operators.known_queue(queue)
        waiter = Waiter(identity, queue, ids, now + float(body.timeout), set(ids or ()),
                        checked=not ids)
        if not self._answer_waiter(waiter, now):
            self.waiters.append(waiter)

    def check_waiters(self, now: float) -> None:
        """Answer the parked waits whose jobs ended or whose time is up."""
        self.waiters = [w for w in self.waiters if not self._answer_waiter(w, now)]

    def next_waiter_deadline(self) -> float | None:
        """The earliest deadline of a parked wait."""
        return min((w.deadline for w in self.waiters), default=None)

    def _answer_waiter(self, waiter: Waiter, now: float) -> bool:
        engine = self.engine
        index = engine.index.queue(waiter.queue)
        if waiter.ids is None:
            open_jobs = len(index.pending) + len(index.claimed) + len(index.waiting)
            finished = open_jobs == 0
            answer: Body = {"counts": index.counts(), "open": open_jobs}
        else:
            # (on a bucket the states of jobs that are not open come in the background:
            # those are learnt at a later check)
            asked = [i for i in waiter.ids if i not in waiter.states] if not waiter.checked \
                else sorted(waiter.left)
            waiter.states.update(engine.lookups.where_many(waiter.queue, asked))
            if not waiter.checked:
                missing = [i for i in waiter.ids if i in waiter.states
                           and waiter.states[i] is None]
                if missing:
                    self.reply(waiter.identity, JobNotFound(
                        f"no job {missing[0]!r} in queue {waiter.queue!r}"))
                    return True
                waiter.checked = all(i in waiter.states for i in waiter.ids)
            waiter.left = {i for i in waiter.left if waiter.states.get(i, "pending")
                           in ("pending", "claimed", "waiting")}
            finished = waiter.checked and not waiter.left
            answer = {}
        if finished or now >= waiter.deadline:
            if waiter.ids is not None:
                answer["open"] = [i for i in waiter.ids if i in waiter.left]
            if waiter.ids is not None and finished:
                answer["states"] = {i: waiter.states[i] for i in waiter.ids}
            answer["timed_out"] = not finished
            self.reply(waiter.identity, answer)
            return True
        return False
