"""Membership: which daemons share a bucket, seen through records in its control area.

Each daemon writes ``<prefix>/.ckptd/members/<name>.json`` every quarter lease: who it is
(its name, a token new at every start, its control and dispatch addresses), which queues it
leads and until when (wall clock, for people and checkers: the fence itself runs on the
holder's monotonic clock), which queues it may lead (``lead``), its pins (``[queues.X]
prefer``) and the counts of its queues, which ``status`` through any other daemon shows.

Who is alive is judged the way a lease is: a record whose ETag has not changed for a whole
lease, measured on the reader's own clock, belongs to a daemon that died or stalls, so no two
clocks have to agree. The lease is measured up to the reader's last look, not to now: a
reader that was paused itself (SIGSTOP, a suspended machine) or could not list keeps its
last verdict until it looks again, instead of taking every other daemon for dead (it then
said it was the lone, active daemon until its next listing). A record seen for the first
time counts as alive when its own time stamp is recent (a reader that starts must not wait
a lease to know its peers; a wrong guess costs balance, never safety, which the queue leases
keep). A daemon that stops cleanly deletes its record, and records dead for long are
deleted by whoever sees them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ckptd.core.errors import StoreError
from ckptd.daemon.cluster.records import LeaseSpan, MemberRecord
from ckptd.store.objects import ControlObjects

log = logging.getLogger(__name__)

MEMBERS = "members/"
FORGET_AFTER_LEASES = 20  # a record dead this long is deleted by whoever sees it


@dataclass
class Member:
    """Another daemon, as its record and the changes of its ETag show it."""

    name: str
    record: MemberRecord = field(default_factory=lambda: MemberRecord())
    etag: str = ""  # as listed (no quotes)
    changed: float = -math.inf  # on our monotonic clock: when its ETag last changed
    alive_since: float | None = None  # on our clock: since when it counts as alive

    def alive(self, now: float, lease: float) -> bool:
        """True while its record changed within the last lease."""
        return now - self.changed < lease

    def leads(self) -> dict[str, LeaseSpan]:
        """The queues its record says it leads: {queue: {"since", "until"}} (wall clock)."""
        found = self.record.get("leads")
        return found if isinstance(found, dict) else {}


def _parse(data: bytes) -> MemberRecord | None:
    try:
        record: MemberRecord = json.loads(data)  # as that daemon wrote it
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Membership:
    """This daemon's record and its view of the others (used by one thread only)."""

    def __init__(self, objects: ControlObjects, name: str, lease: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objects = objects
        self.name = name
        self.lease = lease
        self.clock = clock
        self.token = os.urandom(8).hex()  # this start of the daemon
        self.started = time.time()
        self.others: dict[str, Member] = {}
        self.seq = 0
        self.clash = False  # another daemon writes records under our name
        self.etag = ""  # of our last write of our record
        self.looked = -math.inf  # on our clock: when observe() last ran

    @property
    def path(self) -> str:
        """Our record's name in the control area."""
        return f"{MEMBERS}{self.name}.json"

    def publish(self, record: MemberRecord) -> None:
        """Write our record (raises StoreError when the bucket does not answer)."""
        self.seq += 1
        body: MemberRecord = {"name": self.name, "token": self.token, "pid": os.getpid(),
                "host": os.uname().nodename, "started": self.started, "renewed": time.time(),
                "lease_s": self.lease, "seq": self.seq, **record}
        self.etag = self.objects.put(self.path,
                                     json.dumps(body, sort_keys=True).encode()).strip('"')

    def observe(self, listed: dict[str, str], ours: str | None) -> None:
        """Follow the others' records from one listing of ``members/`` ({name: ETag});
        ``ours`` is the ETag our own record is listed with (a clash check)."""
        now = self.clock()
        seen = set()
        for key, etag in listed.items():
            name = key[len(MEMBERS):].removesuffix(".json")
            if not key.endswith(".json") or name == self.name:
                continue
            seen.add(name)
            member = self.others.get(name)
            if member is None:
                member = self.others[name] = Member(name)
            if etag == member.etag:
                self._maybe_forget(member, now)
                continue
            current = self._read(key)
            if current is None:
                continue
            first = not member.etag
            member.record, member.etag = current, etag
            renewed = current.get("renewed")
            recent = isinstance(renewed, (int, float)) and \
                abs(time.time() - renewed) < self.lease
            if not first or recent:
                member.changed = now
                if member.alive_since is None:
                    member.alive_since = now
                    log.info("daemon %s joined (control %s)", name, current.get("control"))
        for name in [n for n in self.others if n not in seen]:
            gone = self.others.pop(name)
            if gone.alive_since is not None:
                log.info("daemon %s left (its record was deleted)", name)
        self.looked = now
        self._check_clash(ours)

    def _read(self, key: str) -> MemberRecord | None:
        try:
            current = self.objects.get(key)
        except StoreError as exc:
            log.debug("cannot read %s: %s", key, exc)
            return None
        return None if current is None else _parse(current[0])

    def _maybe_forget(self, member: Member, now: float) -> None:
        if member.alive_since is not None and not member.alive(now, self.lease):
            member.alive_since = None
            log.warning("daemon %s stopped renewing its record: taken as dead",
                        member.name)
        if now - member.changed > FORGET_AFTER_LEASES * self.lease and member.etag:
            current = self.objects.get(f"{MEMBERS}{member.name}.json")
            if current is not None and current[1].strip('"') == member.etag:
                self.objects.delete(f"{MEMBERS}{member.name}.json", if_match=current[1])

    def _check_clash(self, ours: str | None) -> None:
        if ours is None or not self.etag or ours == self.etag:  # (not written yet: an
            # earlier run's record is still there)
            self.clash = False
            return
        current = self._read(self.path)
        clash = current is not None and current.get("token") != self.token
        if clash and not self.clash:
            log.error("another daemon writes its membership record under this daemon's name "
                      "%r: give each daemon a name of its own (setting name)", self.name)
        self.clash = clash

    def alive(self) -> dict[str, Member]:
        """The other daemons alive at our last look (see the module docstring)."""
        return {n: m for n, m in self.others.items() if m.alive(self.looked, self.lease)}

    def settled(self, name: str, how_long: float) -> bool:
        """True when daemon ``name`` has counted as alive for at least ``how_long``."""
        member = self.others.get(name)
        if member is None or member.alive_since is None:
            return False
        return self.clock() - member.alive_since >= how_long

    def withdraw(self) -> None:
        """Delete our record (a clean stop: the others need not wait a lease)."""
        self.objects.delete(self.path)
