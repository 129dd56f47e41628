"""The client for asyncio applications (a FastAPI or aiohttp handler, a crawler):

    from ckptd import AsyncClient

    async with AsyncClient("tcp://10.0.0.5:5550") as client:
        job_id = await client.submit("price", {"sku": "A-1"})   # stored durably
        ids = await client.submit_many("price", [{"sku": "B-2"}, {"sku": "C-3"}])
        print(await client.wait("price", job_id, timeout=60))   # "done" or "failed"
        print(await client.result("price", job_id))

Every call waits without blocking the event loop: the requests of all tasks are in flight
together on one DEALER socket (ZeroMQ's asyncio support), each reply matched to its request
by a tag, and the daemon stores the submits that arrive together under one flush. A submit
returns once the job is stored as the daemon's fsync mode says, as with
:class:`~ckptd.client.client.Client`, whose rules it shares (resends, standbys, leaders:
:mod:`ckptd.client.conversation`; request bodies: :mod:`ckptd.client.bodies`). It always goes
through the daemon, also on the daemon's host: the event loop never touches the disk.

One ``AsyncClient`` serves one event loop; make it inside that loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import zmq
import zmq.asyncio

from ckptd.client import bodies
from ckptd.client.conversation import RESEND_FIRST, Ask, Exchange, Outcome, Reply, conversation
from ckptd.client.pipe import CONNECT_TIMEOUT, Tags, open_dealer
from ckptd.core.answers import Submitted
from ckptd.core.errors import CkptdError, DaemonUnavailable
from ckptd.wire.endpoints import connect_endpoints
from ckptd.wire.protocol import Body
from ckptd.wire.security import ClientCurve

DEFAULT_TIMEOUT = 10.0


class AsyncPipe:
    """The control connection of an :class:`AsyncClient`: one socket, a reader task that
    hands each reply to the request waiting for it."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoints: str | list[str],
                 curve: ClientCurve | None) -> None:
        self.endpoints = connect_endpoints(endpoints)
        self.curve = curve
        self._ctx = ctx
        self._current = 0
        self._sock: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._generation = 0
        self._heard = 0.0
        self._waiting: dict[bytes, asyncio.Future[Reply | None]] = {}
        self._tags = Tags()

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self.endpoints[self._current]

    async def exchange(self, frames: list[bytes], wait: float) -> Outcome:
        """Send a request (``frames`` without a tag) and wait up to ``wait`` for its reply."""
        sock = self._socket()
        generation = self._generation
        tag = self._tags.new()
        reply: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._waiting[tag] = reply
        started = time.monotonic()
        try:
            try:
                async with asyncio.timeout(min(wait, CONNECT_TIMEOUT)):
                    await sock.send_multipart([tag, *frames])  # waits for a connection
            except (TimeoutError, zmq.Again):
                self._reset(rotate=True, generation=generation)
                return False, None
            sent = time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, started + wait - sent)):
                    return True, await reply
            except TimeoutError:
                if self._heard < sent:  # nothing at all came back since: a new connection
                    self._reset(rotate=True, generation=generation)
                return True, None
        finally:
            self._waiting.pop(tag, None)

    async def _read(self, sock: zmq.asyncio.Socket, endpoint: str) -> None:
        """Hand every reply that comes on ``sock`` to its request (the reader task)."""
        while True:
            frames = await sock.recv_multipart()
            while True:
                self._heard = time.monotonic()
                tag, reply = Tags.read(frames, endpoint)
                waiting = self._waiting.get(tag) if tag else None
                if waiting is None and not tag and len(self._waiting) == 1:
                    waiting = next(iter(self._waiting.values()))  # an untagged reply
                if waiting is not None and not waiting.done():
                    if isinstance(reply, CkptdError):
                        waiting.set_exception(reply)
                    else:
                        waiting.set_result(reply)
                try:  # what else has come, without a trip through the event loop
                    frames = await sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            open_dealer(sock, self.endpoint, self.curve)
            self._sock = sock
            self._heard = 0.0
            self._reader = asyncio.get_running_loop().create_task(
                self._read(sock, self.endpoint))
        return self._sock

    def _reset(self, rotate: bool, generation: int | None = None) -> None:
        if generation is not None and generation != self._generation:
            return  # another request already did
        if self._sock is not None:
            if self._reader is not None:
                self._reader.cancel()
                self._reader = None
            self._sock.close(0)
            self._sock = None
            self._generation += 1
            for waiting in self._waiting.values():  # not answered on this one: a silence
                if not waiting.done():
                    waiting.set_result(None)
        if rotate and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)

    def reset(self, rotate: bool) -> None:
        """Close the socket (the next request opens a new one), and with ``rotate`` go on to
        the next address."""
        self._reset(rotate)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        endpoint = connect_endpoints(endpoint)[0]
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        self._reset(rotate=False)
        self._current = self.endpoints.index(endpoint)

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._reset(rotate=False)


