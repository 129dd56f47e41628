"""A client's DEALER socket to a daemon's control socket, with many requests in flight: each
request carries a tag (:mod:`ckptd.wire.protocol`) and each reply is handed to whoever
waits for the request it answers. The part the blocking :class:`~ckptd.client.pipe.Pipe`
and the asyncio :class:`~ckptd.client.async_client.AsyncPipe` share: the socket, the tags,
reading replies, closing and choosing the address, and what the socket's handshake says of
keys that do not fit the daemon's (:mod:`ckptd.wire.handshake`).

ZeroMQ's socket descriptor only says that something may have changed, and only once:
whoever uses the socket (a send, a look at its events) may take that signal. So every use
is followed by :meth:`Connection.replies` (read everything that has arrived), and a waiter
never sleeps on the descriptor while a reply sits unread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

import zmq

from ckptd.client.conversation import Reply
from ckptd.core.errors import AuthError, CkptdError, ClientClosed, ConfigError, ProtocolError
from ckptd.wire import protocol
from ckptd.wire.endpoints import connect_endpoints
from ckptd.wire.frames import NOBLOCK, has_input, recv_frames
from ckptd.wire.handshake import HandshakeWatch
from ckptd.wire.security import ClientCurve

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0  # an address that accepts no connection this fast: try the next one
MAX_MESSAGE = 256 * 1024 * 1024  # as the worker's socket

W = TypeVar("W")


class Connection(Generic[W]):
    """The socket and the requests waiting on it, each as a ``W`` (a thread's box, a
    future) under its tag."""

    owner = "Client"  # the class its user holds, as a closed one names it

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoints: str | list[str],
                 curve: ClientCurve | None) -> None:
        self.endpoints = connect_endpoints(endpoints)  # tcp:// is implied when missing
        self.curve = curve
        self.ctx = ctx
        self.current = 0
        self.sock: zmq.Socket[bytes] | None = None
        self.handshake: HandshakeWatch | None = None  # the socket's, while it is open
        self.closed = False  # closed by its client: it opens no socket any more
        self.generation = 0  # counts the sockets closed: a request knows which it used
        self.heard = 0.0  # when the last reply came on this socket
        self.waiting: dict[bytes, W] = {}
        self._tags = itertools.count(1)

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self.endpoints[self.current]

    def new_tag(self) -> bytes:
        """A tag no request in flight on this connection has."""
        return next(self._tags).to_bytes(8, "big")

    def socket(self) -> zmq.Socket[bytes]:
        """The socket, connected to the current address (a new one when there is none).
        Raises ClientClosed once the client was closed."""
        self.check_open()
        if self.sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            watch: HandshakeWatch | None = None
            try:
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.IMMEDIATE, 1)  # no requests queued for a daemon not there
                sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
                if self.curve is not None:
                    self.curve.apply_client(sock)
                # Keys that do not fit the daemon's are told by the handshake, not by silence.
                watch = HandshakeWatch(sock, self.endpoint, self.curve is not None)
                sock.connect(self.endpoint)
            except BaseException as exc:  # (a Ctrl-C too: no socket left half made)
                if watch is not None:
                    watch.close()
                sock.close(0)
                if isinstance(exc, zmq.ZMQError):
                    raise ConfigError(f"cannot connect to {self.endpoint}: {exc.strerror}; "
                                      "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5550"
                                      ) from None
                raise
            self.sock, self.handshake = sock, watch
            self.heard = 0.0
            self.opened(sock)
        return self.sock

    def opened(self, sock: zmq.Socket[bytes]) -> None:
        """A new socket is up (subclasses watch its descriptor, and its handshake's)."""

    def check_open(self) -> None:
        """Raise ClientClosed when the client was closed."""
        if self.closed:
            raise ClientClosed(f"this {self.owner} (of {', '.join(self.endpoints)}) is closed: "
                               "it was used after close() or after its 'with' block; make a "
                               "new one")

    def check_handshake(self) -> AuthError | None:
        """What the socket's handshakes so far say is wrong with this client's keys (a
        mechanism that differs, a key the daemon refused, a server key not the daemon's),
        or None. When something is, every request waiting on the socket is failed with it
        and the socket closed (the next address is not tried: the keys are the same)."""
        problem = self.handshake.problem() if self.handshake is not None else None
        if problem is not None:
            for waiter in self.waiting.values():
                self.fail(waiter, problem)
            self.close_socket(rotate=False)
        return problem

    def fail(self, waiter: W, error: CkptdError) -> None:
        """End a waiting request with ``error`` (before the socket is closed)."""
        raise NotImplementedError

    def replies(self, limit: int = 1 << 30) -> Iterator[tuple[W, Reply | CkptdError]]:
        """Read the replies that have arrived (at most ``limit``) and yield each with the
        request waiting for it; a reply nobody waits for any more is dropped (it came after
        its request gave up). A reply without a tag (a daemon that does not tag them) goes
        to the only request in flight, if there is just one."""
        sock = self.sock
        count = 0
        while sock is not None and count < limit \
                and has_input(sock):
            frames = recv_frames(sock, NOBLOCK)
            count += 1
            self.heard = time.monotonic()
            try:
                tag = protocol.reply_tag(frames)
                reply: Reply | CkptdError = protocol.decode_reply(frames)
            except ProtocolError as exc:
                tag, reply = b"", CkptdError(f"the daemon at {self.endpoint} sent a bad "
                                             f"reply: {exc}")
            waiter = self.waiting.get(tag) if tag else None
            if waiter is None and not tag and len(self.waiting) == 1:
                waiter = next(iter(self.waiting.values()))
            if waiter is not None:
                yield waiter, reply

    def more_waiting(self) -> bool:
        """Whether a reply is readable now (after :meth:`replies` stopped at its limit)."""
        sock = self.sock
        return sock is not None and has_input(sock)

    def close_socket(self, rotate: bool) -> bool:
        """Close the socket (the next request opens a new one) and, with ``rotate``, go on
        to the next address; True when a socket was closed."""
        closed = self.sock is not None
        if self.sock is not None:
            self.closing(self.sock)
            if self.handshake is not None:
                self.handshake.close()
                self.handshake = None
            self.sock.close(0)
            self.sock = None
            self.generation += 1
        if rotate and len(self.endpoints) > 1:
            self.current = (self.current + 1) % len(self.endpoints)
        return closed

    def closing(self, sock: zmq.Socket[bytes]) -> None:
        """The socket is about to be closed (subclasses stop watching it)."""

    def silent_since(self, sent: float) -> bool:
        """True when no reply at all came on this socket since ``sent``: a request without
        an answer then takes a new connection (the next address, if any), where one whose
        socket others' replies come on just waits longer or is sent again on it."""
        return self.heard < sent

    def move_to(self, endpoint: str) -> None:
        """Use ``endpoint`` from now on (a daemon named as a queue's leader)."""
        endpoint = connect_endpoints(endpoint)[0]
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        self.close_socket(rotate=False)
        self.current = self.endpoints.index(endpoint)

def end_context(ctx: zmq.Context[zmq.Socket[bytes]], wait: float = 2.0) -> None:
    """Destroy a client's own context without hanging: ``zmq_ctx_term`` waits for every
    socket of the context, and a socket an interrupt (Ctrl-C) left half made, which
    ``destroy`` does not know, kept a demo's Ctrl-C waiting for ever. The wait runs in a
    thread given ``wait`` seconds; past them the process goes on (its exit ends it)."""
    ender = threading.Thread(target=ctx.destroy, kwargs={"linger": 0},
                             name="ckptd-client-context", daemon=True)
    ender.start()
    ender.join(wait)
    if ender.is_alive():
        log.warning("a client's ZeroMQ context did not end within %gs (a socket left open "
                    "by an interrupt); going on without it", wait)
