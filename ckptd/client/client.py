"""The Python client of a running daemon: submit jobs, read status, wait for results.

    from ckptd import Client
    client = Client("tcp://10.0.0.5:5550")
    job_id = client.submit("price", {"sku": "A-1"})
    client.wait("price", job_id, timeout=60)      # "done" or "failed"

A client talks to the daemon's control socket with a DEALER socket, one request at a time;
a request that times out closes the socket, so a late reply can never be taken for the answer
to the next request. Requests that time out move on to the next address when several are
given (a standby daemon). Submits are safe to retry: the
client chooses the id, so a repeated submit finds the job instead of making a second one.
A Client is not thread-safe: give each thread its own.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from ckptd.client.direct import DirectSubmit
from ckptd.client.hooks import HookSpec
from ckptd.client.preparing import Preparer
from ckptd.codec.crypto import Keyring
from ckptd.core.answers import Submitted, SubmittedFile
from ckptd.core.edits import who_am_i
from ckptd.core.errors import (
    CkptdError,
    ClientClosed,
    ConfigError,
    DaemonUnavailable,
    ProtocolError,
    RemoteError,
    Standby,
    StoreError,
    SubmitUnconfirmed,
    TakingOver,
    WaitTimeout,
    remote_error,
)
from ckptd.core.ids import new_id
from ckptd.core.jobs import check_delay, check_time_limit
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.queue_controls import check_priority
from ckptd.core.states import State
from ckptd.store.admin import StoreAdmin
from ckptd.wire import protocol
from ckptd.wire.endpoints import connect_endpoints
from ckptd.wire.handshake import HandshakeWatch
from ckptd.wire.security import ClientCurve

DEFAULT_TIMEOUT = 10.0
RESEND_FIRST = 0.5  # an idempotent request without an answer is sent again after this ...
RESEND_MAX = 2.0  # ... and then after twice as long each time, up to this
CONNECT_TIMEOUT = 1.0  # an address that accepts no connection this fast: try the next one
MAX_HOPS = 3  # daemons named as a queue's leader followed for one request
IDEMPOTENT = frozenset({"ping", "status", "endpoints", "ls", "show", "fetch", "submit",
                        "submit_many", "upload"})
"""Requests that may be sent twice with the same effect (a submit carries its id)."""



def _ask_endpoints(client: weakref.ref[Client]) -> dict[str, Any]:
    """A client's ``endpoints`` answer, asked through a weak reference to it."""
    alive = client()
    if alive is None:
        raise DaemonUnavailable("the client was closed", maybe_applied=False)
    return alive.request("endpoints")

