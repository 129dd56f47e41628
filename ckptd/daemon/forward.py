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
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

log = logging.getLogger(__name__)

FORWARDED = b"ckptd-fwd:"
MAX_SOCKETS = 256
IDLE = 60.0  # seconds before an unused forwarding socket is closed


@dataclass
class _Slot:
    sock: zmq.Socket[bytes]
    identity: bytes  # the client's, on our control socket
    endpoint: str
    used: float
    waiting: bool = False


class Forwarder:
    """The forwarding sockets of one daemon."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], poller: zmq.Poller,
                 reply: Callable[[bytes, list[bytes]], None], *,
                 max_message_size: int = 256 * 1024 * 1024) -> None:
        self.ctx = ctx
        self.poller = poller
        self.reply = reply  # sends frames to a client of the control socket
        self.max_message_size = max_message_size
        self.forwarded = 0
        self._slots: dict[tuple[bytes, str], _Slot] = {}
        self._by_sock: dict[Any, _Slot] = {}

    def send(self, identity: bytes, frames: list[bytes], endpoint: str) -> bool:
        """Send a request (its frames after the identity) on to ``endpoint``; False when it
        cannot be (then the caller tells the client where to ask)."""
        now = time.monotonic()
        slot = self._slots.get((identity, endpoint))
        if slot is None:
            if len(self._slots) >= MAX_SOCKETS and not self._evict():
                return False
            slot = self._open(identity, endpoint, now)
        try:
            slot.sock.send_multipart(frames, zmq.NOBLOCK)
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

    def read(self, events: dict[Any, int]) -> None:
        """Relay the replies that arrived to their clients."""
        for sock in [s for s in self._by_sock if events.get(s)]:
            slot = self._by_sock[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                slot.waiting = False
                slot.used = time.monotonic()
                self.reply(slot.identity, frames)

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
