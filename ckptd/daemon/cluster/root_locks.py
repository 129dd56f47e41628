"""Several daemons on one local root: each leads the queues of its ``lead`` list.

A daemon without ``lead`` leads the whole root under one exclusive lock
(``<root>/.ckptd/root.lock``), as it always did. A daemon with ``lead = ["a", "b"]`` takes
that lock shared (so no whole-root daemon can start beside it, and it cannot start beside
one) and an exclusive lock per queue it leads, ``<root>/.ckptd/queue-<name>.lock``. A
second daemon that would lead a queue already led is refused at start (exit code 4) with
the holder's pid, host and control address. The kernel releases the locks of a daemon that
dies, even by kill -9, so its restart (or a daemon started with its queues) takes them at
once. This way a machine with many cores runs one daemon per few queues.

:class:`LocalLeads` also answers who leads what (a :class:`~ckptd.daemon.cluster.routing.Directory`)
from the lock files, where each holder wrote its name and addresses, so that any daemon of
the root routes requests and workers to the right one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, Standby
from ckptd.core.states import STATES
from ckptd.daemon.cluster.records import LeaseSpan, LeaseView, MemberRow
from ckptd.daemon.cluster.routing import Peer
from ckptd.store.base import Lock, Store
from ckptd.store.local.backend import ROOT_LOCK

log = logging.getLogger(__name__)

CACHE = 1.0  # seconds a view of the lock files is kept


def queue_lock(queue: str) -> str:
    """The name of the lock of ``queue`` (a file in the root's control folder)."""
    return f"queue-{queue}"


class LocalLeads:
    """The queue locks of one daemon with a ``lead`` list, and the directory of its root."""

    def __init__(self, store: Store, settings: Settings, name: str) -> None:
        self.store = store
        self.lead = tuple(settings.lead)
        self.name = name
        self._locks: list[Lock] = []
        self._holders: dict[str, Mapping[str, object]] = {}
        self._seen_at = -CACHE

    def take(self) -> None:
        """Take the root's lock shared and each led queue's lock; raise LockHeld naming the
        holder when one is taken (nothing is kept then)."""
        try:
            root = self.store.lock(ROOT_LOCK, shared=True)
            if root is not None:
                self._locks.append(root)
            for queue in self.lead:
                lock = self.store.lock(queue_lock(queue))
                if lock is not None:
                    self._locks.append(lock)
        except CkptdError:
            self.release()
            raise

    def describe(self, holder: Mapping[str, object]) -> None:
        """Write who this daemon is and where to reach it into each queue's lock."""
        for lock in self._locks:
            queue = lock.path.rsplit("/", 1)[-1].removeprefix("queue-").removesuffix(".lock")
            if lock.exclusive:
                lock.describe({**holder, "name": self.name, "queue": queue})
        log.info("leading queue(s) %s of %s (a lock each)", ", ".join(self.lead),
                 self.store.url)

    def release(self) -> None:
        """Give every lock back. Idempotent."""
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    # -- the directory ---------------------------------------------------------------------

    def _view(self) -> dict[str, Mapping[str, object]]:
        now = time.monotonic()
        if now - self._seen_at >= CACHE:
            self._seen_at = now
            holders: dict[str, Mapping[str, object]] = {}
            try:
                queues = set(self.store.queues()) | set(self.lead)
            except CkptdError:
                queues = set(self.lead)
            for queue in sorted(queues):
                record = self.store.lock_holder(queue_lock(queue))
                if record and record.get("control"):
                    holders[queue] = record
            self._holders = holders
        return self._holders

    def leads(self, queue: str) -> bool:
        return queue in self.lead

    def leader(self, queue: str) -> Peer | None:
        view = self._view()
        record = view.get(queue)
        if record is None:  # a queue with no folder yet: its lock may be held all the same
            record = self.store.lock_holder(queue_lock(queue))
            if record and record.get("control"):
                view[queue] = record
        if not record or record.get("name") == self.name:
            return None
        return _peer(record)

    def unled(self, queue: str) -> Peer | CkptdError:
        self._seen_at = -CACHE  # look again next time: it may have just started
        return Standby(f"no daemon leads queue {queue!r} of {self.store.url}: add it to the "
                       "lead list of one (setting lead), or run one daemon without a lead "
                       "list for the whole root")

    def routes(self) -> dict[str, Peer]:
        return {q: _peer(r) for q, r in self._view().items()}

    def members(self) -> list[MemberRow]:
        found: dict[str, MemberRow] = {}
        for queue, record in self._view().items():
            name = str(record.get("name"))
            entry = found.setdefault(name, {"name": name, "control": record.get("control"),
                                            "leads": [], "self": name == self.name})
            entry["leads"].append(queue)
        return [found[n] for n in sorted(found)]

    def lease_view(self) -> LeaseView:
        held: dict[str, LeaseSpan] = {q: {"since": None, "until": None, "token": None}
                                      for q in self.lead}
        return {"held": held if self._locks else {}, "refused": 0}

    def elsewhere(self) -> dict[str, dict[str, object]]:
        rows: dict[str, dict[str, object]] = {}
        for queue, record in self._view().items():
            if record.get("name") == self.name:
                continue
            try:
                counts: dict[str, int] = {s.value: self.store.count(queue, s) for s in STATES}
            except CkptdError:
                counts = {}
            rows[queue] = {**counts, "leader": record.get("name"), "source": "the store"}
        return rows


def _peer(record: Mapping[str, object]) -> Peer:
    return Peer(str(record.get("name")), str(record.get("control") or ""),
                str(record.get("dispatch") or ""))
