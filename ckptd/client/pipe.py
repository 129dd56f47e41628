"""A client's connection to a daemon's control socket: many requests in flight on one
DEALER socket, each reply matched to its request by a tag (:mod:`ckptd.wire.protocol`).

Threads may share one :class:`Pipe` (and so one :class:`~ckptd.client.client.Client`): a
ZeroMQ socket is not thread-safe, so every use of it happens under one lock, and a thread
waiting for its reply waits either on a gate of its own (while another thread watches the
socket) or, as the one watcher, on the socket's file descriptor without the lock. Whoever
holds the lock reads every reply that has arrived before letting it go and wakes the owner
of each (only that thread: no herd), so a reply never waits for a thread that does not
look; a watcher that leaves wakes a waiting thread to watch in its place. A single thread
pays what it paid before: a send, a poll, a receive.

A request without an answer in time leaves the socket open when other replies came on it
since it was sent (the daemon is there and busy: a resend goes the same way); otherwise the
socket is closed and the next address taken, as before (a late reply can never be taken for
another request's: tags tell them apart).
"""

from __future__ import annotations

import itertools
import os
import select
import threading
import time
from typing import Any

import zmq

from ckptd.client.conversation import Outcome, Reply
from ckptd.core.errors import CkptdError, ConfigError, ProtocolError
from ckptd.wire import protocol
from ckptd.wire.endpoints import connect_endpoints
from ckptd.wire.frames import send_frames
from ckptd.wire.security import ClientCurve

CONNECT_TIMEOUT = 1.0  # an address that accepts no connection this fast: try the next one
MAX_MESSAGE = 256 * 1024 * 1024  # as the worker's socket


def open_dealer(sock: zmq.Socket[Any], endpoint: str, curve: ClientCurve | None) -> None:
    """Set up and connect a fresh DEALER ``sock`` to a daemon's control ``endpoint``."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue requests for a daemon not there
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
    if curve is not None:
        curve.apply_client(sock)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise ConfigError(f"cannot connect to {endpoint}: {exc.strerror}; expected "
                          "tcp://HOST:PORT, e.g. tcp://127.0.0.1:5550") from None


class Tags:
    """Tags for requests, unique per connection, and the reply of a tagged request."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new(self) -> bytes:
        """A fresh tag (8 bytes)."""
        return next(self._next).to_bytes(8, "big")

    @staticmethod
    def read(frames: list[bytes], endpoint: str) -> tuple[bytes, Reply | CkptdError]:
        """The tag of a reply and what it says (or the error of a reply that is not one)."""
        try:
            return protocol.reply_tag(frames), protocol.decode_reply(frames)
        except ProtocolError as exc:
            return b"", CkptdError(f"the daemon at {endpoint} sent a bad reply: {exc}")


class _Box:
    """Where a request's reply is put, and the gate its thread waits at."""

    __slots__ = ("reply", "gate", "rung")

    def __init__(self) -> None:
        self.reply: Reply | CkptdError | None = None
        self.gate = threading.Lock()
        self.gate.acquire()  # closed: the thread waits until it is rung
        self.rung = False

    def ring(self) -> None:
        """Wake the box's thread (with the pipe's lock held)."""
        if not self.rung:
            self.rung = True
            self.gate.release()


