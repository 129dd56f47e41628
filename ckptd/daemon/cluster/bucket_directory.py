"""Who leads which queue of a bucket, for routing: from the leases and membership records.

A :class:`~ckptd.daemon.cluster.routing.Directory` over
:class:`~ckptd.daemon.cluster.queue_leases.QueueLeases`:
a queue is led by the live daemon whose record lists it (this daemon's own queues are those
its index holds); a queue that nobody leads goes to the daemon the balance names, which
takes it as soon as it is asked for (while the bucket cannot be reached, the answer is the
bucket's error: what is wrong and how to fix it). The counts shown for another daemon's
queues are those its record carried at its last renewal (at most a quarter lease old).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ckptd.core.errors import CkptdError, TakingOver
from ckptd.daemon.cluster.queue_leases import QueueLeases
from ckptd.daemon.cluster.records import LeaseView, MemberRow
from ckptd.daemon.cluster.routing import Peer


def _peer(record: Mapping[str, object]) -> Peer:
    return Peer(str(record.get("name")), str(record.get("control") or ""),
                str(record.get("dispatch") or ""))


class BucketDirectory:
    """The directory of a daemon on a bucket."""

    def __init__(self, leases: QueueLeases, leads: Callable[[str], bool]) -> None:
        self.leases = leases
        self.name = leases.name
        self._leads = leads

    def leads(self, queue: str) -> bool:
        return self._leads(queue)

    def leader(self, queue: str) -> Peer | None:
        record = self.leases.leader(queue)
        if record is None or record.get("name") == self.name:
            return None
        return _peer(record)

    def unled(self, queue: str) -> Peer | CkptdError:
        failure = self.leases.failure
        if failure is not None:  # nobody can lead it while the bucket cannot be reached
            return type(failure)(f"queue {queue!r} has no leader, and this daemon cannot "
                                 f"take it: {failure}")
        target = self.leases.target(queue)
        if target is None or target.get("name") == self.name:
            self.leases.want(queue)
            return TakingOver(f"queue {queue!r} has no leader yet and this daemon is taking "
                              "it: nothing was done, ask again")
        return _peer(target)

    def routes(self) -> dict[str, Peer]:
        routes = {q: _peer(r) for q, r in self.leases.routes().items()}
        for queue, peer in list(routes.items()):  # our own: only once the index holds them
            if peer.name == self.name and not self._leads(queue):
                del routes[queue]
        return routes

    def members(self) -> list[MemberRow]:
        return [{"name": name, "control": record.get("control"),
                 "leads": sorted(record.get("leads") or {}), "self": name == self.name}
                for name, record in sorted(self.leases.alive().items())]

    def lease_view(self) -> LeaseView:
        return {"held": self.leases.view(tokens=True), "refused": self.leases.refused}

    def elsewhere(self) -> dict[str, dict[str, object]]:
        rows: dict[str, dict[str, object]] = {}
        for queue, record in self.leases.routes().items():
            if record.get("name") == self.name:
                continue
            counts = (record.get("counts") or {}).get(queue) or {}
            rows[queue] = {**counts, "leader": record.get("name"),
                           "source": "the leader's record"}
        return rows
