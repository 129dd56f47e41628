"""The Python client of a running daemon: submit jobs, read status, wait for results.

    from ckptd import Client
    client = Client("tcp://10.0.0.5:5550")
    job_id = client.submit("price", {"sku": "A-1"})
    client.wait("price", job_id, timeout=60)      # "done" or "failed"

A client talks to the daemon's control socket with one DEALER socket
(:mod:`ckptd.client.pipe`). Threads may share a client: their requests are in flight on that
socket together, each reply matched to its request by a tag, and the daemon stores the
submits that arrive together under one flush. Requests that time out move on to the next
address when several are given (a standby daemon). Submits are safe to retry: the client
chooses the id, so a repeated submit finds the job instead of making a second one. How a
request is sent again, and which daemon it follows, is :mod:`ckptd.client.conversation`;
what requests carry, :mod:`ckptd.client.bodies` (both shared with the
:class:`~ckptd.client.async_client.AsyncClient`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from ckptd.client import bodies
from ckptd.client.answer_shapes import answer_as
from ckptd.client.batches import GraphCalls
from ckptd.client.connection import end_context
from ckptd.client.conversation import MAX_HOPS, RESEND_FIRST, Ask, conversation, drive
from ckptd.client.direct import DirectSubmit
from ckptd.client.hooks import HookSpec
from ckptd.client.pipe import Pipe
from ckptd.client.preparing import Preparer
from ckptd.codec.crypto import Keyring
from ckptd.core.answer_types import (
    EndpointsAnswer,
    LimitAnswer,
    PauseAnswer,
    PingAnswer,
    ResumeAnswer,
    ScheduleRow,
    SchedulesAnswer,
    ShowAnswer,
    StatusAnswer,
    SubmitAnswer,
    WaitAnswer,
)
from ckptd.core.answers import LimitChanges, Submitted, SubmittedFile
from ckptd.core.edits import who_am_i
from ckptd.core.errors import DaemonUnavailable, Standby, StoreError
from ckptd.core.names import check_queue
from ckptd.core.states import State
from ckptd.store.admin import StoreAdmin
from ckptd.wire.security import ClientCurve

DEFAULT_TIMEOUT = 10.0


def _ask_endpoints(client: weakref.ref[Client]) -> EndpointsAnswer:
    """A client's ``endpoints`` answer, asked through a weak reference to it."""
    alive = client()
    if alive is None:
        raise DaemonUnavailable("the client was closed", maybe_applied=False)
    return answer_as(alive.request("endpoints"), EndpointsAnswer)


