"""Routing: any daemon of a store answers for every queue, whichever daemon leads it.

Several daemons may share a bucket (a lease per queue) or a local root (a lock per queue).
A client or worker may connect to any of them. :class:`Router` sits in front of the control
socket's requests:

- a request about a queue this daemon leads is handled here as always;
- one about a queue another daemon leads is forwarded to it
  (:mod:`~ckptd.daemon.cluster.forwarding`)
  and its reply relayed; where it cannot be forwarded (CURVE, where this daemon holds no
  client key; a request forwarded already) the answer is a ``Standby`` error naming the
  leader (``leader`` in the reply), which the client follows;
- one about a queue nobody leads yet gets ``TakingOver`` (the daemon that should lead it
  takes it now; the client asks again) or says why nobody will;
- ``status`` shows every queue of the store and the daemon that leads it; ``ping`` says
  which of the queues asked about this daemon leads and who leads the others, and
  ``endpoints`` gives every queue's route: that is how workers follow their queues.

Who leads what is a :class:`Directory`:
:class:`~ckptd.daemon.cluster.bucket_directory.BucketDirectory`
(leases and membership records) or :class:`~ckptd.daemon.cluster.root_locks.LocalLeads` (lock
files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ckptd.core.errors import CkptdError, Standby
from ckptd.daemon.cluster.forwarding import FORWARDED, Forwarder
from ckptd.daemon.cluster.records import LeaseView, MemberRow
from ckptd.daemon.requests import ReplyTo, identity_of
from ckptd.wire.control_requests import (
    BatchOpen,
    BatchSeal,
    CancelJob,
    Fetch,
    Ls,
    Output,
    Ping,
    Purge,
    Request,
    Retry,
    Show,
    Signal,
    Status,
    Submit,
    SubmitFile,
    SubmitMany,
    Wait,
)
from ckptd.wire.protocol import Body

QUEUE_REQUESTS = (Submit, SubmitMany, Ls, Show, Retry, CancelJob, Purge, Fetch, Output, Wait,
                  SubmitFile, Status, Signal, BatchOpen, BatchSeal)
"""Requests about one queue (``queue`` in their body), which its leader answers."""


@dataclass(frozen=True)
class Peer:
    """A daemon of the same store, as clients and workers reach it."""

    name: str
    control: str
    dispatch: str

    def as_body(self) -> dict[str, str]:
        """What travels on the wire."""
        return {"daemon": self.name, "control": self.control, "dispatch": self.dispatch}


class Directory(Protocol):
    """Who leads which queue of the store, as this daemon knows it."""

    name: str

    def leads(self, queue: str) -> bool:
        """True when this daemon leads ``queue``."""

    def leader(self, queue: str) -> Peer | None:
        """Another daemon that leads ``queue`` now, or None."""

    def unled(self, queue: str) -> Peer | CkptdError:
        """Nobody leads ``queue``: the daemon to ask (the one that is taking it), or the
        answer to give (``TakingOver``: ask again; or why nobody will)."""

    def routes(self) -> dict[str, Peer]:
        """Every queue led now, by whom (this daemon's queues too)."""

    def members(self) -> list[MemberRow]:
        """The daemons of the store, for ``status``."""

    def elsewhere(self) -> dict[str, dict[str, object]]:
        """``status`` rows of the queues other daemons lead."""

    def lease_view(self) -> LeaseView:
        """What this daemon holds now, for checkers: ``{"held": {queue: {"since",
        "until", "token"}}, "refused": writes its fence refused}``."""


class Router:
    """Routes one daemon's control requests (see the module docstring)."""

    def __init__(self, directory: Directory, forwarder: Forwarder | None,
                 reply: Callable[[ReplyTo, Body | CkptdError], None]) -> None:
        self.directory = directory
        self.forwarder = forwarder
        self.reply = reply
        self.redirected = 0

    def divert(self, to: ReplyTo, kind: bytes, body: Request, frames: list[bytes]) -> bool:
        """Forward (or answer) a request about a queue this daemon does not lead; False
        when it is this daemon's to handle. A forwarded request keeps its tag (its reply is
        relayed as it comes); an answer given here carries it too."""
        identity = identity_of(to)
        queue = body.queue if isinstance(body, QUEUE_REQUESTS) else None
        if not queue or self.directory.leads(queue):
            return False
        peer = self.directory.leader(queue)
        if peer is None:
            found = self.directory.unled(queue)
            if isinstance(found, CkptdError):
                if self.forwarder is not None:
                    self.forwarder.abandon_held()
                self.reply(to, found)
                return True
            peer = found
        if kind == b"submit_file" or identity.startswith(FORWARDED) or self.forwarder is None \
                or not self.forwarder.send(identity, frames, peer.control):
            # (a file's upload is kept by the daemon it was sent to: the client sends it to
            # the leader itself)
            self.redirected += 1
            self.reply(to, Standby(f"queue {queue!r} is led by daemon {peer.name} at "
                                         f"{peer.control}: ask it", leader=peer.as_body()))
        return True

    # -- what the answers add ----------------------------------------------------------------

    def ping(self, body: Ping) -> Body:
        """What a ``ping`` answer adds: whether this daemon leads anything, which of the
        ``queues`` asked about it leads, and who leads the others."""
        routes = self.directory.routes()
        mine = {q for q, p in routes.items() if p.name == self.directory.name}
        # A standby leads nothing while other daemons run; a lone daemon is the active one
        # even before its first queue.
        answer: Body = {"standby": not mine and len(self.directory.members()) > 1}
        if body.leases:
            answer["leases"] = self.directory.lease_view()
        if body.queues is not None:
            names = body.queues
            answer["leads"] = [q for q in names if self.directory.leads(q)]
            answer["routes"] = {q: routes[q].as_body() for q in names if q in routes}
        return answer

    def endpoints(self) -> Body:
        """What an ``endpoints`` answer adds: this daemon's name, every queue's route."""
        return {"daemon": self.directory.name,
                "routes": {q: p.as_body() for q, p in self.directory.routes().items()},
                "members": [m["control"] for m in self.directory.members()
                            if m.get("control")]}

    def status(self, answer: Body, queue: str | None) -> None:
        """Complete a ``status`` answer: the queues other daemons lead (from what they
        publish), which daemon leads each, and the daemons of the store."""
        name = self.directory.name
        rows: dict[str, object] = {}
        for q, row in answer.get("queues", {}).items():
            if self.directory.leads(q):
                rows[q] = {**row, "leader": name}
        if queue is None:
            for q, row in self.directory.elsewhere().items():
                rows.setdefault(q, row)
        answer["queues"] = dict(sorted(rows.items()))
        answer.setdefault("daemon", {})["members"] = self.directory.members()

    def close(self) -> None:
        """Close the forwarding sockets."""
        if self.forwarder is not None:
            self.forwarder.close()
