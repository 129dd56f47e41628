"""The client for asyncio applications (a FastAPI or aiohttp handler, a crawler):

    from ckptd import AsyncClient

    async with AsyncClient("tcp://10.0.0.5:5550") as client:
        job_id = await client.submit("price", {"sku": "A-1"})   # stored durably
        ids = await client.submit_many("price", [{"sku": "B-2"}, {"sku": "C-3"}])
        print(await client.wait("price", job_id, timeout=60))   # "done" or "failed"
        print(await client.result("price", job_id))

Every call waits without blocking the event loop: the requests of all tasks are in flight
together on one DEALER socket, whose descriptor the event loop watches, each reply matched
to its request by a tag (:mod:`ckptd.client.connection`), and the daemon stores the submits
that arrive together under one flush. A submit
returns once the job is stored as the daemon's fsync mode says, as with
:class:`~ckptd.client.client.Client`, whose rules it shares (resends, standbys, leaders:
:mod:`ckptd.client.conversation`; request bodies: :mod:`ckptd.client.bodies`). It always goes
through the daemon, also on the daemon's host: the event loop never touches the disk.

One ``AsyncClient`` serves one event loop; make it inside that loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Unpack

import zmq

from ckptd.client import bodies
from ckptd.client.answer_shapes import answer_as
from ckptd.client.connection import CONNECT_TIMEOUT, Connection, end_context
from ckptd.client.conversation import RESEND_FIRST, Ask, Exchange, Outcome, Reply, conversation
from ckptd.client.hooks import HookSpec
from ckptd.client.preparing import Preparer
from ckptd.codec.crypto import Keyring
from ckptd.core.answer_types import (
    GraphNode,
    PingAnswer,
    ShowAnswer,
    SignalAnswer,
    StatusAnswer,
    WaitAnswer,
)
from ckptd.core.answers import Submitted
from ckptd.core.errors import CkptdError, DaemonUnavailable
from ckptd.wire.frames import NOBLOCK, send_frames
from ckptd.wire.protocol import Body
from ckptd.wire.security import ClientCurve

DEFAULT_TIMEOUT = 10.0
READ_AT_ONCE = 64  # replies handed over in one go before the loop runs others' callbacks
CONNECT_POLL = 0.005  # seconds between looks for a connection that is not up yet
# Until the socket's first reply, a request also looks at the handshake this often: the
# monitor's descriptor signals an edge, and one that came before it was watched is missed.
HANDSHAKE_POLL = 0.1


class AsyncPipe(Connection["asyncio.Future[Reply | None]"]):
    """The control connection of an :class:`AsyncClient`: the socket's descriptor is watched
    by the event loop, which hands each reply to the future of the request it answers."""

    owner = "AsyncClient"

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoints: str | list[str],
                 curve: ClientCurve | None) -> None:
        super().__init__(ctx, endpoints, curve)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._monitor_fd: int | None = None  # the handshake's (keys that do not fit)
        self._reading_later = False
        self._answered = False  # a reply came on this socket: its handshake succeeded
        self._problem: CkptdError | None = None  # heard while no request waited for a reply

    async def exchange(self, frames: list[bytes], wait: float) -> Outcome:
        """Send a request (``frames`` without a tag) and wait up to ``wait`` for its reply."""
        loop = asyncio.get_running_loop()
        self._raise_problem()
        sock = self.socket()
        generation = self.generation
        tag = self.new_tag()
        started = time.monotonic()
        reply: asyncio.Future[Reply | None] = loop.create_future()
        try:
            if not await self._send(sock, [tag, *frames], started + min(wait, CONNECT_TIMEOUT)):
                if generation == self.generation:
                    self.close_socket(rotate=True)
                return False, None
            self.waiting[tag] = reply  # (no reply can have been read since the send)
            sent = time.monotonic()
            self._read_all()  # the send may have taken the descriptor's signal
            try:
                return True, await self._reply(reply, started + wait)
            except TimeoutError:
                if generation == self.generation and self.silent_since(sent):
                    self.close_socket(rotate=True)
                return True, None
        finally:
            self.waiting.pop(tag, None)

    async def _reply(self, reply: asyncio.Future[Reply | None], deadline: float
                     ) -> Reply | None:
        """The reply, by ``deadline`` (TimeoutError then); until the socket's first reply,
        the handshake is looked at meanwhile (keys that do not fit fail ``reply`` at once)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if self._answered:
                async with asyncio.timeout(left):
                    return await reply
            try:
                async with asyncio.timeout(min(left, HANDSHAKE_POLL)):
                    return await asyncio.shield(reply)
            except TimeoutError:
                if not reply.done():
                    self.check_handshake()

    async def _send(self, sock: zmq.Socket[bytes], frames: list[bytes], until: float) -> bool:
        """Send without blocking the loop; while the socket has no connection yet (it is
        new, or the daemon restarts), look again every few milliseconds until ``until``.
        Raises AuthError when the handshake says the keys do not fit."""
        while sock is self.sock:  # (another request may close it while this one waits)
            try:
                send_frames(sock, frames, NOBLOCK)
                return True
            except zmq.Again:
                problem = self.check_handshake()
                if problem is not None:
                    raise problem from None
                if time.monotonic() >= until:
                    return False
                await asyncio.sleep(CONNECT_POLL)
        self._raise_problem()  # what closed the socket meanwhile, if it was the keys
        return False

    def _watch_handshake(self) -> None:
        """The monitor's descriptor signalled: a problem fails the requests waiting for a
        reply, and is kept for those still trying to send."""
        problem = self.check_handshake()
        if problem is not None:
            self._problem = problem

    def _raise_problem(self) -> None:
        problem, self._problem = self._problem, None
        if problem is not None:
            raise problem

    def _read_all(self) -> None:
        """Hand the replies that have arrived to their futures; a long burst in parts, so
        that other callbacks run in between."""
        self._reading_later = False
        for waiting, reply in self.replies(READ_AT_ONCE):
            self._answered = True
            if waiting.done():
                continue
            if isinstance(reply, CkptdError):
                waiting.set_exception(reply)
            else:
                waiting.set_result(reply)
        if self.more_waiting() and self._loop is not None:
            self._reading_later = True  # (the look above took the descriptor's signal)
            self._loop.call_soon(self._read_all)

    def opened(self, sock: zmq.Socket[bytes]) -> None:
        self._loop = asyncio.get_running_loop()
        self._answered = False
        self._fd = int(sock.getsockopt(zmq.FD))
        self._loop.add_reader(self._fd, self._read_all)
        if self.handshake is not None:
            self._monitor_fd = int(self.handshake.monitor.getsockopt(zmq.FD))
            self._loop.add_reader(self._monitor_fd, self._watch_handshake)

    def fail(self, waiter: asyncio.Future[Reply | None], error: CkptdError) -> None:
        if not waiter.done():
            waiter.set_exception(error)

    def closing(self, sock: zmq.Socket[bytes]) -> None:
        if self._loop is not None:
            for fd in (self._fd, self._monitor_fd):
                try:
                    if fd is not None:
                        self._loop.remove_reader(fd)
                except RuntimeError:  # the loop is closed already
                    pass
        self._fd = self._monitor_fd = None
        for waiting in self.waiting.values():  # not answered on this one: a silence
            if not waiting.done():
                waiting.set_result(None)

    def reset(self, rotate: bool) -> None:
        """Close the socket (the next request opens a new one), and with ``rotate`` go on to
        the next address."""
        self.close_socket(rotate)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        self.move_to(endpoint)

    def close(self) -> None:
        """Close the socket; the pipe is then closed for good (a use raises ClientClosed).
        Idempotent."""
        self.closed = True
        self.close_socket(rotate=False)