class AsyncClient:
    """A connection to a daemon's control socket for asyncio code (see the module)."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.asyncio.Context | None = None,
                 curve: ClientCurve | None = None) -> None:
        self.timeout = timeout
        self._own_context = context is None
        self._ctx = context or zmq.asyncio.Context()
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
                     max_attempts: int | None = None, delay: float | None = None,
                     batch: str | None = None, time_limit: float | None = None,
                     priority: int | None = None) -> str:
        """Submit a job and return its id once the daemon has stored it durably (the same
        options as :meth:`ckptd.client.client.Client.submit`)."""
        made = await self.submit_job(queue, payload, job_id=id, max_attempts=max_attempts,
                                     delay=delay, batch=batch, time_limit=time_limit,
                                     priority=priority)
        return made.id

    async def submit_job(self, queue: str, payload: Any = None, *, job_id: str | None = None,
                         max_attempts: int | None = None, delay: float | None = None,
                         if_exists: str = "error", batch: str | None = None,
                         time_limit: float | None = None, priority: int | None = None
                         ) -> Submitted:
        """Submit a job; return its id and whether this call created it."""
        sub = bodies.submit_request(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                    delay=delay, if_exists=if_exists, batch=batch,
                                    time_limit=time_limit, priority=priority)
        try:
            return bodies.submitted(await self.ask(sub.ask(self.timeout)))
        except DaemonUnavailable as exc:
            raise bodies.unconfirmed(exc, queue, [sub.id]) from None

    async def submit_many(self, queue: str, payloads: list[Any],
                          ids: list[str] | None = None) -> list[str]:
        """Submit many jobs in one request; return their ids (in order). With ``ids`` a
        repeated call returns the jobs made by the first one instead of making more."""
        many = bodies.many_request(queue, payloads, ids)
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
                        ) -> Body:
        """Wait for several jobs (or, with None, every open job of the queue) to end."""
        loop = bodies.WaitLoop(queue, job_ids, timeout, self.timeout)
        while True:
            answer = await self.ask(loop.next_ask())
            if loop.answered(answer):
                return answer

    async def result(self, queue: str, job_id: str) -> Any:
        """The result of a done job."""
        answer = await self.request("fetch", {"queue": queue, "id": job_id, "what": "result"})
        return answer["result"]

    async def status(self, queue: str | None = None) -> Body:
        """Counts per state per queue, workers and drop counters."""
        return await self.request("status", {"queue": queue} if queue else {})

    async def ping(self, timeout: float | None = None) -> Body:
        """Return the daemon's name; raise DaemonUnavailable if it does not answer."""
        return await self.request("ping", {}, timeout=timeout)

    async def show(self, queue: str, job_id: str) -> Body:
        """The job's state, file, checkpoint and (when claimed) its lease."""
        return await self.request("show", {"queue": queue, "id": job_id})

    def close(self) -> None:
        """Close the socket (and the context if the client made it). Idempotent."""
        self._pipe.close()
        if self._own_context:
            self._ctx.term()
            self._own_context = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