class Pipe:
    """The control connection of a blocking client, safe to share between threads."""

    def __init__(self, ctx: zmq.Context[Any], endpoints: str | list[str],
                 curve: ClientCurve | None = None) -> None:
        self.endpoints = connect_endpoints(endpoints)  # tcp:// is implied when missing
        self.curve = curve
        self._ctx = ctx
        self._current = 0
        self._lock = threading.Lock()
        self._sock: zmq.Socket[bytes] | None = None
        self._poll: select.poll | None = None
        self._generation = 0
        self._heard = 0.0  # when the last reply came on this socket
        self._watching: _Box | None = None  # the box of the thread watching the socket
        self._boxes: dict[bytes, _Box] = {}
        self._tags = Tags()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self.endpoints[self._current]

    def exchange(self, frames: list[bytes], wait: float) -> Outcome:
        """Send a request (``frames`` without a tag) and wait up to ``wait`` for its reply.

        Returns (whether it was handed to a connection, the decoded reply or None). Raises
        CkptdError for a reply that is not one.
        """
        tag = self._tags.new()
        with self._lock:
            sock = self._socket()
            generation = self._generation
            sock.setsockopt(zmq.SNDTIMEO, max(1, int(min(wait, CONNECT_TIMEOUT) * 1000)))
            started = time.monotonic()
            try:
                send_frames(sock, [tag, *frames])  # IMMEDIATE: waits for a connection
            except zmq.Again:
                self._reset(rotate=True)
                return False, None
            sent = time.monotonic()
            deadline = started + wait
            box = self._boxes[tag] = _Box()
            try:
                self._read_all()
                while box.reply is None and generation == self._generation:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if self._watching is not None:
                        self._wait_at_gate(box, left)
                    else:
                        self._watch(box, left)
            finally:
                del self._boxes[tag]
                if self._watching is None and self._boxes:
                    next(iter(self._boxes.values())).ring()  # someone must watch now
            if isinstance(box.reply, CkptdError):
                raise box.reply
            if box.reply is not None:
                return True, box.reply
            if generation == self._generation and self._heard < sent:
                self._reset(rotate=True)  # nothing at all came back since: a new connection
            return True, None

    def _wait_at_gate(self, box: _Box, left: float) -> None:
        """Wait (without the lock) until the box is rung: its reply came, the watcher left,
        or the socket was closed."""
        self._lock.release()
        try:
            box.gate.acquire(timeout=left)
        finally:
            self._lock.acquire()
            box.rung = False

    def _watch(self, box: _Box, left: float) -> None:
        """Wait on the socket's descriptor (without the lock) until something may have
        arrived, then read it all; called with the lock held, as the only watcher."""
        poll = self._poll
        assert poll is not None
        self._watching = box
        self._lock.release()
        try:
            poll.poll(max(1, int(left * 1000)))
        finally:
            self._lock.acquire()
            self._watching = None
        try:
            while os.read(self._wake_r, 64):
                pass
        except OSError:
            pass
        self._read_all()

    def _read_all(self) -> None:
        """Take every reply that has arrived and put it in its box (lock held).

        Must run after every use of the socket: a send or a look at the socket's events may
        consume the wake-up of its descriptor, which the watcher would then never see.
        """
        sock = self._sock
        if sock is None:
            return
        while int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            frames = sock.recv_multipart(zmq.NOBLOCK)
            self._heard = time.monotonic()
            tag, reply = Tags.read(frames, self.endpoint)
            box = self._boxes.get(tag) if tag else None
            if box is None and not tag and len(self._boxes) == 1:
                box = next(iter(self._boxes.values()))  # a daemon that does not tag replies
            if box is not None:
                box.reply = reply
                if box is self._watching:
                    self._ring()  # it waits on the descriptor, not at its gate
                else:
                    box.ring()

    def _ring(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def _socket(self) -> zmq.Socket[bytes]:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            open_dealer(sock, self.endpoint, self.curve)
            self._poll = select.poll()
            self._poll.register(int(sock.getsockopt(zmq.FD)), select.POLLIN)
            self._poll.register(self._wake_r, select.POLLIN)
            self._sock = sock
            self._heard = 0.0
        return self._sock

    def _reset(self, rotate: bool) -> None:
        """Close the socket (lock held); the requests waiting on it give up at once."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
            self._poll = None
            self._generation += 1
            self._ring()
            for box in self._boxes.values():
                box.ring()
        if rotate and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)

    def reset(self, rotate: bool) -> None:
        """Close the socket (the next request opens a new one), and with ``rotate`` go on to
        the next address."""
        with self._lock:
            self._reset(rotate)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        endpoint = connect_endpoints(endpoint)[0]
        with self._lock:
            if endpoint not in self.endpoints:
                self.endpoints.append(endpoint)
            self._reset(rotate=False)
            self._current = self.endpoints.index(endpoint)

    def close(self) -> None:
        """Close the socket and the wake-up pipe. Idempotent."""
        with self._lock:
            self._reset(rotate=False)
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
