"""A worker's connections: one per daemon that leads some of its queues.

Several daemons may share a store, each leading some queues (docs/scaling.md). A worker
may be given any of them: the daemon that answers first tells it, for each queue, which
daemon leads it (its ``endpoints`` answer carries every queue's route), and
the worker opens a dispatch connection (:class:`~ckptd.worker.link.DaemonLink`) to each
daemon that leads some of its queues, says hello there with those queues, and sends every
answer, checkpoint and progress of a queue to the daemon that leads that queue now.

With more than one daemon to know of, the worker pings each one it works for every
heartbeat, naming the queues it expects that daemon to lead; the answer says which it leads
and who leads the others, and a queue that moved (its leader died and another took it over,
or the balance handed it on) moves with it: a connection to the new leader (or the queue
added to one that exists), a hello there naming the attempts of that queue still running,
and every unconfirmed answer of that queue sent again. A daemon silent for
:data:`MISSED_PINGS` pings (and :data:`MIN_SILENCE` seconds) is taken as gone: the worker
asks the other daemons it knows, one per heartbeat, where its queues are now.

One daemon alone (a local root, or a store without leases) is one connection and no pings,
as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from ckptd.core.errors import ProtocolError
from ckptd.wire import protocol
from ckptd.wire.endpoints import peer_endpoint
from ckptd.wire.frames import waiting_messages
from ckptd.wire.security import ClientCurve
from ckptd.worker.link import READ_MOST, DaemonLink, Message

log = logging.getLogger(__name__)

MISSED_PINGS = 3
MIN_SILENCE = 5.0  # and at least this long without an answer (a busy daemon is not gone)
PROBE_TIMEOUT = 2.0  # a daemon asked where the queues are, before the next one is asked


@dataclass
class Link:
    """One daemon this worker works for."""

    control: str
    dispatch: str
    link: DaemonLink
    queues: list[str] = field(default_factory=list)
    ping: zmq.Socket[bytes] | None = None
    missed: int = 0
    waiting: bool = False
    answered: float = field(default_factory=time.monotonic)
    lost: bool = False


class Links:
    """The dispatch connections of one worker and the route of each of its queues."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], name: str, curve: ClientCurve | None,
                 queues: list[str], endpoints: list[str], poller: zmq.Poller) -> None:
        self.ctx = ctx
        self.name = name
        self.curve = curve
        self.queues = list(queues)
        self.known = list(endpoints)  # control addresses of the store's daemons
        self.poller = poller
        self.links: dict[str, Link] = {}
        self.route: dict[str, str] = {}  # queue -> control address of its daemon
        self.watching = False
        self.interval = 5.0
        self._next_ping = 0.0
        self._probe: tuple[zmq.Socket[bytes], str, float] | None = None
        self._probed = 0

    # -- building the routes -----------------------------------------------------------------

    def start(self, endpoint: str, answer: dict[str, Any]) -> None:
        """Route every queue as the first daemon's ``endpoints`` answer says (to that daemon
        where it names no leader)."""
        routes = answer.get("routes")
        self.watching = len(self.known) > 1 or isinstance(routes, dict)
        dispatch = peer_endpoint(endpoint, int(answer["dispatch_port"]))
        self._learn(answer.get("members"))
        for queue in self.queues:
            where = (routes or {}).get(queue) if isinstance(routes, dict) else None
            if isinstance(where, dict) and where.get("control") and where.get("dispatch"):
                self._place(queue, str(where["control"]), str(where["dispatch"]))
            else:
                self._place(queue, endpoint, dispatch)

    def _learn(self, controls: object) -> None:
        for control in controls if isinstance(controls, list) else []:
            if isinstance(control, str) and control not in self.known:
                self.known.append(control)

    def _place(self, queue: str, control: str, dispatch: str) -> Link:
        """Route ``queue`` to the daemon at ``control`` (connecting to it if needed)."""
        old = self.links.get(self.route.get(queue, ""))
        if old is not None and queue in old.queues:
            old.queues.remove(queue)
        link = self.links.get(control)
        if link is None:
            link = Link(control, dispatch, DaemonLink(self.ctx, self.name, self.curve))
            link.link.open(dispatch)
            self.poller.register(link.link.sock, zmq.POLLIN)
            self.poller.register(link.link.monitor, zmq.POLLIN)
            self.links[control] = link
            if control not in self.known:
                self.known.append(control)
        if queue not in link.queues:
            link.queues.append(queue)
        self.route[queue] = control
        return link

    def _drop(self, link: Link, linger_ms: int) -> None:
        for sock in (link.link.sock, link.link.monitor, link.ping):
            if sock is not None:
                try:
                    self.poller.unregister(sock)
                except KeyError:
                    pass
        if link.ping is not None:
            link.ping.close(0)
            link.ping = None
        link.link.close(linger_ms)
        self.links.pop(link.control, None)

    # -- sending -----------------------------------------------------------------------------

    def all(self) -> list[Link]:
        """Every connection."""
        return list(self.links.values())

    def for_queue(self, queue: str) -> Link | None:
        """The connection to the daemon leading ``queue`` (None for a queue not ours)."""
        return self.links.get(self.route.get(queue, ""))

    def send_many(self, messages: Iterable[Message]) -> bool:
        """Send each message to the daemon of its queue; False when some could not be."""
        grouped: dict[str, list[Message]] = {}
        for kind, body in messages:
            control = self.route.get(str(body.get("queue")))
            if control is None:  # a queue this worker does not serve: the first daemon
                control = next(iter(self.links), "")
            grouped.setdefault(control, []).append((kind, body))
        sent = True
        for control, group in grouped.items():
            link = self.links.get(control)
            if link is not None and link.link.sock is not None:
                sent = link.link.send_many(group) and sent
        return sent

    # -- following the queues ----------------------------------------------------------------

    def tick(self, now: float, events: Mapping[object, int]) -> tuple[list[Link], set[str]]:
        """Read the ping answers, send the pings that are due, move the queues whose leader
        changed; return (the connections whose queues changed, the queues moved)."""
        moves: dict[str, tuple[str, str]] = {}
        for link in self.all():
            if link.ping is not None and events.get(link.ping):
                self._read(link.ping, link, moves)
        if self._probe is not None and events.get(self._probe[0]):
            self._read(self._probe[0], None, moves)
        changed, moved = self._apply(moves)
        if self.watching and now >= self._next_ping:
            self._next_ping = now + self.interval
            for link in self.all():
                self._ping(link)
            self._ask_elsewhere(now)
        return changed, moved

    def _ping(self, link: Link) -> None:
        if link.ping is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # a daemon that is not there gets no pings
            if self.curve is not None:
                self.curve.apply_client(sock)
            sock.connect(link.control)
            self.poller.register(sock, zmq.POLLIN)
            link.ping = sock
        if link.waiting:
            link.missed += 1
        try:
            link.ping.send_multipart(protocol.request(b"ping", {"queues": link.queues or
                                                                 self.queues}), zmq.NOBLOCK)
            link.waiting = True
        except zmq.Again:  # not even connected
            link.missed += 1
        silent = time.monotonic() - link.answered
        if link.missed >= MISSED_PINGS and silent >= max(MIN_SILENCE,
                                                         MISSED_PINGS * self.interval):
            if not link.lost:
                log.warning("the daemon at %s does not answer; asking the others where "
                            "%s %s now", link.control, ", ".join(link.queues),
                            "is" if len(link.queues) == 1 else "are")
            link.lost = True

    def _read(self, sock: zmq.Socket[bytes], link: Link | None,
              moves: dict[str, tuple[str, str]]) -> None:
        for frames in waiting_messages(sock, READ_MOST):
            try:
                ok, body = protocol.decode_reply(frames)
            except ProtocolError:
                continue
            if link is not None:
                link.waiting = False
                link.missed = 0
                link.answered = time.monotonic()
                link.lost = False
            if ok:
                self._moves(body, moves)
            if link is None:  # a probe asks once
                self._close_probe()
                return

    def _moves(self, body: dict[str, Any], moves: dict[str, tuple[str, str]]) -> None:
        """The queues whose leader a ping answer names as another daemon than ours."""
        routes = body.get("routes")
        for queue, where in (routes.items() if isinstance(routes, dict) else ()):
            if queue in self.route and isinstance(where, dict) and where.get("control") \
                    and where.get("dispatch") and where["control"] != self.route[queue]:
                moves[queue] = (str(where["control"]), str(where["dispatch"]))

    def _lost_queues(self) -> list[str]:
        return [q for link in self.all() if link.lost for q in link.queues]

    def _ask_elsewhere(self, now: float) -> None:
        """Ask one other daemon (a different one each time) where the lost queues are."""
        lost = self._lost_queues()
        if self._probe is not None and now - self._probe[2] >= PROBE_TIMEOUT:
            self._close_probe()
        if not lost or self._probe is not None:
            return
        down = {link.control for link in self.all() if link.lost}
        candidates = [c for c in self.known if c not in down] or list(self.known)
        control = candidates[self._probed % len(candidates)]
        self._probed += 1
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply_client(sock)
        sock.connect(control)
        self.poller.register(sock, zmq.POLLIN)
        sock.send_multipart(protocol.request(b"ping", {"queues": lost}))
        self._probe = (sock, control, now)

    def _close_probe(self) -> None:
        if self._probe is not None:
            try:
                self.poller.unregister(self._probe[0])
            except KeyError:
                pass
            self._probe[0].close(0)
            self._probe = None

    def _apply(self, moves: dict[str, tuple[str, str]]) -> tuple[list[Link], set[str]]:
        if not moves:
            return [], set()
        touched: dict[str, Link] = {}
        for queue, (control, dispatch) in moves.items():
            old = self.links.get(self.route.get(queue, ""))
            if old is not None:
                touched[old.control] = old
            link = self._place(queue, control, dispatch)
            link.lost = False
            touched[link.control] = link
            log.warning("queue %s is led by the daemon at %s now: following it", queue, control)
        for link in list(touched.values()):
            if not link.queues:
                self._drop(link, 0)
                del touched[link.control]
        return list(touched.values()), set(moves)

    # -- the end -----------------------------------------------------------------------------

    def close(self, linger_ms: int) -> None:
        """Close every connection (waiting up to ``linger_ms`` for what they still hold)."""
        self._close_probe()
        for link in self.all():
            self._drop(link, linger_ms)
