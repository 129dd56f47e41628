"""Workers that follow the active daemon when they were given several (a standby).

A worker given ``--connect tcp://a:5550,tcp://b:5550`` pings the control socket of the
daemon it works for every heartbeat interval (a DEALER socket in the worker's own poller, so
the ping never blocks its loop). After :data:`MISSED_PINGS` pings without an answer, or as
soon as the daemon says it is a standby, the daemon is taken as gone: the worker asks the
other addresses which one is active (:meth:`DaemonWatch.find_active`, one short round per
try, so heartbeats keep going out between tries), reconnects its dispatch socket there, says
hello with the jobs it is running (the new daemon adopts those attempts) and sends again the
answers and checkpoints the old daemon never confirmed (:mod:`ckptd.worker.unconfirmed`; a
repeated answer for an attempt that is no longer claimed is only counted as stale).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from ckptd.core.errors import CkptdError, ProtocolError
from ckptd.wire import protocol
from ckptd.wire.endpoints import peer_endpoint
from ckptd.wire.security import ClientCurve

log = logging.getLogger(__name__)

MISSED_PINGS = 3
MIN_SILENCE = 5.0  # and at least this long without an answer (a busy daemon is not gone)
FIND_TIMEOUT = 2.0  # per address, when looking for the active daemon


class DaemonWatch:
    """Pings the worker's daemon; says when to look for another one, and finds it."""

    def __init__(self, ctx: zmq.Context[Any], endpoints: list[str], curve: ClientCurve | None,
                 interval: float) -> None:
        self.ctx = ctx
        self.endpoints = list(endpoints)
        self.curve = curve
        self.interval = interval
        self.sock: zmq.Socket[bytes] | None = None
        self.missed = 0
        self.standby = False
        self._waiting = False
        self._next = 0.0
        self._open()

    @property
    def endpoint(self) -> str:
        """The control address of the daemon in use."""
        return self.endpoints[0]

    def _open(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # a daemon that is not there gets no queued pings
        if self.curve is not None:
            self.curve.apply_client(sock)
        sock.connect(self.endpoint)
        self.sock = sock
        self.missed = 0
        self.standby = False
        self._waiting = False
        self.answered = time.monotonic()

    def close(self) -> None:
        """Close the ping socket. Idempotent."""
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def read(self) -> None:
        """Take the ping answers that arrived."""
        assert self.sock is not None
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                ok, body = protocol.decode_reply(frames)
            except ProtocolError:
                continue
            self._waiting = False
            self.missed = 0
            self.answered = time.monotonic()
            self.standby = not ok or bool(body.get("standby"))

    def tick(self, now: float) -> None:
        """Send a ping when one is due; count the one that went unanswered."""
        if now < self._next:
            return
        self._next = now + self.interval
        if self._waiting:
            self.missed += 1
        assert self.sock is not None
        try:
            self.sock.send_multipart(protocol.request(b"ping", {}), zmq.NOBLOCK)
            self._waiting = True
        except zmq.Again:  # not even connected
            self.missed += 1

    def lost(self) -> bool:
        """True when the daemon is to be taken as gone (silent, or a standby)."""
        silent = time.monotonic() - self.answered
        return self.standby or (self.missed >= MISSED_PINGS
                                and silent >= max(MIN_SILENCE, MISSED_PINGS * self.interval))

    def find_active(self) -> tuple[str, dict[str, Any]] | None:
        """Ask each address, the current one last, for its dispatch endpoint; return the
        first active daemon's (control address, answer), None when none answered."""
        from ckptd.client.client import Client

        order = self.endpoints[1:] + self.endpoints[:1]
        for endpoint in order:
            client = Client([endpoint], timeout=FIND_TIMEOUT, context=self.ctx,
                            curve=self.curve)
            try:
                answer = client.request("endpoints")
            except CkptdError as exc:
                log.info("daemon at %s: %s", endpoint, exc)
                continue
            finally:
                client.close()
            position = self.endpoints.index(endpoint)
            self.endpoints = self.endpoints[position:] + self.endpoints[:position]
            self.close()
            self._open()
            self._next = time.monotonic() + self.interval
            return endpoint, answer
        self.missed = 0  # look again after MISSED_PINGS more pings (or a standby answer)
        self.standby = False
        self._waiting = False
        self.answered = time.monotonic()
        return None


def find_daemon(ctx: zmq.Context[Any], endpoints: list[str], curve: ClientCurve | None
                ) -> tuple[list[str], dict[str, Any], str]:
    """Ask the control addresses in turn, again and again until one answers, where to
    connect for jobs; return the addresses (the one that answered first), its answer, and
    its dispatch endpoint."""
    from ckptd.client.client import Client

    delay = 0.2
    while True:
        client = Client(endpoints, timeout=5.0, context=ctx, curve=curve)
        try:
            answer = client.request("endpoints")
            first = client.endpoints.index(client.endpoint)
            ordered = client.endpoints[first:] + client.endpoints[:first]
            return ordered, answer, peer_endpoint(client.endpoint, int(answer["dispatch_port"]))
        except CkptdError as exc:
            log.warning("%s; retrying in %.1fs", exc, delay)
        finally:
            client.close()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
