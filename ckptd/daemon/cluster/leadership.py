"""What one daemon leads of its store, and how requests find the daemon that leads a queue.

- A local root without ``lead``: the whole root, under one exclusive lock (a second daemon
  is refused).
- A local root with ``lead``: those queues, a lock each (:mod:`~ckptd.daemon.cluster.root_locks`).
- A bucket: the queues whose lease this daemon holds (:mod:`~ckptd.daemon.cluster.bucket_role` and
  :mod:`~ckptd.daemon.cluster.queue_leases`).

Where several daemons may share the store (a bucket with leases, a root with ``lead``) a
:class:`~ckptd.daemon.cluster.routing.Router` sends control requests about other daemons' queues on
to them. :class:`Leading` puts these together for the daemon, which calls it at start, at
each turn and at close.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import zmq

from ckptd.core.config import LiveSettings
from ckptd.core.errors import TakingOver
from ckptd.core.names import is_valid_name
from ckptd.daemon.cluster.bucket_directory import BucketDirectory
from ckptd.daemon.cluster.bucket_role import BucketRole
from ckptd.daemon.cluster.forwarding import Forwarder
from ckptd.daemon.cluster.records import Addresses
from ckptd.daemon.cluster.root_locks import LocalLeads
from ckptd.daemon.cluster.routing import Directory, Router
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.requests import Control
from ckptd.store.base import Lock, Store
from ckptd.store.local.backend import ROOT_LOCK
from ckptd.wire.endpoints import advertised, port_of
from ckptd.wire.messages import Checkpoint, Done, Failed, FromWorker, Progress

log = logging.getLogger(__name__)

WORKER_ANSWERS = (Done, Failed, Checkpoint, Progress)


def member_name(configured: str, control: str) -> str:
    """This daemon's name among the daemons of a store: ``name`` when set, else
    ``HOST-PORT`` of its control socket (stable across restarts, unique on a host)."""
    if configured:
        return configured
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in os.uname().nodename)
    try:
        name = f"{host.lstrip('.')}-{port_of(control)}"
    except Exception:  # noqa: BLE001 - ipc:// and the like: the pid is unique enough
        name = f"{host.lstrip('.')}-{os.getpid()}"
    return name if is_valid_name(name) else f"ckptd-{os.getpid()}"


class Leading:
    """The leading part of one daemon (see the module docstring)."""

    def __init__(self, store: Store, live: LiveSettings, engine: Engine,
                 role: BucketRole | None, control: Control) -> None:
        self.store = store
        self.live = live
        self.engine = engine
        self.role = role
        self.control = control
        self.local: LocalLeads | None = None
        self.lock: Lock | None = None  # the whole root's, without lead
        self.router: Router | None = None
        self.info: Addresses | None = None  # once named

    def take_local(self) -> None:
        """Take the local root's locks (the whole root, or the ``lead`` queues): a daemon
        that would lead what another leads is refused here, before it binds anything."""
        settings = self.live.current
        if settings.lead:
            self.local = LocalLeads(self.store, settings, "")
            self.local.take()
            self.engine.index.leads = self.local.leads
        else:
            self.lock = self.store.lock(ROOT_LOCK)

    def named(self, endpoints: dict[str, str]) -> str:
        """Name this daemon once its sockets are bound; return the name."""
        settings = self.live.current
        name = member_name(settings.name, endpoints["control"])
        control, dispatch = advertised(endpoints["control"], endpoints["dispatch"],
                                       settings.advertise, os.uname().nodename)
        self.info = {"control": control, "dispatch": dispatch, "bound": endpoints["control"],
                     "host": os.uname().nodename, "root": self.store.url}
        self.engine.index.name = name
        if self.local is not None:
            self.local.name = name
        if self.role is not None:
            self.role.name = name
        return name

    def describe(self, holder: Mapping[str, object]) -> None:
        """Write who holds the local locks (for refused daemons, clients on this host, and
        the routes of the other daemons of the root)."""
        assert self.info is not None, "describe() comes after named()"
        holder = {**holder, "control": self.info["control"], "dispatch": self.info["dispatch"]}
        if self.lock is not None:
            self.lock.describe(holder)
        if self.local is not None:
            self.local.describe(holder)

    def start(self, now: float, ctx: zmq.Context[zmq.Socket[bytes]], poller: zmq.Poller
              ) -> None:
        """Take the leases (a bucket) and set up routing where daemons share the store."""
        if self.role is not None:
            assert self.info is not None, "start() comes after named()"
            self.role.start(now, self.info)
        directory: Directory | None = self.local
        if self.role is not None and self.role.leases is not None:
            directory = BucketDirectory(self.role.leases, self.role.leads)
        if directory is None:
            return
        settings = self.live.current
        # With CURVE this daemon has no client key of its own to forward with: clients are
        # told where the queue's leader is instead, and follow.
        forwarder = None if settings.curve_secret_key else Forwarder(
            ctx, poller, self.control.reply_raw, self.control.reply,
            max_message_size=settings.max_message_size)
        self.router = self.control.router = Router(directory, forwarder, self.control.reply)

    def follow(self, now: float) -> list[str]:
        """Follow the leases at a turn of the loop; return the queues taken this turn."""
        if self.role is None:
            return []
        recovered, dropped = self.role.follow(now)
        for queue in dropped:
            # Nothing was done by a wait: its client asks again after a moment, and finds the
            # queue where it is led now (this daemon again, once its lease is back, or
            # another). A lease lapsed under load must not end a client's wait in an error.
            self.control.refuse_waiters(TakingOver(f"this daemon no longer leads queue "
                                                   f"{queue!r}; ask again"), queue)
        return recovered

    def read(self, events: Mapping[object, int]) -> None:
        """Relay the replies of requests this daemon forwarded."""
        if self.router is not None and self.router.forwarder is not None:
            self.router.forwarder.read(events)

    def tidy(self) -> None:
        """Close forwarding sockets left idle."""
        if self.router is not None and self.router.forwarder is not None:
            self.router.forwarder.tidy()

    def refuses(self, body: FromWorker) -> bool:
        """True for a worker's answer about a queue this daemon does not lead (dropped
        unconfirmed: the worker sends it to the queue's leader)."""
        return isinstance(body, WORKER_ANSWERS) and not self.engine.index.leads(body.queue)

    def close(self) -> None:
        """Give the leases and locks back and close the forwarding sockets. Idempotent."""
        if self.router is not None:
            self.router.close()
            self.router = self.control.router = None
        if self.role is not None:
            self.role.close()
        if self.local is not None:
            self.local.release()
            self.local = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
