"""The worker's connection to its daemon's dispatch socket: one DEALER socket, and a monitor
that says when the connection comes back after it was lost (a daemon restart).

Messages queued while the daemon is away are delivered when it is back (ZeroMQ keeps them in
the socket), but what was already on its way when the daemon died is lost: on a reconnect
the worker says hello again, naming the attempts it still runs, and sends again what the
daemon has not confirmed (:mod:`ckptd.worker.unconfirmed`).
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils.monitor import recv_monitor_message

from ckptd.core.errors import ProtocolError
from ckptd.wire import protocol
from ckptd.wire.frames import NOBLOCK, send_frames, waiting_messages
from ckptd.wire.messages import FromDaemon
from ckptd.wire.security import ClientCurve

log = logging.getLogger(__name__)

READ_MOST = 1000  # messages read per wake at most (the rest: at the next, at once)

Message = tuple[bytes, dict[str, object]]


class DaemonLink:
    """A dispatch socket and its connection monitor."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], name: str,
                 curve: ClientCurve | None) -> None:
        self.ctx = ctx
        self.name = name
        self.curve = curve
        self.sock: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self._connects = 0
        self._lost = False

    def open(self, endpoint: str) -> None:
        """Connect to a daemon's dispatch endpoint (closing the socket to another one)."""
        self.close(0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.LINGER, 5000)  # let the last answers out on exit
        # IMMEDIATE stays off on purpose: answers queue up while the daemon restarts and
        # are delivered when it is back.
        sock.setsockopt(zmq.IMMEDIATE, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)  # reconnect with backoff, capped
        sock.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)
        sock.setsockopt(zmq.SNDHWM, 100_000)  # answers must not be dropped while it is away
        # ZMTP pings: a daemon whose host vanished without closing the connection is seen
        # gone within seconds, and the socket reconnects (and the worker says hello again).
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        if self.curve is not None:
            self.curve.apply_client(sock)
        self.monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sock.connect(endpoint)
        self.sock = sock
        self._connects = 0
        self._lost = False

    def close(self, linger_ms: int) -> None:
        """Close the socket (waiting up to ``linger_ms`` for what it still holds). Idempotent."""
        if self.sock is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.sock.close(linger_ms)
            self.sock = None
        if self.monitor is not None:
            self.monitor.close(0)
            self.monitor = None

    def reconnected(self) -> bool:
        """Read the monitor's events: True when the connection came back after a loss."""
        back = False
        while self.monitor is not None:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._lost = True
            elif event["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                back = back or self._lost or self._connects > 1
                self._lost = False
        return back

    @property
    def down(self) -> bool:
        """True while the connection is lost (as the monitor last said)."""
        return self._lost

    def send(self, kind: bytes, body: dict[str, object]) -> bool:
        """Queue one message for the daemon; False when the socket cannot take it."""
        assert self.sock is not None
        try:
            send_frames(self.sock, protocol.message(kind, body), NOBLOCK)
            return True
        except zmq.Again:
            log.warning("cannot reach the daemon; %s not sent", kind.decode())
            return False

    def send_many(self, messages: list[Message]) -> bool:
        """Queue messages for the daemon, in batches; False when some could not be."""
        assert self.sock is not None
        sent = True
        for part, frames in protocol.batches(messages):
            try:
                send_frames(self.sock, frames, NOBLOCK)
            except zmq.Again:
                log.warning("cannot reach the daemon; %d message(s) not sent (they are sent "
                            "again later)", len(part))
                sent = False
        return sent

    def receive(self) -> list[tuple[bytes, FromDaemon]]:
        """The messages the daemon sent (bad ones are logged and dropped)."""
        assert self.sock is not None
        out: list[tuple[bytes, FromDaemon]] = []
        for frames in waiting_messages(self.sock, READ_MOST):
            try:
                out += protocol.decode_many(frames, protocol.DAEMON_MESSAGES)
            except ProtocolError as exc:
                log.warning("ignored a bad message from the daemon: %s", exc)
        return out
