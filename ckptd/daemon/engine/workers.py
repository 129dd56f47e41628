"""Connected workers: hello, heartbeats, and forgetting the silent ones.

A worker says hello with its queues and free slots (credits) and, after a daemon restart,
the attempts it still runs: the daemon adopts those leases instead of waiting for them to
expire. Heartbeats extend the leases of the jobs a worker names; a worker not heard from
for a few heartbeat intervals is forgotten (its jobs keep their leases and come back if
they run out).
"""

from __future__ import annotations

import logging

from ckptd.daemon.engine.index import Index, WorkerInfo
from ckptd.wire.messages import Heartbeat, Hello

log = logging.getLogger(__name__)

WORKER_TIMEOUT_HEARTBEATS = 3


class Workers:
    """The workers part of the engine."""

    def __init__(self, index: Index) -> None:
        self.ix = index

    def hello(self, identity: bytes, body: Hello, now: float) -> None:
        """A worker (re)introduces itself with its queues and free slots."""
        ix = self.ix
        settings = ix.settings
        worker_id = body.worker
        old = ix.workers.get(worker_id)
        if old is not None and old.identity != identity:
            ix.by_identity.pop(old.identity, None)
        slots = body.slots
        free = body.free
        info = WorkerInfo(worker_id, identity, list(body.queues), slots,
                          slots if free is None else min(free, slots), now,
                          body.host, body.pid)
        for queue, job_id, attempt in body.running or []:
            index = ix.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is not None and lease.attempt == attempt and not lease.closing:
                # A worker back after a daemon restart still runs this attempt: adopt it.
                lease.worker = worker_id
                lease.deadline = max(lease.deadline, now + settings.lease_for(queue))
                info.running.add((queue, job_id))
        ix.workers[worker_id] = info
        ix.by_identity[identity] = info
        if worker_id not in ix.worker_order:
            ix.worker_order.append(worker_id)
        for queue in info.queues:
            ix.queue(queue)
        ix.outbox.append((identity, b"welcome", {
            "lease": settings.lease, "heartbeat": settings.heartbeat,
            "root": ix.store.url, "daemon": ix.name,
            "blob_threshold": settings.blob_threshold, "confirms": True}))
        fields = {"worker": worker_id, "queues": ",".join(info.queues), "slots": slots,
                  "host": info.host}
        if slots == 0:  # a worker that stops says hello with no slots: it takes nothing new
            log.info("worker stopping: takes no new jobs", extra={"fields": {
                "worker": worker_id, "running": len(info.running)}})
        elif old is None or (old.host, old.pid) != (info.host, info.pid):
            log.info("worker connected", extra={"fields": fields})
        else:  # the same worker again (after a restart of the daemon, or asked to)
            log.debug("worker said hello again", extra={"fields": fields})

    def worker_for(self, identity: bytes, now: float) -> WorkerInfo | None:
        """Return the worker behind ``identity``; ask an unknown one to say hello again."""
        info = self.ix.by_identity.get(identity)
        if info is None:
            self.ix.counters["unknown_worker"] += 1
            self.ix.outbox.append((identity, b"rehello", {}))
            return None
        info.last_seen = now
        return info

    def heartbeat(self, worker: WorkerInfo, body: Heartbeat, now: float) -> None:
        """Extend the leases of the jobs a worker says it is running."""
        ix = self.ix
        for queue, job_id, attempt in body.jobs:
            index = ix.queues.get(queue)
            lease = index.claimed.get(job_id) if index else None
            if lease is None or lease.attempt != attempt:
                continue
            lease.deadline = now + ix.settings.lease_for(queue)
            lease.heartbeat_at = now
            if lease.worker is None:
                lease.worker = worker.id
                worker.running.add((queue, job_id))

    def forget(self, worker: WorkerInfo, why: str) -> None:
        """Drop a worker; its jobs keep their leases and come back if they run out."""
        ix = self.ix
        ix.workers.pop(worker.id, None)
        if ix.by_identity.get(worker.identity) is worker:
            del ix.by_identity[worker.identity]
        try:
            ix.worker_order.remove(worker.id)
        except ValueError:
            pass
        # What was still to be said to it (a welcome, a rehello) has nobody to go to; a job
        # message stays, so that its failed delivery puts the job back at once.
        ix.outbox = [m for m in ix.outbox if m[0] != worker.identity or m[1] == b"job"]
        log.info("worker gone", extra={"fields": {"worker": worker.id, "why": why,
                                                   "running": len(worker.running)}})

    def forget_silent(self, now: float) -> None:
        """Drop workers not heard from for a few heartbeat intervals."""
        limit = self.ix.settings.heartbeat * WORKER_TIMEOUT_HEARTBEATS
        for worker in list(self.ix.workers.values()):
            if now - worker.last_seen > limit:
                self.forget(worker, f"silent for {now - worker.last_seen:.1f}s")