class Client:
    """A connection to a daemon's control socket (or to a list of them, tried in turn)."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context[Any] | None = None, curve: ClientCurve | None = None,
                 direct: bool = True, hooks: Sequence[HookSpec] | None = None,
                 keys: Keyring | None = None, tracing: str = "off",
                 tracing_baggage: bool = False) -> None:
        """``direct``: on the daemon's host, submit by writing into its store (see
        :mod:`ckptd.client.direct`); False always goes through the daemon. ``hooks``: their
        ``on_submit`` runs on every job (:mod:`ckptd.client.hooks`); ``keys``: payloads are
        sealed with them and results opened (:mod:`ckptd.codec.crypto`); ``tracing``: as the
        setting (``on`` uses your program's tracer provider)."""
        self._prep = Preparer(hooks, keys, tracing, tracing_baggage)
        self.endpoints = connect_endpoints(endpoints)  # tcp:// is implied when missing
        self.timeout = timeout
        self.curve = curve
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._sock: zmq.Socket[bytes] | None = None
        self._handshake: HandshakeWatch | None = None
        self._closed = False
        self._current = 0
        # A weak reference: a client its user forgot to close is then freed at once, not
        # by the cycle collector at a random moment (which could close zmq's context first).
        me = weakref.ref(self)
        self._direct = DirectSubmit(lambda: _ask_endpoints(me)) if direct else None

    def _direct_store(self, queue: str) -> tuple[DirectSubmit, StoreAdmin] | None:
        """The way to submit straight into the daemon's store, when this host has it (and
        the daemon leads ``queue``, and the queue allows it: not one whose ids come from
        payloads)."""
        self._check_open()
        if self._direct is None:
            return None
        admin = self._direct.admin(queue)
        if admin is None or queue in self._direct.through_daemon:
            return None
        return self._direct, admin

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self.endpoints[self._current]

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"this Client (of {', '.join(self.endpoints)}) is closed: it was "
                               "used after close() or after its 'with' block; make a new one")

    def _socket(self) -> zmq.Socket[bytes]:
        self._check_open()
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue requests for a daemon not there
            sock.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)  # as the worker's socket
            if self.curve is not None:
                self.curve.apply_client(sock)
            # Keys that do not fit the daemon's are told by the handshake, not by silence.
            self._handshake = HandshakeWatch(sock, self.endpoint, self.curve is not None)
            try:
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                self._handshake.close()
                sock.close(0)
                raise ConfigError(f"cannot connect to {self.endpoint}: {exc.strerror}; "
                                  "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5550"
                                  ) from None
            self._sock = sock
        return self._sock

    def _reset(self, rotate: bool) -> None:
        if self._handshake is not None:
            self._handshake.close()
            self._handshake = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if rotate and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)

    def request(self, kind: str, body: dict[str, Any] | None = None,
                timeout: float | None = None, *, again: dict[str, Any] | None = None,
                repeatable: bool | None = None, resend_after: float = RESEND_FIRST,
                follow: bool = True) -> dict[str, Any]:
        """Send one control request and return the reply body.

        A request that may be repeated safely (:data:`IDEMPOTENT`) is sent again, on a fresh
        connection, when no answer came within a short while (0.5 s, then longer): a daemon
        that restarts costs about its restart time, not the whole timeout. ``again`` is the
        body to send from the second time on (a submit that may have arrived must look for
        its job before creating it); ``repeatable`` overrides :data:`IDEMPOTENT`, and
        ``resend_after`` the first wait for an answer (a long poll waits longer). With
        several addresses, one that does not accept a
        connection within a second, or answers as a standby, is passed over.

        Raises the daemon's error as a RemoteError (also an instance of the error's own
        class); DaemonUnavailable when no daemon answered in time (its ``maybe_applied``
        says whether the request may have reached one). A daemon taking the lead
        (``TakingOver``: it applied nothing) is asked again until the timeout. A daemon
        that names the daemon leading the request's queue (several daemons on one store)
        is followed there (unless ``follow`` is False), and that address is used from then
        on.
        """
        first = protocol.request(kind.encode(), body or {})
        later = protocol.request(kind.encode(), again) if again is not None else first
        if repeatable is None:
            repeatable = kind in IDEMPOTENT
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        frames = first
        interval = resend_after
        pause = 0.05
        maybe_applied = False
        refused: RemoteError | None = None  # a standby's or a daemon taking over's answer
        tried = 0
        hops = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if maybe_applied and not repeatable:
                break  # it may have been applied: never twice
            slot = min(left, interval) if repeatable else left
            sent, reply = self._exchange(frames, slot)
            tried += 1
            maybe_applied = maybe_applied or sent
            if reply is None:
                if sent and repeatable:
                    frames = later
                    interval = max(interval, min(interval * 2, RESEND_MAX))
                continue
            ok, answer = reply
            if ok:
                return answer
            error = remote_error(str(answer.get("error", "error")),
                                 str(answer.get("message", "the daemon refused")),
                                 int(answer.get("exit_code", 1)))
            leader = answer.get("leader")
            if isinstance(error, Standby) and isinstance(leader, dict):
                error.leader = {str(k): str(v) for k, v in leader.items()}
                if follow and leader.get("control") and hops < MAX_HOPS:
                    hops += 1  # the queue's leader is named: ask it (nothing was done here)
                    self.follow(str(leader["control"]))
                    maybe_applied = False
                    continue
            if isinstance(error, TakingOver):
                refused = error  # nothing was applied: ask again after a moment
                maybe_applied = False
                self._reset(rotate=True)
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 1.0)
                continue
            if isinstance(error, Standby) and len(self.endpoints) > 1:
                if refused is None:
                    refused = error  # the active daemon is another address
                maybe_applied = False
                self._reset(rotate=True)
                if tried >= 2 * len(self.endpoints) and not isinstance(refused, TakingOver):
                    raise error
                continue
            raise error
        if refused is not None:
            raise refused
        where = ", ".join(self.endpoints)
        raise DaemonUnavailable(
            f"no answer from the daemon at {where} within {wait:g}s: is 'ckptd serve' "
            "running there, and is the address (and key) right?", maybe_applied=maybe_applied)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        endpoint = connect_endpoints(endpoint)[0]
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        self._reset(rotate=False)
        self._current = self.endpoints.index(endpoint)

    def _exchange(self, frames: list[bytes], wait: float
                  ) -> tuple[bool, tuple[bool, dict[str, Any]] | None]:
        """Send ``frames`` to the current address and wait up to ``wait`` for the reply.

        Returns (whether the request was handed to a connection, the decoded reply or None).
        Without a reply the socket is closed (a late reply can never be taken for the answer
        to another request) and the next address is taken.
        """
        sock = self._socket()
        started = time.monotonic()
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(min(wait, CONNECT_TIMEOUT) * 1000)))
        try:
            sock.send_multipart(frames)  # IMMEDIATE: waits for a connection, up to SNDTIMEO
        except zmq.Again:
            problem = self._handshake.problem() if self._handshake is not None else None
            self._reset(rotate=True)
            if problem is not None:
                raise problem from None
            return False, None
        deadline = started + wait
        watch = self._handshake
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if watch is not None:
            poller.register(watch.monitor, zmq.POLLIN)
        while True:
            left = max(0.0, deadline - time.monotonic())
            events = dict(poller.poll(int(left * 1000)))
            if events.get(sock):
                raw = sock.recv_multipart()
                try:
                    return True, protocol.decode_reply(raw)
                except ProtocolError as exc:
                    raise CkptdError(f"the daemon at {self.endpoint} sent a bad reply: "
                                     f"{exc}") from None
            problem = watch.problem() if watch is not None else None
            if problem is not None:
                self._reset(rotate=False)
                raise problem
            if not events and time.monotonic() >= deadline:
                break
        self._reset(rotate=True)
        return True, None

    # -- producing -------------------------------------------------------------------------

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               batch: str | None = None, time_limit: float | None = None,
               priority: int | None = None, if_exists: str = "error") -> str:
        """Submit a job and return its id once the daemon has stored it durably.

        ``time_limit`` (seconds) bounds each attempt of this job, over the queue's own
        (docs/guide/workers.md, "Time limits"). ``priority``: lower runs first (default 0;
        docs/guide/operator-controls.md, "Priorities"). With your own ``id``,
        ``if_exists="return"`` returns that id when the job exists already (as after
        :class:`~ckptd.core.errors.SubmitUnconfirmed`) instead of raising JobExists. On a
        queue with ``unique = "payload"`` the id is the payload's, and the same payload
        returns the job it made before.
        """
        return self.submit_job(queue, payload, job_id=id, max_attempts=max_attempts,
                               delay=delay, batch=batch, time_limit=time_limit,
                               priority=priority, if_exists=if_exists).id

    def submit_job(self, queue: str, payload: Any = None, *, job_id: str | None = None,
                   max_attempts: int | None = None, delay: float | None = None,
                   if_exists: str = "error", batch: str | None = None,
                   time_limit: float | None = None, priority: int | None = None
                   ) -> Submitted:
        """Submit a job; return its id and whether this call created it."""
        check_queue(queue)
        generated = job_id is None
        body: dict[str, Any] = {"queue": queue, "payload": payload,
                                "id": new_id() if generated else check_job_id(job_id),
                                "if_exists": "return" if generated else if_exists}
        if not generated:
            body["own_id"] = True
        if priority:
            body["priority"] = check_priority(priority)
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        if delay is not None:
            delay = check_delay(delay)
        if delay:
            body["delay"] = delay
        if batch is not None:
            body["batch"] = batch
        if time_limit is not None:
            body["time_limit"] = time_limit = check_time_limit(time_limit)
        if generated:
            body["fresh"] = True
        extra: dict[str, Any] = {}
        if self._prep.active:  # hooks, trace context, seal
            payload, extra = self._prep.prepare(queue, payload, body["id"])
            body["payload"] = payload
            body.update(extra)
        meta = extra.get("meta")
        # A job of a batch, one to run later or with a priority goes through the daemon,
        # which then counts the batch's figures and the delayed jobs, and orders it, at once.
        found = self._direct_store(queue) if batch is None and not delay and not priority \
            else None
        if found is not None:  # on the daemon's host: write the job into its store
            direct, admin = found
            try:
                if generated:
                    return direct.submit_many(admin, queue, [(body["id"], payload)],
                                              time.time(), max_attempts=max_attempts,
                                              time_limit=time_limit, meta=meta)[0]
                return admin.submit(queue, payload, job_id=body["id"],
                                    max_attempts=max_attempts, if_exists=if_exists,
                                    time_limit=time_limit, meta=meta)
            except StoreError as exc:  # e.g. no permission: the daemon can still do it
                direct.give_up(exc)
        try:
            # Sent again only when a second send cannot fail where the first succeeded.
            answer = self.request("submit", body, again={**body, "fresh": False},
                                  repeatable=body["if_exists"] == "return")
        except DaemonUnavailable as exc:
            if exc.maybe_applied:
                raise SubmitUnconfirmed(queue, [body["id"]], str(exc)) from None
            raise
        return Submitted(answer["id"], bool(answer.get("created", True)),
                         str(answer.get("state", State.PENDING.value)))

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SubmittedFile:
        """Send a file to the daemon in parts and have it submitted as one batch, as
        :meth:`ckptd.store.admin.StoreAdmin.submit_file` does on the store (same answer)."""
        from ckptd.wire.uploads import PART_BYTES, encode_part

        check_queue(queue)
        for hop in range(MAX_HOPS + 1):
            token = f"up-{os.urandom(8).hex()}"
            for offset in range(0, max(1, len(data)), PART_BYTES):
                part = data[offset:offset + PART_BYTES]
                self.request("upload", {"upload": token, "offset": offset,
                                        "data": encode_part(part)})
                if progress is not None:
                    progress(offset + len(part), len(data))
            try:
                answer = self.request("submit_file", {
                    "upload": token, "size": len(data), "queue": queue, "format": fmt,
                    "chunk": chunk, "batch": batch, "then": then, "max_attempts": max_attempts,
                    "source_name": source_name}, timeout=max(self.timeout, 120.0),
                    follow=False)
                break
            except Standby as exc:  # the upload stays where it was sent: send it to the leader
                if not exc.leader or not exc.leader.get("control") or hop == MAX_HOPS:
                    raise
                self.follow(exc.leader["control"])
        return SubmittedFile(**{k: answer[k] for k in ("batch", "jobs", "records", "created",
                                                       "format")})

    def submit_many(self, queue: str, payloads: list[Any], ids: list[str] | None = None
                    ) -> list[str]:
        """Submit many jobs in one request; return their ids (in order).

        With ``ids`` (one per payload) a repeated call returns the jobs made by the first
        one instead of making more, so a request that timed out can simply be sent again.
        """
        check_queue(queue)
        if ids is not None and len(ids) != len(payloads):
            raise ValueError("give one id per payload")
        fresh = ids is None
        items = [{"id": new_id() if ids is None else check_job_id(ids[n]), "payload": p,
                  "fresh": fresh, "if_exists": "return"} for n, p in enumerate(payloads)]
        if self._prep.active:  # hooks, trace context, seal
            for item in items:
                item["payload"], extra = self._prep.prepare(queue, item["payload"], item["id"])
                item.update(extra)
        found = self._direct_store(queue) if fresh and not any("meta" in i for i in items) \
            else None
        if found is not None:  # on the daemon's host: write the jobs into its store
            direct, admin = found
            try:
                made = direct.submit_many(admin, queue, [(i["id"], i["payload"]) for i in items],
                                          time.time())
                return [m.id for m in made]
            except StoreError as exc:  # e.g. no permission: the daemon can still do it
                direct.give_up(exc)
        again = [{**item, "fresh": False} for item in items]
        try:
            answer = self.request("submit_many", {"queue": queue, "jobs": items},
                                  again={"queue": queue, "jobs": again})
        except DaemonUnavailable as exc:
            if exc.maybe_applied:
                raise SubmitUnconfirmed(queue, [str(i["id"]) for i in items], str(exc)
                                        ) from None
            raise
        ids = answer["ids"]
        errors = [i for i in ids if isinstance(i, dict)]
        if errors:
            raise CkptdError(f"{len(errors)} of {len(ids)} jobs were refused: "
                             f"{errors[0].get('error')}")
        return [str(i) for i in ids]

    # -- looking ---------------------------------------------------------------------------

    def status(self, queue: str | None = None) -> dict[str, Any]:
        """Counts per state per queue (from the daemon's index), workers and drop counters."""
        return self.request("status", {"queue": queue} if queue else {})

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the daemon's name; raise DaemonUnavailable if it does not answer."""
        return self.request("ping", {}, timeout=timeout)

    def show(self, queue: str, job_id: str) -> dict[str, Any]:
        """The job's state, file, checkpoint and (when claimed) its lease."""
        return self.request("show", {"queue": queue, "id": job_id})

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """(state, id) of the queue's jobs."""
        answer = self.request("ls", {"queue": queue, "state": state.value if state else None},
                              timeout=max(self.timeout, 60.0))
        return [(State(s), i) for s, i in answer["jobs"]]

    def result(self, queue: str, job_id: str) -> Any:
        """The result of a done job (read from its blob when it is not inline; opened when
        this client holds the keys it was sealed with)."""
        found = self.request("fetch", {"queue": queue, "id": job_id, "what": "result"})["result"]
        return self._prep.result(found, f"{queue}/{job_id}")

    def fetch(self, queue: str, job_id: str, what: str) -> Any:
        """Fetch a job's ``payload`` or checkpoint ``state`` through the daemon."""
        return self.request("fetch", {"queue": queue, "id": job_id, "what": what},
                            timeout=max(self.timeout, 60.0))[what]

    def wait(self, queue: str, job_id: str, timeout: float = 60.0) -> str:
        """Wait until a job is done or failed; return that state.

        Raises WaitTimeout when it has not ended within ``timeout`` seconds.
        """
        answer = self.wait_many(queue, [job_id], timeout)
        return str(answer["states"][job_id])

    def wait_many(self, queue: str, job_ids: list[str] | None, timeout: float = 60.0
                  ) -> dict[str, Any]:
        """Wait for several jobs (or, with None, every open job of the queue) to end."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            chunk = min(left, 30.0)
            # A read: asked again (after its own long poll) when the answer got lost.
            answer = self.request("wait", {"queue": queue, "ids": job_ids, "timeout": chunk},
                                  timeout=chunk + self.timeout, repeatable=True,
                                  resend_after=chunk + RESEND_MAX)
            if not answer.get("timed_out"):
                return answer
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{len(answer.get('open', [])) if job_ids else answer['open']}"
                                  f" job(s) of {queue!r} still open after {timeout:g}s")

    # -- repairing -------------------------------------------------------------------------

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """Move failed jobs back to pending; return the ids moved."""
        return list(self.request("retry", {"queue": queue, "ids": job_ids,
                                           "attempts": attempts})["ids"])

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """Cancel a pending (removed) or claimed (failed) job; return the state it was in.

        ``by`` is recorded as who cancelled it (default: this user on this host).
        """
        return str(self.request("cancel", {"queue": queue, "id": job_id,
                                           "by": by or who_am_i("client")})["was"])

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """Remove done or failed jobs; return how many."""
        return int(self.request("purge", {"queue": queue, "state": state.value,
                                          "older_than": older_than},
                                timeout=max(self.timeout, 600.0))["count"])

    def move(self, queue: str, job_id: str, to: str, by: str | None = None) -> str:
        """Move a pending or failed job to queue ``to`` (same id; a failed one gets fresh
        attempts); return the state it was in."""
        return str(self.request("move", {"queue": queue, "id": job_id, "to": to,
                                         "by": by or who_am_i("client")})["was"])

    # -- operator controls -----------------------------------------------------------------

    def pause(self, queue: str, reason: str = "") -> dict[str, Any]:
        """Pause ``queue`` (writes ``<queue>/paused`` with the reason): nothing more of it is
        claimed until :meth:`resume`; running jobs finish, submits are accepted."""
        return self.request("pause", {"queue": queue, "reason": reason})

    def resume(self, queue: str) -> dict[str, Any]:
        """Resume ``queue`` (removes ``<queue>/paused``)."""
        return self.request("resume", {"queue": queue})

    def limit(self, queue: str, changes: dict[str, Any], reset: bool = False
              ) -> dict[str, Any]:
        """Set ``max_running`` and/or ``rate`` of ``queue`` in its ``limits.json`` (a None
        value removes one: the config's applies again); ``reset`` removes the file."""
        return self.request("limit", {"queue": queue, **changes, "reset": reset})

    def run_schedule(self, name: str, by: str | None = None) -> dict[str, Any]:
        """Submit one job of schedule ``name`` now (its plan is left as it is); return the
        submit's answer (``id``, ``created``)."""
        return self.request("run_schedule", {"name": name, "by": by or who_am_i("client")})

    def schedules(self) -> list[dict[str, Any]]:
        """The schedules, with their next and last runs."""
        return list(self.request("schedules")["schedules"])

    def close(self) -> None:
        """Close the socket (and the context if the client made it). Idempotent; a closed
        client raises ClientClosed when it is used."""
        self._closed = True
        self._reset(rotate=False)
        if self._direct is not None:
            self._direct.close()
        if self._own_context:
            self._ctx.term()
            self._own_context = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteAdmin:
    """The CLI's store commands, carried out through a daemon (``--connect``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, queue: str, payload: Any, *, job_id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               if_exists: str = "error", batch: str | None = None,
               time_limit: float | None = None, priority: int | None = None) -> Submitted:
        """See :meth:`ckptd.store.admin.StoreAdmin.submit`."""
        return self.client.submit_job(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                      delay=delay, if_exists=if_exists, batch=batch,
                                      time_limit=time_limit, priority=priority)

    def pause(self, queue: str, reason: str = "") -> dict[str, Any]:
        """See :meth:`Client.pause`."""
        return self.client.pause(queue, reason)

    def resume(self, queue: str) -> dict[str, Any]:
        """See :meth:`Client.resume`."""
        return self.client.resume(queue)

    def limit(self, queue: str, changes: dict[str, Any], reset: bool = False
              ) -> dict[str, Any]:
        """See :meth:`Client.limit`."""
        return self.client.limit(queue, changes, reset)

    def submit_file(self, queue: str, data: bytes, **options: Any) -> SubmittedFile:
        """See :meth:`Client.submit_file`."""
        return self.client.submit_file(queue, data, **options)

    def status(self, queue: str | None = None) -> dict[str, Any]:
        """See :meth:`Client.status`."""
        return self.client.status(queue)

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """See :meth:`Client.ls`."""
        return self.client.ls(queue, state)

    def show(self, queue: str, job_id: str) -> dict[str, Any]:
        """See :meth:`Client.show`."""
        return self.client.show(queue, job_id)

    def job_logs(self, queue: str, job_id: str, since: dict[int, int] | None = None
                 ) -> dict[str, Any]:
        """See :meth:`ckptd.store.admin.StoreAdmin.job_logs`."""
        return self.client.request("logs", {"queue": queue, "id": job_id, "since": {
            str(k): v for k, v in (since or {}).items()}})

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """See :meth:`Client.retry`."""
        return self.client.retry(queue, job_ids, attempts=attempts)

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """See :meth:`Client.cancel`."""
        return self.client.cancel(queue, job_id, by or who_am_i("--connect"))

    def move(self, queue: str, job_id: str, to: str, by: str | None = None) -> str:
        """See :meth:`Client.move`."""
        return self.client.move(queue, job_id, to, by or who_am_i("--connect"))

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """See :meth:`Client.purge`."""
        return self.client.purge(queue, state, older_than)
