"""A lease per queue: which daemon of a bucket leads which queue, kept in a thread.

Each queue has a lease object, ``<prefix>/.ckptd/queues/<queue>.json``, taken and renewed
only with conditional writes (:class:`~ckptd.daemon.cluster.lease.LeaderLease`); each daemon has a
membership record beside them (:mod:`~ckptd.daemon.cluster.membership`). Every quarter lease the
thread of :class:`QueueLeases`:

1. renews the leases it holds (If-Match on its last ETag; lost ones are dropped);
2. lists the control area once, which gives the ETags of every record and lease object;
3. follows the other daemons' records (who is alive, what each leads and may lead);
4. decides with :func:`~ckptd.daemon.cluster.balance.assign` which live daemon should lead each
   known queue (the same answer in every daemon that sees the same);
5. hands over a queue it leads that another daemon should lead, once that daemon has been
   alive for a whole lease: it closes the queue's fence at once, waits until the daemon's
   loop has dropped the queue, then deletes the lease object (If-Match), so that the other
   takes it at its next look instead of waiting a lease;
6. takes the queues it should lead: creates a lease object that is absent
   (If-None-Match: *), or takes over one whose ETag has not changed for a whole lease on
   this daemon's own clock (its holder died or stalls), or at once when its holder was an
   earlier run of this daemon that is certainly gone
   (:mod:`~ckptd.daemon.cluster.previous_run`: a restart after a crash). A queue that no
   live daemon leads for a whole lease is taken by any daemon that may lead it, whatever the
   balance says, so that differing views can never leave a queue without a leader;
7. writes its own record, with the queues it now leads.

A lease is valid on the holder's monotonic clock until ``LEASE_SAFETY`` of a lease after it
sent the write that renewed it; another daemon takes over only a whole lease after it saw
that write. :meth:`QueueLeases.fence` is asked before every store write to a queue and
refuses it once the queue's lease has lapsed, so a daemon that stalled (SIGSTOP, a long
pause, a lost network) and wakes after its queues were taken writes nothing more to them.
The thread never blocks the daemon's loop; it wakes the loop whenever what it leads changes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ckptd.core.config import LiveSettings
from ckptd.core.errors import NotLeader, StoreError
from ckptd.daemon.cluster.balance import assign, may_lead
from ckptd.daemon.cluster.lease import CHECKS_PER_LEASE, LEASE_NAME, LeaderLease, parse_record
from ckptd.daemon.cluster.membership import MEMBERS, Membership
from ckptd.daemon.cluster.previous_run import gone
from ckptd.daemon.cluster.records import Addresses, LeaseSpan, MemberRecord
from ckptd.store.objects import ControlObjects

log = logging.getLogger(__name__)

QUEUES = "queues/"
SETTLE_LEASES = 1.0  # a daemon is handed queues once it has been alive this many leases
HANDOVER_GRACE = 0.5  # seconds between closing a queue's fence and deleting its lease
PARALLEL = 16  # renewals (and takes) in flight at once


class QueueLeases:
    """The leases of the queues this daemon leads (see the module docstring)."""

    def __init__(self, objects: ControlObjects, live: LiveSettings, *, name: str,
                 info: Addresses, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objects = objects
        self.live = live
        self.name = name
        self.info = Addresses(**info)  # control, dispatch, bound, root: in records and leases
        self.wake = wake
        self.clock = clock
        self.duration = live.current.leader_lease
        self.members = Membership(objects, name, self.duration, clock=clock)
        self.error: str | None = None
        self.failure: StoreError | None = None  # the last look's error, while it fails
        self.refused = 0  # writes the fence refused (a lapsed or handed-over lease)
        self.legacy = False  # a daemon of an older ckptd holds the store's one lease
        # Read by other threads, replaced whole (never changed in place) by this one:
        self._until: dict[str, float] = {}  # queue -> fence deadline (monotonic)
        self._routes: dict[str, MemberRecord] = {}  # queue -> its leader's record
        self._alive: dict[str, MemberRecord] = {}  # live daemons' records, ours too
        self._targets: dict[str, str] = {}
        self.counts: dict[str, dict[str, int]] = {}  # set by the loop: our queues' counts
        # This thread's own:
        self._leases: dict[str, LeaderLease] = {}
        self._since: dict[str, float] = {}  # queue -> when we took it (wall clock)
        self._observed: dict[str, tuple[str, float]] = {}  # queue -> (ETag, first seen)
        self._orphan: dict[str, float] = {}  # queue -> since when no live daemon leads it
        self._releasing: dict[str, float] = {}  # queue -> when its fence was closed
        self._legacy_seen: tuple[str, float] | None = None
        # Handed in by other threads:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._wanted: set[str] = set()
        self._dropped: set[str] = set()  # the loop dropped these queues' index
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- what other threads ask ------------------------------------------------------------

    def fence(self, queue: str) -> None:
        """Raise NotLeader unless this daemon's lease of ``queue`` is valid now (called by
        the store before every write to the queue, at the last moment)."""
        if time.monotonic() >= self._until.get(queue, 0.0):
            self.refused += 1
            raise NotLeader(f"this daemon no longer leads queue {queue!r} (its lease lapsed or "
                            "was handed over); it writes nothing more there")

    def valid(self) -> set[str]:
        """The queues this daemon may write to now."""
        now = time.monotonic()
        return {q for q, until in self._until.items() if now < until}

    def leader(self, queue: str) -> MemberRecord | None:
        """The record of the live daemon that leads ``queue`` (ours included), or None."""
        return self._routes.get(queue)

    def target(self, queue: str) -> MemberRecord | None:
        """The record of the live daemon that should lead ``queue``, or None."""
        name = self._targets.get(queue)
        return self._alive.get(name) if name else None

    def routes(self) -> dict[str, MemberRecord]:
        """{queue: its leader's record} for every queue led by a live daemon."""
        return self._routes

    def alive(self) -> dict[str, MemberRecord]:
        """{name: record} of the live daemons, this one included."""
        return self._alive

    def want(self, queue: str) -> None:
        """A request came for ``queue``, which nobody leads: look at it now."""
        with self._lock:
            if queue in self._wanted:
                return
            self._known.add(queue)
            self._wanted.add(queue)
        self._kick.set()

    def add_queues(self, names: list[str]) -> None:
        """Queues found in the bucket (by a listing)."""
        with self._lock:
            fresh = set(names) - self._known
            self._known.update(fresh)
        if fresh:
            self._kick.set()

    def dropped(self, queue: str) -> None:
        """The loop dropped the index of ``queue`` and writes nothing more there."""
        with self._lock:
            self._dropped.add(queue)
        if queue in self._releasing:
            self._kick.set()

    def view(self, tokens: bool = False) -> dict[str, LeaseSpan]:
        """{queue: {"since", "until"}} of our valid leases, on the wall clock (for ping and
        checkers: the fence itself runs on the monotonic clock); ``tokens`` adds each
        lease's token (as in its object in the bucket)."""
        now, wall = time.monotonic(), time.time()
        leases = self._leases
        spans: dict[str, LeaseSpan] = {}
        for q, until in self._until.items():
            if now < until:
                span: LeaseSpan = {"since": self._since.get(q, wall), "until": wall + (until - now)}
                if tokens and q in leases:
                    span["token"] = leases[q].token
                spans[q] = span
        return spans

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Look once (so that a lone daemon leads its queues before it serves), then keep
        looking in a thread."""
        self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="ThreadPoolExecutor-lease")
        self._tick()
        self._thread = threading.Thread(target=self._run, name="ckptd-leases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.duration / CHECKS_PER_LEASE
        next_at = self.clock() + interval
        while not self._stop.is_set():
            self._kick.wait(max(0.0, next_at - self.clock()))
            if self._stop.is_set():
                break
            kicked = self._kick.is_set()
            self._kick.clear()
            if not kicked or self.clock() >= next_at:
                next_at = self.clock() + interval
                self._tick()
            else:
                self._tick(quick=True)

    def _tick(self, quick: bool = False) -> None:
        """One look (``quick``: only what was asked for or handed back since the last)."""
        try:
            if not quick:
                self._renew()
                self._share()  # the renewed deadlines reach the fence at once
            listed = self.objects.tagged("")
            self._follow(listed, quick)
            self._share()
            if not quick:
                self._publish()
            self.error = None
            self.failure = None
        except StoreError as exc:
            if self.error != str(exc):
                log.warning("queue leases: %s", exc)
            self.error = str(exc)
            self.failure = exc
        finally:
            self._share()

    def _renew(self) -> None:
        held = [(q, lease) for q, lease in self._leases.items() if lease.etag is not None]
        if not held:
            return
        assert self._pool is not None
        results = list(self._pool.map(lambda item: self._renew_one(*item), held))
        if any(results):
            self.wake()

    def _renew_one(self, queue: str, lease: LeaderLease) -> bool:
        """Renew one lease; True when it was lost (the loop must drop the queue)."""
        try:
            if lease.renew():
                return False
        except StoreError as exc:
            log.warning("cannot renew the lease of queue %s (it lapses by itself unless a "
                        "later renewal gets through): %s", queue, exc)
            return False
        log.error("lost the lease of queue %s to another daemon", queue)
        self._leases.pop(queue, None)
        self._releasing.pop(queue, None)
        return True

    def _follow(self, listed: dict[str, str], quick: bool) -> None:
        now = self.clock()
        members = {k: v for k, v in listed.items() if k.startswith(MEMBERS)}
        leases = {k[len(QUEUES):].removesuffix(".json"): v for k, v in listed.items()
                  if k.startswith(QUEUES) and k.endswith(".json")}
        if not quick:
            self.members.observe(members, members.get(self.members.path))
            self._check_legacy(listed.get(LEASE_NAME), now)
        for queue, etag in leases.items():
            seen = self._observed.get(queue)
            if seen is None or seen[0] != etag:
                self._observed[queue] = (etag, now)
        for queue in [q for q in self._observed if q not in leases]:
            del self._observed[queue]
        alive = self.members.alive()
        with self._lock:
            known = self._known | set(leases) | {q for m in alive.values() for q in m.leads()}
            self._known = known
            wanted, self._wanted = self._wanted, set()
        settings = self.live.current
        lead = {n: m.record.get("lead") or [] for n, m in alive.items()}
        lead[self.name] = list(settings.lead)
        prefer: dict[str, str] = {}
        for pins in [m.record.get("prefer") or {} for _, m in sorted(alive.items())] + \
                [self._pins()]:
            for queue, member in pins.items():
                prefer.setdefault(queue, member)
        led_by_others = {q for m in alive.values() for q in m.leads()}
        holders = {q: n for n, m in sorted(alive.items()) for q in m.leads()}
        holders.update({q: self.name for q in self._leases})
        holders.update({q: self.name for q in wanted if q not in holders})
        targets = assign(known, [self.name, *alive], holders=holders, prefer=prefer,
                         lead=lead)
        for queue in known:
            if queue in self._leases or queue in led_by_others:
                self._orphan.pop(queue, None)
            else:
                self._orphan.setdefault(queue, now)
        changed = self._hand_over(targets, alive.keys(), now)
        if not self.legacy:
            changed |= self._take(targets, leases, led_by_others, wanted, now)
        self._targets = targets
        if changed:
            self.wake()

    def _pins(self) -> dict[str, str]:
        return {q: s.prefer for q, s in self.live.current.queues.items() if s.prefer}

    def _hand_over(self, targets: dict[str, str], alive: Iterable[str], now: float) -> bool:
        changed = False
        alive = set(alive)
        for queue in list(self._leases):
            target = targets.get(queue, self.name)
            releasing = queue in self._releasing
            if target == self.name or target not in alive:
                if releasing:  # the balance changed its mind (or the other died)
                    del self._releasing[queue]
                    changed = True
                continue
            if not releasing:
                if self.members.settled(target, SETTLE_LEASES * self.duration):
                    self._releasing[queue] = now
                    with self._lock:
                        self._dropped.discard(queue)
                    log.info("handing queue %s over to daemon %s (balance)", queue, target)
                    changed = True
                continue
            with self._lock:
                dropped = queue in self._dropped
            if dropped and now - self._releasing[queue] >= HANDOVER_GRACE:
                lease = self._leases.pop(queue)
                del self._releasing[queue]
                try:
                    lease.release()
                except StoreError as exc:
                    log.warning("could not give the lease of %s back (it lapses by itself): "
                                "%s", queue, exc)
                log.info("handed queue %s over to daemon %s", queue, target)
        return changed

    def _take(self, targets: dict[str, str], leases: dict[str, str], led_by_others: set[str],
              wanted: set[str], now: float) -> bool:
        settings = self.live.current
        chances: list[tuple[str, str | None]] = []
        for queue, target in targets.items():
            if queue in self._leases:
                continue
            mine = target == self.name
            orphaned = now - self._orphan.get(queue, now) >= self.duration
            if not mine and not (orphaned and may_lead(self.name, queue,
                                                       {self.name: settings.lead})):
                continue
            if queue in leases:
                etag, first = self._observed[queue]
                if queue in led_by_others:
                    continue  # it hands the queue over itself
                if now - first < self.duration and not self._previous_self(queue, etag):
                    continue  # maybe alive: wait until it has not renewed for a lease
                chances.append((queue, etag))
            else:
                chances.append((queue, None))
        if not chances:
            return False
        assert self._pool is not None
        took = [q for q in self._pool.map(lambda c: self._take_one(*c), chances) if q]
        for queue in wanted - set(took):
            log.debug("queue %s was asked for; its leader is %s", queue,
                      targets.get(queue))
        return bool(took)

    def _take_one(self, queue: str, listed: str | None) -> str | None:
        lease = LeaderLease(self.objects, f"{QUEUES}{queue}.json", self.name, self.duration,
                            {"queue": queue, **self.info}, clock=self.clock)
        try:
            if not lease.take(listed):
                return None
        except StoreError as exc:
            log.warning("cannot take the lease of queue %s: %s", queue, exc)
            return None
        self._leases[queue] = lease
        self._since[queue] = time.time()
        self._orphan.pop(queue, None)
        log.info("took the lease of queue %s: this daemon leads it", queue,
                 extra={"fields": {"lease_s": self.duration}})
        return queue

    def _previous_self(self, queue: str, etag: str) -> bool:
        """True when the lease object was written by an earlier run of this very daemon
        (same name) whose process is certainly gone (:mod:`~ckptd.daemon.cluster.
        previous_run`): it is taken over at once instead of after a lease."""
        try:
            current = self.objects.get(f"{QUEUES}{queue}.json")
        except StoreError:
            return False
        if current is None or current[1].strip('"') != etag:
            return False
        record = parse_record(current[0]) or {}
        return record.get("holder") == self.name and gone(record)

    def _check_legacy(self, etag: str | None, now: float) -> None:
        """A daemon of an older ckptd renews ``leader.json`` and leads every queue: lead
        nothing new while it does (two leaders would run jobs twice)."""
        if etag is None:
            self._legacy_seen = None
        elif self._legacy_seen is None:  # first sight: alive when written recently
            current = self.objects.get(LEASE_NAME)
            record = parse_record(current[0]) if current is not None else None
            renewed = (record or {}).get("renewed")
            recent = isinstance(renewed, (int, float)) and \
                abs(time.time() - renewed) < self.duration
            self._legacy_seen = (etag, now if recent else -math.inf)
        elif self._legacy_seen[0] != etag:
            self._legacy_seen = (etag, now)
        legacy = self._legacy_seen is not None and now - self._legacy_seen[1] < self.duration
        if legacy and not self.legacy:
            log.error("a daemon of an older ckptd renews %s and leads every queue of this "
                      "bucket: this daemon leads nothing until it stops (upgrade it)",
                      LEASE_NAME)
        self.legacy = legacy

    def _publish(self) -> None:
        record = self._own_record()
        record["prefer"] = self._pins()
        record["counts"] = self.counts
        self.members.publish(record)

    def _own_record(self) -> MemberRecord:
        info = self.info
        return {"control": info["control"], "dispatch": info["dispatch"],
                "bound": info["bound"], "host": info["host"], "root": info["root"],
                "leads": self.view(), "lead": list(self.live.current.lead)}

    def _share(self) -> None:
        """Replace what other threads read by this look's results."""
        until = {q: lease.valid_until for q, lease in self._leases.items()
                 if lease.etag is not None and q not in self._releasing}
        before, self._until = self._until, until
        alive = {n: m.record for n, m in self.members.alive().items()}
        own = alive[self.name] = self._own_record()
        own["name"] = self.name
        routes: dict[str, MemberRecord] = {}
        for record in alive.values():
            for queue, lease in (record.get("leads") or {}).items():
                known = routes.get(queue)
                if known is None or _until(known.get("leads", {}).get(queue)) < _until(lease):
                    routes[queue] = record
        for queue in until:
            routes[queue] = alive[self.name]
        if until.keys() != before.keys():
            self.wake()
        self._alive, self._routes = alive, routes

    def stop(self, release: bool) -> None:
        """Stop the thread; with ``release``, give every lease back and withdraw this
        daemon's record, so that the others take over at once."""
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._until = {}
        if release:
            for queue, lease in list(self._leases.items()):
                try:
                    lease.release()
                except StoreError as exc:
                    log.warning("could not give the lease of %s back (it lapses by itself): "
                                "%s", queue, exc)
            if self._leases:
                log.info("gave the leases of %d queue(s) back", len(self._leases))
            self._leases.clear()
            try:
                self.members.withdraw()
            except StoreError as exc:
                log.warning("could not withdraw this daemon's record: %s", exc)
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _until(lease: LeaseSpan | None) -> float:
    """When a lease in a record ends (0 when the record names none)."""
    return lease.get("until") or 0 if lease else 0
