"""Debounce in the daemon: a submit whose job is still pending rewrites that job.

On a queue with ``debounce`` (:mod:`ckptd.core.unique_windows`) the job a submit finds
pending (:mod:`ckptd.daemon.engine.open_jobs` says which) gets the new payload and a start
``debounce`` from now: its file is rewritten in place, in the round's transaction like every
write, with :func:`ckptd.core.edits.debounced`. The loop is the only one that claims, and
the job is kept back (not due) before the rewrite is even queued, so nothing claims it
between the look and the rewrite, not even a claim in the same round. It keeps its id, its
creation time, its key and its priority; ``debounced`` in its file counts the submits.
"""

from __future__ import annotations

from collections.abc import Callable

from ckptd.codec import decode_job, encode_job
from ckptd.core import edits
from ckptd.core.errors import CkptdError, JobNotFound
from ckptd.core.states import State
from ckptd.daemon.engine.index import Index
from ckptd.store.admin import prepare_submit
from ckptd.store.base import Move, Outcome
from ckptd.wire.protocol import Body

Reply = Callable[[Body | CkptdError], None]


class Debounce:
    """Rewrites of pending jobs by debounced submits."""

    def __init__(self, index: Index) -> None:
        self.ix = index
        self.counts: dict[str, int] = {}  # per queue: submits that rewrote a pending job

    def replace(self, body: Body, now: float, reply: Reply, anew: Callable[[Body], None]
                ) -> None:
        """Rewrite the pending job ``body["debounce_of"]`` with the submit ``body``; when it
        is gone meanwhile (removed by hand), submit ``anew`` as a new job."""
        ix = self.ix
        queue, job_id = body["queue"], body["debounce_of"]
        index = ix.queue(queue)
        priority, key = index.ready.priority(job_id), index.ready.key_of(job_id)
        try:
            old = decode_job(ix.store.read(queue, State.PENDING, job_id, priority, key),
                             queue, job_id)
            new, ops = prepare_submit(ix.settings, queue, body.get("payload"), now,
                                      job_id=job_id, max_attempts=body.get("max_attempts"),
                                      delay=body["delay"], batch=body.get("batch"),
                                      time_limit=body.get("time_limit"), priority=priority,
                                      key=key, decoded=True)
        except JobNotFound:  # the index held it as pending, but it is gone
            index.pending.discard(job_id)
            anew({k: v for k, v in body.items() if k not in ("debounce_of", "id")})
            return
        except (CkptdError, ValueError) as exc:
            reply(exc if isinstance(exc, CkptdError) else CkptdError(str(exc)))
            return
        job = edits.debounced(old, new)
        ix.delay(index, job_id, now + body["delay"])  # kept back before anything is queued

        def rewritten(outcome: Outcome) -> None:
            if outcome is None:
                self.counts[queue] = self.counts.get(queue, 0) + 1
                reply({"id": job_id, "created": False, "state": "pending", "debounced": True})
            else:
                reply(outcome)

        for op in ops[:-1]:  # a payload's blob, when it is big
            ix.txn.add(op)
        ix.txn.add(Move(queue, job_id, State.PENDING, State.PENDING, encode_job(job),
                        priority=priority, key=key), rewritten)