class AsyncClient:
    """A connection to a daemon's control socket for asyncio code (see the module)."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve: ClientCurve | None = None,
                 hooks: Sequence[HookSpec] | None = None, keys: Keyring | None = None,
                 tracing: str = "off", tracing_baggage: bool = False) -> None:
        """``hooks``, ``keys``, ``tracing``: as for :class:`~ckptd.client.client.Client`."""
        self._prep = Preparer(hooks, keys, tracing, tracing_baggage)
        self.timeout = timeout
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._pipe = AsyncPipe(self._ctx, endpoints, curve)

    @property
    def endpoints(self) -> list[str]:
        """The daemons' addresses, tried in turn."""
        return self._pipe.endpoints

    async def request(self, kind: str, body: dict[str, Any] | None = None,
                      timeout: float | None = None, *, repeatable: bool | None = None,
                      resend_after: float = RESEND_FIRST) -> Body:
        """Send one control request and return the reply body (see
        :meth:`ckptd.client.client.Client.request`)."""
        return await self.ask(Ask(kind, body or {}, self.timeout if timeout is None
                                  else timeout, repeatable=repeatable,
                                  resend_after=resend_after))

    async def ask(self, ask: Ask) -> Body:
        """Carry out one request planned as an :class:`~ckptd.client.conversation.Ask`."""
        steps = conversation(self._pipe, ask)
        step = next(steps)
        while True:
            try:
                if isinstance(step, Exchange):
                    step = steps.send(await self._pipe.exchange(step.frames, step.wait))
                else:
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
            except StopIteration as end:
                answer: Body = end.value
                return answer

    # -- producing -------------------------------------------------------------------------

    async def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
                     **options: Unpack[bodies.SubmitOptions]) -> str:
        """Submit a job and return its id once the daemon has stored it durably (the same
        options as :meth:`ckptd.client.client.Client.submit`)."""
        return (await self.submit_job(queue, payload, job_id=id, **options)).id

    async def submit_job(self, queue: str, payload: Any = None,
                         **options: Unpack[bodies.JobOptions]) -> Submitted:
        """Submit a job; return its id and whether this call created it (the same options
        as :meth:`ckptd.client.client.Client.submit_job`)."""
        sub = bodies.submit_request(queue, payload, **options, prep=self._prep)
        try:
            return bodies.submitted(await self.ask(sub.ask(self.timeout)))
        except DaemonUnavailable as exc:
            raise bodies.unconfirmed(exc, queue, [sub.id]) from None

    async def submit_many(self, queue: str, payloads: list[Any],
                          ids: list[str] | None = None, key: str | None = None) -> list[str]:
        """Submit many jobs in one request; return their ids (in order). With ``ids`` a
        repeated call returns the jobs made by the first one instead of making more;
        ``key``: the key of all of them."""
        many = bodies.many_request(queue, payloads, ids, self._prep, key)
        try:
            answer = await self.ask(many.ask(self.timeout))
        except DaemonUnavailable as exc:
            raise bodies.unconfirmed(exc, queue, many.ids) from None
        return bodies.submitted_many(answer)

    # -- looking ---------------------------------------------------------------------------

    async def wait(self, queue: str, job_id: str, timeout: float = 60.0) -> str:
        """Wait until a job is done or failed; return that state (WaitTimeout after
        ``timeout`` seconds)."""
        answer = await self.wait_many(queue, [job_id], timeout)
        return str(answer["states"][job_id])

    async def wait_many(self, queue: str, job_ids: list[str] | None, timeout: float = 60.0
                        ) -> WaitAnswer:
        """Wait for several jobs (or, with None, every open job of the queue) to end."""
        loop = bodies.WaitLoop(queue, job_ids, timeout, self.timeout)
        while True:
            answer = await self.ask(loop.next_ask())
            if loop.answered(answer):
                return answer_as(answer, WaitAnswer)

    async def result(self, queue: str, job_id: str) -> Any:
        """The result of a done job (opened when this client holds the keys it was sealed
        with)."""
        answer = await self.request("fetch", {"queue": queue, "id": job_id, "what": "result"})
        return self._prep.result(answer["result"], f"{queue}/{job_id}")

    async def status(self, queue: str | None = None) -> StatusAnswer:
        """Counts per state per queue, workers and drop counters."""
        return answer_as(await self.request("status", {"queue": queue} if queue else {}),
                         StatusAnswer)

    async def ping(self, timeout: float | None = None) -> PingAnswer:
        """Return the daemon's name; raise DaemonUnavailable if it does not answer."""
        return answer_as(await self.request("ping", {}, timeout=timeout), PingAnswer)

    async def show(self, queue: str, job_id: str) -> ShowAnswer:
        """The job's state, file, checkpoint and (when claimed) its lease."""
        return answer_as(await self.request("show", {"queue": queue, "id": job_id}),
                         ShowAnswer)

    # -- work that waits (docs/guide/graphs.md) ---------------------------------------------

    async def signal(self, queue: str, job_id: str, name: str, data: Any = None
                     ) -> SignalAnswer:
        """Send the signal ``name`` to a job (see :meth:`ckptd.Client.signal`)."""
        return answer_as(await self.request("signal", bodies.signal_body(queue, job_id, name,
                                                                         data)), SignalAnswer)

    async def graph(self, queue: str, job_id: str, depth: int | None = None) -> GraphNode:
        """A job's parents, children, dependents and batch, with their states."""
        return answer_as(await self.request("graph", bodies.graph_body(queue, job_id, depth),
                                            timeout=bodies.GRAPH_TIMEOUT), GraphNode)

    def close(self) -> None:
        """Close the socket (and the context if the client made it). Idempotent."""
        self._pipe.close()
        if self._own_context:
            # destroy, not term: a socket an interrupt (Ctrl-C) left half made would keep
            # term waiting for ever
            end_context(self._ctx)
            self._own_context = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