class Client(GraphCalls):
    """A connection to a daemon's control socket (or to a list of them, tried in turn);
    threads may share it. Batches, signals and graphs:
    :class:`~ckptd.client.batches.GraphCalls`."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve: ClientCurve | None = None,
                 direct: bool = True, hooks: Sequence[HookSpec] | None = None,
                 keys: Keyring | None = None, tracing: str = "off",
                 tracing_baggage: bool = False) -> None:
        """``direct``: on the daemon's host, submit by writing into its store (see
        :mod:`ckptd.client.direct`); False always goes through the daemon. ``hooks``: their
        ``on_submit`` runs on every job (:mod:`ckptd.client.hooks`); ``keys``: payloads are
        sealed with them and results opened (:mod:`ckptd.codec.crypto`); ``tracing``: as the
        setting (``on`` uses your program's tracer provider)."""
        self._prep = Preparer(hooks, keys, tracing, tracing_baggage)
        self.timeout = timeout
        self.curve = curve
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._pipe = Pipe(self._ctx, endpoints, curve)
        # A weak reference: a client its user forgot to close is then freed at once, not
        # by the cycle collector at a random moment (which could close zmq's context first).
        me = weakref.ref(self)
        self._direct = DirectSubmit(lambda: _ask_endpoints(me)) if direct else None

    def _direct_store(self, queue: str) -> tuple[DirectSubmit, StoreAdmin] | None:
        """The way to submit straight into the daemon's store, when this host has it (and
        the daemon leads ``queue``, and the queue allows it: not one whose ids come from
        payloads)."""
        self._pipe.check_open()
        if self._direct is None:
            return None
        admin = self._direct.admin(queue)
        if admin is None or queue in self._direct.through_daemon:
            return None
        return self._direct, admin

    @property
    def endpoints(self) -> list[str]:
        """The daemons' addresses, tried in turn."""
        return self._pipe.endpoints

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self._pipe.endpoint

    def request(self, kind: str, body: dict[str, Any] | None = None,
                timeout: float | None = None, *, again: dict[str, Any] | None = None,
                repeatable: bool | None = None, resend_after: float = RESEND_FIRST,
                follow: bool = True) -> dict[str, Any]:
        """Send one control request and return the reply body.

        A request that may be repeated safely is sent again when no answer came within a
        short while (see :mod:`ckptd.client.conversation`); ``again`` is the body to send
        from the second time on, ``repeatable`` says whether it may be sent twice, and
        ``resend_after`` is the first wait for an answer (a long poll waits longer). A daemon
        that names the daemon leading the request's queue is followed there (unless
        ``follow`` is False), and that address is used from then on.

        Raises the daemon's error as a RemoteError (also an instance of the error's own
        class); DaemonUnavailable when no daemon answered in time (its ``maybe_applied``
        says whether the request may have reached one).
        """
        ask = Ask(kind, body or {}, self.timeout if timeout is None else timeout, again=again,
                  repeatable=repeatable, resend_after=resend_after, follow=follow)
        return self.ask(ask)

    def ask(self, ask: Ask) -> dict[str, Any]:
        """Carry out one request planned as an :class:`~ckptd.client.conversation.Ask`."""
        return drive(conversation(self._pipe, ask), self._pipe.exchange)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        self._pipe.follow(endpoint)

    # -- producing -------------------------------------------------------------------------

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               batch: str | None = None, time_limit: float | None = None,
               priority: int | None = None, key: str | None = None,
               if_exists: str = "error", after: list[str] | None = None,
               on_parent_failure: str | None = None) -> str:
        """Submit a job and return its id once the daemon has stored it durably.

        ``time_limit`` (seconds) bounds each attempt of this job, over the queue's own
        (docs/guide/workers.md, "Time limits"). ``priority``: lower runs first (default 0;
        docs/guide/operator-controls.md, "Priorities"). ``key``: a supplier, a tenant...
        (docs/guide/flow-control.md). With your own ``id``, ``if_exists="return"`` returns
        that id when the job exists already (as after
        :class:`~ckptd.core.errors.SubmitUnconfirmed`) instead of raising JobExists. On a
        ``unique`` queue the id is the payload's, and the same payload returns the job it
        made before. ``after``: jobs (``queue/id``) it waits for, in ``waiting/``;
        ``on_parent_failure``: ``fail`` (default), ``run`` or ``ignore``
        (docs/guide/graphs.md).
        """
        return self.submit_job(queue, payload, job_id=id, max_attempts=max_attempts,
                               delay=delay, batch=batch, time_limit=time_limit,
                               priority=priority, key=key, if_exists=if_exists, after=after,
                               on_parent_failure=on_parent_failure).id

    def submit_job(self, queue: str, payload: Any = None, *, job_id: str | None = None,
                   max_attempts: int | None = None, delay: float | None = None,
                   if_exists: str = "error", batch: str | None = None,
                   time_limit: float | None = None, priority: int | None = None,
                   key: str | None = None, after: list[str] | None = None,
                   on_parent_failure: str | None = None) -> Submitted:
        """Submit a job; return its id and whether this call created it."""
        sub = bodies.submit_request(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                    delay=delay, if_exists=if_exists, batch=batch,
                                    time_limit=time_limit, priority=priority, key=key,
                                    after=after, on_parent_failure=on_parent_failure,
                                    prep=self._prep)
        payload, meta = sub.body["payload"], sub.meta
        time_limit = sub.body.get("time_limit")  # checked
        found = self._direct_store(queue) if sub.may_go_direct() else None
        if found is not None:  # on the daemon's host: write the job into its store
            direct, admin = found
            try:
                if sub.generated:
                    return direct.submit_many(admin, queue, [(sub.id, payload)],
                                              time.time(), max_attempts=max_attempts,
                                              time_limit=time_limit, meta=meta)[0]
                return admin.submit(queue, payload, job_id=sub.id,
                                    max_attempts=max_attempts, if_exists=if_exists,
                                    time_limit=time_limit, meta=meta)
            except StoreError as exc:  # e.g. no permission: the daemon can still do it
                direct.give_up(exc)
        try:
            return bodies.submitted(self.ask(sub.ask(self.timeout)))
        except DaemonUnavailable as exc:
            raise bodies.unconfirmed(exc, queue, [sub.id]) from None

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    key: str | None = None) -> SubmittedFile:
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
                    "source_name": source_name, "key": key}, timeout=max(self.timeout, 120.0),
                    follow=False)
                break
            except Standby as exc:  # the upload stays where it was sent: send it to the leader
                if not exc.leader or not exc.leader.get("control") or hop == MAX_HOPS:
                    raise
                self.follow(exc.leader["control"])
        return SubmittedFile(**{k: answer[k] for k in ("batch", "jobs", "records", "created",
                                                       "format")})

    def submit_many(self, queue: str, payloads: list[Any], ids: list[str] | None = None,
                    key: str | None = None) -> list[str]:
        """Submit many jobs in one request; return their ids (in order).

        With ``ids`` (one per payload) a repeated call returns the jobs made by the first
        one instead of making more, so a request that timed out can simply be sent again.
        ``key``: the key of all of them."""
        many = bodies.many_request(queue, payloads, ids, self._prep, key)
        found = self._direct_store(queue) if many.may_go_direct() else None
        if found is not None:  # on the daemon's host: write the jobs into its store
            direct, admin = found
            try:
                made = direct.submit_many(admin, queue, [(i["id"], i["payload"])
                                                         for i in many.items], time.time())
                return [m.id for m in made]
            except StoreError as exc:  # e.g. no permission: the daemon can still do it
                direct.give_up(exc)
        try:
            answer = self.ask(many.ask(self.timeout))
        except DaemonUnavailable as exc:
            raise bodies.unconfirmed(exc, queue, many.ids) from None
        return bodies.submitted_many(answer)

    # -- looking ---------------------------------------------------------------------------

    def status(self, queue: str | None = None) -> StatusAnswer:
        """Counts per state per queue (from the daemon's index), workers and drop counters."""
        return answer_as(self.request("status", {"queue": queue} if queue else {}),
                         StatusAnswer)

    def ping(self, timeout: float | None = None) -> PingAnswer:
        """Return the daemon's name; raise DaemonUnavailable if it does not answer."""
        return answer_as(self.request("ping", {}, timeout=timeout), PingAnswer)

    def show(self, queue: str, job_id: str) -> ShowAnswer:
        """The job's state, file, checkpoint and (when claimed) its lease."""
        return answer_as(self.request("show", {"queue": queue, "id": job_id}), ShowAnswer)

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
                  ) -> WaitAnswer:
        """Wait for several jobs (or, with None, every open job of the queue) to end."""
        loop = bodies.WaitLoop(queue, job_ids, timeout, self.timeout)
        while True:
            answer = self.ask(loop.next_ask())
            if loop.answered(answer):
                return answer_as(answer, WaitAnswer)

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

    def pause(self, queue: str, reason: str = "") -> PauseAnswer:
        """Pause ``queue`` (writes ``<queue>/paused`` with the reason): nothing more of it is
        claimed until :meth:`resume`; running jobs finish, submits are accepted."""
        return answer_as(self.request("pause", {"queue": queue, "reason": reason}),
                         PauseAnswer)

    def resume(self, queue: str) -> ResumeAnswer:
        """Resume ``queue`` (removes ``<queue>/paused``)."""
        return answer_as(self.request("resume", {"queue": queue}), ResumeAnswer)

    def limit(self, queue: str, changes: LimitChanges, reset: bool = False,
              key: str | None = None) -> LimitAnswer:
        """Set ``max_running`` and/or ``rate`` of ``queue`` in its ``limits.json`` (a None
        value removes one: the config's applies again); ``reset`` removes the file. With
        ``key`` (``"*"``: every key), that key's limits (and ``weight``) in the queue's
        ``key_limits.json`` instead (docs/guide/flow-control.md)."""
        return answer_as(self.request("limit", {
            "queue": queue, **changes, "reset": reset,
            **({"key": key} if key is not None else {})}), LimitAnswer)

    def run_schedule(self, name: str, by: str | None = None) -> SubmitAnswer:
        """Submit one job of schedule ``name`` now (its plan is left as it is); return the
        submit's answer (``id``, ``created``)."""
        return answer_as(self.request("run_schedule", {"name": name,
                                                       "by": by or who_am_i("client")}),
                         SubmitAnswer)

    def schedules(self) -> list[ScheduleRow]:
        """The schedules, with their next and last runs."""
        return list(answer_as(self.request("schedules"), SchedulesAnswer)["schedules"])

    def close(self) -> None:
        """Close the socket (and the context if the client made it). Idempotent; a closed
        client raises ClientClosed when it is used."""
        self._pipe.close()
        if self._direct is not None:
            self._direct.close()
        if self._own_context:
            end_context(self._ctx)  # never waits for ever (see end_context)
            self._own_context = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
