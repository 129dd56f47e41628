"""Dedup by content in the daemon: which id a submit to a ``unique`` queue gets.

See :mod:`ckptd.core.dedup` for the ids. Scope ``forever`` needs nothing here: the id is
fixed, and the engine's usual rule (an id that exists in any state is returned, never made
twice) does the rest. Scope ``open`` needs to know whether a job of the payload is pending
or claimed: :class:`OpenJobs` remembers the last id made per payload key, and the index says
whether it is still open (a stale entry is simply replaced).
"""

from __future__ import annotations

from typing import Any

from ckptd.core import dedup
from ckptd.core.config import Settings
from ckptd.core.errors import InvalidInput
from ckptd.core.queue_controls import unique_of
from ckptd.daemon.engine.index import QueueIndex


class OpenJobs:
    """The open job of each payload key, per queue (scope ``open``)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        self.hits: dict[str, int] = {}  # submits that found their payload's job, per queue

    def clear(self) -> None:
        """Forget everything (recovery rebuilds it from the listing)."""
        self.ids.clear()

    def seen(self, queue: str, job_id: str) -> None:
        """A pending or claimed job is known (recovery, a file that appeared)."""
        key = dedup.key_of(job_id)
        if key is not None and job_id != key:
            self.ids[(queue, key)] = job_id

    def resolve(self, settings: Settings, index: QueueIndex, body: dict[str, Any],
                now: float) -> dict[str, Any]:
        """The submit ``body`` with the id its payload gives it (unchanged for a queue that
        is not unique). Raises InvalidInput for an id of the producer's own, ValueError for a
        payload that is not JSON."""
        unique = unique_of(settings, index.name)
        if unique is None or body.get("keep_id"):
            return body
        if body.get("own_id"):
            raise InvalidInput(f"queue {index.name!r} makes ids from payloads (unique = "
                               "\"payload\" in its config): submit without an id of your own")
        given = body.get("payload_key")  # a keyed hash, from a client that seals payloads
        key = given if isinstance(given, str) and dedup.key_of(given) == given \
            else dedup.payload_key(body.get("payload"))
        fresh = False
        if unique[1] == "forever":
            job_id = key
        else:
            known = self.ids.get((index.name, key))
            if known is not None and (known in index.pending or known in index.claimed):
                job_id = known
            else:  # a new id, which cannot exist yet
                job_id = self.ids[(index.name, key)] = dedup.open_id(key, now)
                fresh = True
        return {**body, "id": job_id, "if_exists": "return", "fresh": fresh, "unique": True}

    def hit(self, queue: str) -> None:
        """A submit found its payload's job."""
        self.hits[queue] = self.hits.get(queue, 0) + 1
