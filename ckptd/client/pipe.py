"""The blocking client's connection: many requests in flight on one DEALER socket, from as
many threads as share the :class:`~ckptd.client.client.Client` (the socket, tags and
replies: :mod:`ckptd.client.connection`).

A ZeroMQ socket is not thread-safe, so every use of it happens under one lock, and a thread
waiting for its reply waits either at a gate of its own (while another thread watches the
socket) or, as the one watcher, on the socket's file descriptor without the lock. Whoever
holds the lock reads every reply that has arrived before letting it go and opens the gate of
each one's thread (only that thread: no herd); a watcher that leaves wakes a waiting thread
to watch in its place. A single thread pays what it paid before: a send, a poll, a receive.

A request without an answer in time leaves the socket open when other replies came on it
since it was sent (the daemon is there and busy: a resend goes the same way); otherwise the
socket is closed and the next address taken, as before (a late reply can never be taken for
another request's: tags tell them apart). Keys that do not fit the daemon's end the requests
at once, with an error that says which (the handshake's failures, watched with the replies).
"""

from __future__ import annotations

import os
import select
import threading
import time

import zmq

from ckptd.client.connection import CONNECT_TIMEOUT, Connection
from ckptd.client.conversation import Outcome, Reply
from ckptd.core.errors import CkptdError
from ckptd.wire.frames import send_frames
from ckptd.wire.security import ClientCurve


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


class Pipe(Connection[_Box]):
    """The control connection of a blocking client, safe to share between threads."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoints: str | list[str],
                 curve: ClientCurve | None = None) -> None:
        super().__init__(ctx, endpoints, curve)
        self._lock = threading.Lock()
        self._poll: select.poll | None = None
        self._monitor_fd = -1  # the handshake's (keys that do not fit)
        self._watching: _Box | None = None  # the box of the thread watching the socket
        self._send_timeout = -1  # the socket's SNDTIMEO (ms): set again only when it changes
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def exchange(self, frames: list[bytes], wait: float) -> Outcome:
        """Send a request (``frames`` without a tag) and wait up to ``wait`` for its reply.

        Returns (whether it was handed to a connection, the decoded reply or None). Raises
        CkptdError for a reply that is not one.
        """
        tag = self.new_tag()
        with self._lock:
            sock = self.socket()
            generation = self.generation
            timeout = max(1, int(min(wait, CONNECT_TIMEOUT) * 1000))
            if timeout != self._send_timeout:  # (the same for nearly every request)
                sock.setsockopt(zmq.SNDTIMEO, timeout)
                self._send_timeout = timeout
            started = time.monotonic()
            try:
                send_frames(sock, [tag, *frames])  # IMMEDIATE: waits for a connection
            except zmq.Again:
                problem = self.check_handshake()
                if problem is not None:
                    raise problem from None
                self.close_socket(rotate=True)
                return False, None
            sent = time.monotonic()
            deadline = started + wait
            box = self.waiting[tag] = _Box()
            try:
                self._read_all()
                while box.reply is None and generation == self.generation:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if self._watching is not None:
                        self._wait_at_gate(box, left)
                    else:
                        self._watch(box, left)
            finally:
                del self.waiting[tag]
                if self._watching is None and self.waiting:
                    next(iter(self.waiting.values())).ring()  # someone must watch now
            if isinstance(box.reply, CkptdError):
                raise box.reply
            if box.reply is not None:
                return True, box.reply
            if generation == self.generation and self.silent_since(sent):
                self.close_socket(rotate=True)
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
            ready = poll.poll(max(1, int(left * 1000)))
        finally:
            self._lock.acquire()
            self._watching = None
        try:
            while os.read(self._wake_r, 64):
                pass
        except OSError:
            pass
        self._read_all()
        if any(fd == self._monitor_fd for fd, _ in ready):
            self.check_handshake()  # (its descriptor stays readable until it is read)

    def _read_all(self) -> None:
        """Put every reply that has arrived in its box and wake its thread (lock held)."""
        for box, reply in self.replies():
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

    def opened(self, sock: zmq.Socket[bytes]) -> None:
        self._send_timeout = -1
        self._poll = select.poll()
        self._poll.register(int(sock.getsockopt(zmq.FD)), select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        if self.handshake is not None:
            self._monitor_fd = int(self.handshake.monitor.getsockopt(zmq.FD))
            self._poll.register(self._monitor_fd, select.POLLIN)

    def fail(self, waiter: _Box, error: CkptdError) -> None:
        if waiter.reply is None:
            waiter.reply = error  # (closing the socket rings it)

    def closing(self, sock: zmq.Socket[bytes]) -> None:
        self._poll = None
        self._monitor_fd = -1
        self._ring()  # the watcher gives up on this socket
        for box in self.waiting.values():
            box.ring()

    def reset(self, rotate: bool) -> None:
        """Close the socket (the next request opens a new one), and with ``rotate`` go on to
        the next address."""
        with self._lock:
            self.close_socket(rotate)

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a daemon named as a queue's leader)."""
        with self._lock:
            self.move_to(endpoint)

    def close(self) -> None:
        """Close the socket and the wake-up pipe; the pipe is then closed for good (a use
        raises ClientClosed). Idempotent."""
        with self._lock:
            self.closed = True
            self.close_socket(rotate=False)
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
