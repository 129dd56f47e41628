"""A leader lease: which daemon leads a queue of a bucket, and for how long.

Each queue has one lease object in the bucket, ``<prefix>/.ckptd/queues/<queue>.json``
(:mod:`ckptd.daemon.cluster.queue_leases` keeps them), that says who holds it. Only conditional
writes touch it:

- take a free lease: ``PUT`` with ``If-None-Match: *`` (only one daemon can create it);
- renew it: ``PUT`` with ``If-Match: <the ETag we wrote last>`` (fails once another took it);
- take over a lease nobody renews: ``PUT`` with ``If-Match: <the ETag seen>``, once that
  ETag has not changed for a whole lease (measured on the standby's own clock, so no two
  clocks have to agree);
- give it back on a clean stop: ``DELETE`` with ``If-Match``, so the standby need not wait.

The holder counts its lease from the moment it *sent* the write that renewed it and treats
it as lapsed after ``LEASE_SAFETY`` of its length: a standby can only take over a whole
lease after it saw that write, so the old holder has stopped writing (it fences every store
request on :meth:`~ckptd.daemon.cluster.queue_leases.QueueLeases.fence`) a quarter lease
before the new one may start. The holder renews every quarter lease; the others look every
quarter lease, so one takes over within 1.5 leases of the holder's death.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping

from ckptd.daemon.cluster.previous_run import MARK, gone, process_mark
from ckptd.daemon.cluster.records import LeaseRecord
from ckptd.store.objects import Conflict, ControlObjects

log = logging.getLogger(__name__)

LEASE_NAME = "leader.json"  # the one lease of the store, before a lease per queue
LEASE_SAFETY = 0.75  # the holder stops writing after this much of its lease
CHECKS_PER_LEASE = 4  # renewals by the holder, looks by the standby, per lease


class LeaderLease:
    """The lease protocol itself (see the module docstring); no threads, no waiting."""

    def __init__(self, objects: ControlObjects, path: str, name: str, duration: float,
                 info: Mapping[str, object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objects = objects
        self.path = path  # the lease object's name in the control area
        self.name = name
        self.duration = duration
        self.info = dict(info or {})
        self.clock = clock
        self.etag: str | None = None  # the ETag of our own last write, while we hold it
        self.valid_until = 0.0  # on ``clock``: stop writing at this instant
        self.holder: LeaseRecord | None = None  # the record of another holder
        self.token = os.urandom(8).hex()  # tells our own writes from any other daemon's
        self._seen: tuple[str, float] | None = None  # (ETag, first seen) of another holder

    def _record(self) -> bytes:
        return json.dumps({"holder": self.name, "pid": os.getpid(), "lease_s": self.duration,
                           "renewed": time.time(), "token": self.token,
                           MARK: process_mark(), **self.info}).encode()

    def held(self) -> bool:
        """True while this daemon holds the lease and it has not lapsed."""
        return self.etag is not None and self.clock() < self.valid_until

    def try_acquire(self) -> bool:
        """Take the lease if it is free or abandoned; return True when we hold it now.

        Raises StoreError when the bucket cannot be reached (nothing is known then).
        """
        sent = self.clock()
        current = self.objects.get(self.path)
        try:
            if current is None:
                etag = self.objects.put(self.path, self._record(), create=True)
            else:
                data, seen = current
                record = parse_record(data)
                # Ours when the ETag is our last one, or when a renewal got through but its
                # answer did not (the record has our token): then no other daemon waits.
                ours = seen == self.etag or (record or {}).get("token") == self.token
                self.holder = None if ours else record
                if not ours:  # another holder's write
                    if self._seen is None or self._seen[0] != seen:
                        self._seen = (seen, sent)
                        return False
                    if sent - self._seen[1] < self.duration:
                        return False
                    log.warning("the leader lease was not renewed for %.1fs; taking over",
                                sent - self._seen[1],
                                extra={"fields": {"previous": (self.holder or {}).get("holder")}})
                etag = self.objects.put(self.path, self._record(), if_match=seen)
        except Conflict:
            self._seen = None
            return False
        self._took(etag, sent)
        return True

    def take(self, listed: str | None) -> bool:
        """Take the lease now, on what a listing showed: create it when ``listed`` is None
        (absent), else take it over from a holder whose object kept ETag ``listed`` (no
        quotes) for a whole lease, as the caller saw it. Return True when we hold it now;
        False when it changed meanwhile (another daemon took or renewed it).

        Raises StoreError when the bucket cannot be reached.
        """
        sent = self.clock()
        try:
            if listed is None:
                etag = self.objects.put(self.path, self._record(), create=True)
            else:
                current = self.objects.get(self.path)
                if current is None:
                    etag = self.objects.put(self.path, self._record(), create=True)
                else:
                    data, seen = current
                    ours = (parse_record(data) or {}).get("token") == self.token
                    if not ours and seen.strip('"') != listed:
                        return False
                    if not ours:
                        self.holder = parse_record(data)
                        previous = self.holder or {}
                        if previous.get("holder") == self.name and gone(previous):
                            log.info("the lease %s was this daemon's before its restart, and "
                                     "that process is gone: taking it back at once", self.path,
                                     extra={"fields": {"previous_pid": previous.get("pid")}})
                        else:
                            log.warning("the lease %s was not renewed for a whole lease; "
                                        "taking over", self.path, extra={"fields": {
                                            "previous": previous.get("holder")}})
                    etag = self.objects.put(self.path, self._record(), if_match=seen)
        except Conflict:
            return False
        self._took(etag, sent)
        return True

    def _took(self, etag: str, sent: float) -> None:
        self.etag = etag
        self.valid_until = sent + self.duration * LEASE_SAFETY
        self.holder = None
        self._seen = None

    def renew(self) -> bool:
        """Renew a lease we hold; return False when it is lost (another holder took it).

        Raises StoreError when the bucket cannot be reached: the lease then lapses by itself
        at ``valid_until`` unless a later renewal gets through.
        """
        if self.etag is None:
            return False
        sent = self.clock()
        try:
            try:
                etag = self.objects.put(self.path, self._record(), if_match=self.etag)
            except Conflict:
                # A renewal whose answer was lost changed the ETag to one we never saw.
                current = self.objects.get(self.path)
                if current is None or (parse_record(current[0]) or {}).get("token") != self.token:
                    raise
                etag = self.objects.put(self.path, self._record(), if_match=current[1])
        except Conflict:
            self.etag = None
            self.valid_until = 0.0
            return False
        self._took(etag, sent)
        return True

    def release(self) -> None:
        """Give the lease back (a clean stop), so that a standby takes over at once."""
        etag, self.etag, self.valid_until = self.etag, None, 0.0
        if etag is not None:
            self.objects.delete(self.path, if_match=etag)


def parse_record(data: bytes) -> LeaseRecord | None:
    """The JSON object of a lease record, or None when it is not one."""
    try:
        record: LeaseRecord = json.loads(data)  # as its holder wrote it
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
