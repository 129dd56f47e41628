"""Forwarding control requests to the daemon that leads their queue, and relaying replies.

A client may send any request to any daemon of a store. A request about a queue that
another daemon leads is sent on, unchanged, from a DEALER socket of this daemon to that
daemon's control socket, and the reply comes back the same way. Each client (its identity on
the control socket) gets a socket of its own per daemon forwarded to: a client sends one
request at a time, so the replies of one socket are that client's, in order. The forwarding
socket's identity starts with :data:`FORWARDED`, and a daemon never forwards a request that
came that way again (it answers where the queue is instead), so two daemons with different
views cannot bounce a request between them.

The sockets are registered in the daemon's poller; idle ones are closed after a minute and
the oldest when there are too many (the client is then told where to ask instead).

A request is never queued inside ZeroMQ for a daemon that is not connected (``IMMEDIATE``):
it is held here until the connection is up, and dropped after :data:`CONNECT` seconds with a
``TakingOver`` answer (nothing was applied; the client asks again, by when this daemon's
view of who leads the queue has caught up). Otherwise a request to a daemon that had just
died would be delivered to its restart long after the client was told it failed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import zmq

from ckptd.core.errors import CkptdError, TakingOver
from ckptd.wire.frames import waiting_messages

log = logging.getLogger(__name__)

READ_MOST = 1000  # replies read per socket and turn at most (the rest: the next turn)

FORWARDED = b"ckptd-fwd:"
MAX_SOCKETS = 256
IDLE = 60.0  # seconds before an unused forwarding socket is closed
CONNECT = 1.0  # seconds a request waits for the connection to the daemon it goes to


@dataclass
class _Slot:
    sock: zmq.Socket[bytes]
    identity: bytes  # the client's, on our control socket
    endpoint: str
    used: float
    waiting: bool = False
    held: list[bytes] | None = None  # a request waiting for the connection
    held_since: float = 0.0


class Forwarder:
    """The forwarding sockets of one daemon."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], poller: zmq.Poller,
                 reply: Callable[[bytes, list[bytes]], None],
                 refuse: Callable[[bytes, CkptdError], None], *,
                 max_message_size: int = 256 * 1024 * 1024) -> None:
        self.ctx = ctx
        self.poller = poller
        self.reply = reply  # sends frames to a client of the control socket
        self.refuse = refuse  # answers a client with an error
        self.max_message_size = max_message_size
        self.forwarded = 0
        self._slots: dict[tuple[bytes, str], _Slot] = {}
        self._by_sock: dict[zmq.Socket[bytes], _Slot] = {}

    def send(self, identity: bytes, frames: list[bytes], endpoint: str) -> bool:
        """Send a request (its frames after the identity) on to ``endpoint``; False when it
        cannot be (then the caller tells the client where to ask)."""
        now = time.monotonic()
        slot = self._slots.get((identity, endpoint))
        if slot is None:
            if len(self._slots) >= MAX_SOCKETS and not self._evict():
                return False
            slot = self._open(identity, endpoint, now)
        if slot.held is not None:  # the client gave up on that one: it goes nowhere
            slot.held = None
            self.poller.register(slot.sock, zmq.POLLIN)  # (no more wake-ups to send it)
        try:
            slot.sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # not connected (yet): hold it until it is, for a while
            slot.held, slot.held_since = frames, now
            self.poller.register(slot.sock, zmq.POLLIN | zmq.POLLOUT)
        except zmq.ZMQError as exc:
            log.debug("cannot forward to %s: %s", endpoint, exc)
            self._close(slot)
            return False
        slot.used = now
        slot.waiting = True
        self.forwarded += 1
        return True

    def _open(self, identity: bytes, endpoint: str, now: float) -> _Slot:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # nothing queued for a daemon not connected
        sock.setsockopt(zmq.ROUTING_ID, FORWARDED + os.urandom(8).hex().encode())
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_size)
        sock.connect(endpoint)
        slot = _Slot(sock, identity, endpoint, now)
        self._slots[(identity, endpoint)] = slot
        self._by_sock[sock] = slot
        self.poller.register(sock, zmq.POLLIN)
        return slot

    def _close(self, slot: _Slot) -> None:
        self._slots.pop((slot.identity, slot.endpoint), None)
        self._by_sock.pop(slot.sock, None)
        try:
            self.poller.unregister(slot.sock)
        except KeyError:
            pass
        slot.sock.close(0)

    def _evict(self) -> bool:
        idle = [s for s in self._slots.values() if not s.waiting]
        if not idle:
            return False
        self._close(min(idle, key=lambda s: s.used))
        return True

    def read(self, events: Mapping[object, int]) -> None:
        """Send the held requests whose connection is up, refuse those that waited too
        long, and relay the replies that arrived to their clients."""
        now = time.monotonic()
        for slot in [s for s in self._by_sock.values() if s.held is not None]:
            if events.get(slot.sock, 0) & zmq.POLLOUT:
                try:
                    slot.sock.send_multipart(slot.held, zmq.NOBLOCK)  # type: ignore[arg-type]
                except zmq.Again:
                    continue
                slot.held = None
                self.poller.register(slot.sock, zmq.POLLIN)
            elif now - slot.held_since > CONNECT:
                self.refuse(slot.identity, TakingOver(
                    f"the daemon at {slot.endpoint} that leads this queue does not answer; "
                    "ask again (another daemon takes its queues over)"))
                self._close(slot)
        for sock in [s for s in self._by_sock if events.get(s, 0) & zmq.POLLIN]:
            slot = self._by_sock[sock]
            for frames in waiting_messages(sock, READ_MOST):
                slot.waiting = False
                slot.used = time.monotonic()
                self.reply(slot.identity, frames)

    def abandon_held(self) -> None:
        """Drop every request still waiting for its connection, answering ``TakingOver``
        (nothing applied): called when a queue is found led by nobody, so that a copy held
        for a daemon that died cannot reach its restart after the client was told so."""
        for slot in [s for s in self._slots.values() if s.held is not None]:
            self.refuse(slot.identity, TakingOver(
                f"the daemon at {slot.endpoint} did not answer; ask again"))
            self._close(slot)

    def tidy(self) -> None:
        """Close the sockets unused for :data:`IDLE` seconds (a reply that never came, a
        client that left)."""
        now = time.monotonic()
        for slot in [s for s in self._slots.values() if now - s.used > IDLE]:
            self._close(slot)

    def close(self) -> None:
        """Close every socket. Idempotent."""
        for slot in list(self._slots.values()):
            self._close(slot)
