"""Dedup by content in the daemon: which id a submit to a ``unique`` queue gets.

See :mod:`ckptd.core.unique_windows` for the ids. Scope ``forever`` and windows need nothing
here: the id is fixed, and the engine's usual rule (an id that exists in any state is
returned, never made twice) does the rest. Scope ``open`` and debounce need to know whether a
job of the payload is pending or claimed: :class:`OpenJobs` remembers the last id made per
payload key, and the index says whether it is still open (a stale entry is simply replaced).
A debounced submit whose job is still pending is answered by rewriting that job
(:mod:`ckptd.daemon.engine.debounce`).
"""

from __future__ import annotations

from typing import Any

from ckptd.core import dedup
from ckptd.core.config import Settings
from ckptd.core.errors import InvalidInput
from ckptd.core.unique_windows import uniqueness_of, window_id
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
        is not unique); with debounce, the start pushed back (``delay``), and ``debounce_of``
        naming the pending job it replaces. Raises InvalidInput for an id of the producer's
        own, ValueError for a payload that is not JSON."""
        unique = uniqueness_of(settings, index.name)
        if unique is None or body.get("keep_id"):
            return body
        if body.get("own_id"):
            raise InvalidInput(f"queue {index.name!r} makes ids from payloads (unique = "
                               "\"payload\" or unique_fields in its config): submit without "
                               "an id of your own")
        given = body.get("payload_key")  # a keyed hash, from a client that seals payloads
        key = given if unique.by == "payload" and isinstance(given, str) \
            and dedup.key_of(given) == given else unique.key(body.get("payload"))
        fresh = False
        more: dict[str, Any] = {}
        if unique.scope == "forever":
            job_id = key
        elif unique.scope == "window":
            job_id = window_id(key, now, unique.seconds)
        else:  # open, or debounce
            known = self.ids.get((index.name, key))
            if unique.scope == "debounce":
                more["delay"] = unique.seconds
                if known is not None and known in index.pending:
                    more["debounce_of"] = known  # rewritten; a running one keeps its payload
                else:
                    known = None
            elif known is not None and known not in index.pending \
                    and known not in index.claimed:
                known = None
            if known is not None:
                job_id = known
            else:  # a new id, which cannot exist yet
                job_id = self.ids[(index.name, key)] = dedup.open_id(key, now)
                fresh = True
        return {**body, **more, "id": job_id, "if_exists": "return", "fresh": fresh,
                "unique": True}

    def hit(self, queue: str) -> None:
        """A submit found its payload's job."""
        self.hits[queue] = self.hits.get(queue, 0) + 1
