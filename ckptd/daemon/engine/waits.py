"""Waiting jobs: who waits on whom, and the one rename that lets each go on.

The files in ``waiting/`` are the truth (:mod:`ckptd.core.waits` says what they hold); this
module keeps a cache of them, rebuilt at recovery: for each waiting job of the queues this
daemon leads, what it waits for, and for each job waited on, who waits on it. Events move
it on:

- a job ends (done, failed, abandoned, cancelled: :meth:`Waits.ended`) and its waiting
  dependents learn it;
- a signal arrives (:mod:`~ckptd.daemon.engine.signal_box`), or a time comes (a heap);
- a parent in a queue another daemon leads is looked up in the store every
  :data:`POLL_INTERVAL` (in a thread): the end is in the store, so a listing always finds it
  again, even when every message about it was lost.

When a waiting job's verdict changes (:func:`ckptd.core.waits.decide`) its file is moved,
once: ``waiting -> pending`` (wake, with the ``woken`` record) or ``waiting -> failed``
(abandon: a parent failed and the rule is ``fail``). Ends learned while a job still waits
for others are written into its file at the next turn (``wait.ended``), so a parent removed
by retention later still counts with the state it ended in.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckptd.codec import decode_job, encode_job
from ckptd.core import waits
from ckptd.core.errors import CkptdError, InvalidName, JobNotFound, MalformedJob
from ckptd.core.job_keys import key_of_job
from ckptd.core.jobs import Job, priority_of
from ckptd.core.states import State
from ckptd.daemon.engine.index import Index, QueueIndex
from ckptd.daemon.engine.signal_box import SignalBox
from ckptd.store.base import Move, Op, Outcome

log = logging.getLogger(__name__)

Key = tuple[str, str]
Ended = Callable[[str, str, Job, State, float], None]
POLL_INTERVAL = 1.0  # seconds between looks at parents that other daemons lead
RETRY_DELAY = 1.0  # a wake whose move the store refused is tried again after this


@dataclass(slots=True)
class Waiting:
    """One waiting job: what its file says, and how many of the jobs it waits for are open."""

    wait: waits.Wait
    left: int
    moving: bool = False
    recorded: int = 0  # ends already written in its file


class Waits:
    """The waiting jobs of the queues this daemon leads."""

    def __init__(self, index: Index, ended: Ended,
                 failing: Callable[[str, Job, float], Op | None]) -> None:
        self.ix = index
        self.ended_hook = ended  # a job reached done/ or failed/ (flows, batches, waits)
        self.failing = failing  # the op that must precede a move to failed/ (on_failure)
        self.signals = SignalBox(index, self.signal_arrived)
        self.jobs: dict[Key, Waiting] = {}
        self.dependents: dict[str, list[Key]] = {}
        self.timers: list[tuple[float, str, str]] = []
        self.dirty: set[Key] = set()
        self.foreign: set[str] = set()  # refs in queues another daemon leads
        self._poll_at = 0.0
        self._polled: deque[dict[str, str]] = deque()
        self._thread: threading.Thread | None = None
        self.counters = {"woken": 0, "abandoned": 0, "held": 0, "parked": 0}

    # -- the cache -------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget everything (the daemon stopped leading; the files stay the truth)."""
        self.jobs.clear()
        self.dependents.clear()
        self.timers.clear()
        self.dirty.clear()
        self.foreign.clear()
        self.signals.clear()

    def drop(self, queue: str) -> None:
        """Forget the waiting jobs of one queue (another daemon leads it now)."""
        for key in [k for k in self.jobs if k[0] == queue]:
            del self.jobs[key]
        self.dirty = {k for k in self.dirty if k[0] != queue}
        self.signals.drop(queue)

    def recover(self, queue: str, ids: list[str], now: float) -> None:
        """Read the queue's waiting files into the cache (and its signals)."""
        index = self.ix.queue(queue)
        store = self.ix.store
        index.waiting.update(ids)
        self.signals.recover(queue)
        for job_id in ids:
            try:
                job = decode_job(store.read(queue, State.WAITING, job_id), queue, job_id)
            except JobNotFound:
                index.waiting.discard(job_id)
                continue
            except MalformedJob as exc:
                index.waiting.discard(job_id)
                self.ix.quarantine(index, State.WAITING, job_id, str(exc))
                continue
            self.register(queue, job_id, job, now)
        for key in list(self.jobs):
            if key[0] != queue and any(r.startswith(f"{queue}/") for r in
                                       self.jobs[key].wait.open_refs()):
                self._relook(key, now)  # it waits on jobs of the queue just recovered

    def appeared(self, queue: str, job_id: str, now: float) -> None:
        """A file appeared in ``waiting/`` that the daemon did not put there (a store
        command's submit, or a file moved in by hand)."""
        if (queue, job_id) in self.jobs or (queue, job_id) in self.ix.in_flight:
            return  # known, or the daemon's own move not applied yet (its callback knows it)
        try:
            job = decode_job(self.ix.store.read(queue, State.WAITING, job_id), queue, job_id)
        except JobNotFound:
            return
        except CkptdError as exc:
            log.warning("cannot read waiting job %s/%s: %s", queue, job_id, exc)
            return
        self.ix.queue(queue).waiting.add(job_id)
        self.register(queue, job_id, job, now)

    def register(self, queue: str, job_id: str, job: Job, now: float) -> None:
        """Know a job that is in ``waiting/`` now, as its file ``job`` says."""
        key = (queue, job_id)
        if key in self.jobs:  # known already (it went round by hand): start afresh
            self._forget(key, self.ix.queue(queue))
        try:
            wait = waits.wait_of(job)
        except InvalidName as exc:
            log.error("waiting job %s/%s names what cannot be: %s (fix its file, or cancel "
                      "it)", queue, job_id, exc)
            wait = waits.Wait(since=now)
            wait.until = float("inf")  # waits for nothing it can get: fsck reports it
        self.ix.queue(queue).waiting.add(job_id)
        item = Waiting(wait, 0, recorded=len(wait.ended))
        self.jobs[key] = item
        for parent in wait.open_refs():
            end = self._end_of(parent)
            if end is not None:
                wait.ended[parent] = end
                continue
            item.left += 1
            self.dependents.setdefault(parent, []).append(key)
            if not self.ix.leads(parent.partition("/")[0]):
                self.foreign.add(parent)
        if len(wait.ended) > item.recorded:
            self.dirty.add(key)
        self.evaluate(key, now)

    def _end_of(self, parent: str) -> str | None:
        """How job ``parent`` ended, or None while it is open (the index knows the open jobs
        of the queues this daemon leads; the store is asked otherwise)."""
        queue, job_id = parent.split("/", 1)
        index = self.ix.queues.get(queue)
        if index is not None and self.ix.leads(queue) and (
                job_id in index.pending or job_id in index.claimed or job_id in index.waiting):
            return None
        try:
            found = self.ix.store.find(queue, job_id)
        except CkptdError as exc:
            log.warning("cannot look for %s (asked again later): %s", parent, exc)
            self.foreign.add(parent)
            return None
        if State.DONE in found:
            return waits.DONE
        if State.FAILED in found:
            return waits.FAILED
        return None if found else waits.REMOVED

    def _relook(self, key: Key, now: float) -> None:
        item = self.jobs.get(key)
        if item is None:
            return
        for parent in item.wait.open_refs():
            end = self._end_of(parent)
            if end is not None:
                self._learn(key, item, parent, end)
        self.evaluate(key, now)

    # -- events ----------------------------------------------------------------------------

    def ended(self, queue: str, job_id: str, end: str, now: float) -> None:
        """Job ``queue/id`` ended (``done``, ``failed``, ``removed``): tell who waits on it."""
        parent = waits.ref(queue, job_id)
        keys = self.dependents.pop(parent, None)
        self.foreign.discard(parent)
        if not keys:
            return
        for key in keys:
            item = self.jobs.get(key)
            if item is not None and parent not in item.wait.ended and not item.moving:
                self._learn(key, item, parent, end)
                self.evaluate(key, now)

    def _learn(self, key: Key, item: Waiting, parent: str, end: str) -> None:
        if parent in item.wait.ended:
            return
        item.wait.ended[parent] = end
        item.left -= 1
        self.dirty.add(key)

    def signal_arrived(self, queue: str, job_id: str, now: float) -> None:
        """A signal for ``queue/id`` arrived: look at it again."""
        self.evaluate((queue, job_id), now)

    def evaluate(self, key: Key, now: float) -> None:
        """Decide for one waiting job, and queue its move when it may go on."""
        item = self.jobs.get(key)
        if item is None or item.moving:
            return
        queue, job_id = key
        verdict = waits.decide(item.wait, self.signals.names(queue, job_id), now)
        if verdict.action == "wake":
            self._move(key, item, now, reason=verdict.reason)
        elif verdict.action == "abandon":
            assert verdict.parent is not None
            self._move(key, item, now, parent=verdict.parent)
        else:
            due = waits.next_time(item.wait)
            if due is not None and due != float("inf"):
                heapq.heappush(self.timers, (due, queue, job_id))

    # -- the moves -------------------------------------------------------------------------

    def _move(self, key: Key, item: Waiting, now: float, *, reason: str = "",
              parent: str | None = None) -> None:
        queue, job_id = key
        ix = self.ix
        index = ix.queue(queue)
        try:
            job = decode_job(ix.store.read(queue, State.WAITING, job_id), queue, job_id)
        except JobNotFound:
            self._forget(key, index)  # moved or removed by hand: the index follows
            return
        except CkptdError as exc:
            log.error("cannot read waiting job %s/%s (trying again): %s", queue, job_id, exc)
            heapq.heappush(self.timers, (now + RETRY_DELAY, queue, job_id))
            return
        item.moving = True
        if parent is None:
            signals, deletes = self.signals.take(queue, job_id)
            data = encode_job(waits.woken(job, item.wait, reason, now, signals))
            target = State.PENDING
        else:
            deletes = []
            data = encode_job(waits.abandoned(job, parent, item.wait.ended[parent], now))
            target = State.FAILED

        def moved(outcome: Outcome) -> None:
            item.moving = False
            if outcome is not None:
                if isinstance(outcome, JobNotFound):
                    self._forget(key, index)
                    return
                log.error("cannot move waiting job %s/%s: %s", queue, job_id, outcome)
                heapq.heappush(self.timers, (now + RETRY_DELAY, queue, job_id))
                return
            self._forget(key, index)
            fields: dict[str, Any] = {"queue": queue, "id": job_id, "from": "waiting",
                                      "to": target.value}
            if target is State.PENDING:
                self.counters["woken"] += 1
                index.pending.add(job_id)
                index.added_since_scan.add(job_id)  # a rescan listed before it: keep it
                index.ready.note(job_id, job.get("priority"))
                index.ready.note_key(job_id, key_of_job(job))
                ix.make_ready(index, job_id, None)
                log.info("wake", extra={"fields": {**fields, "reason": reason}})
                for op in deletes:
                    ix.txn.add(op)
            else:
                self.counters["abandoned"] += 1
                index.failed += 1
                index.counters["failed"] += 1
                ix.ended.append((queue, job_id))
                log.info("abandon", extra={"fields": {**fields, "parent": parent}})
                self.ended_hook(queue, job_id, job, State.FAILED, now)

        # A pending file's name carries the priority and key (store/file_names.py).
        woken = target is State.PENDING
        op = Move(queue, job_id, State.WAITING, target, data,
                  priority=priority_of(job) if woken else 0,
                  key=key_of_job(job) if woken else "")
        first = self.failing(queue, job, now) if target is State.FAILED else None
        if first is None:
            ix.txn.add(op, moved)
        else:
            ix.txn.add(first, lambda _outcome: ix.txn.add(op, moved))

    def _forget(self, key: Key, index: QueueIndex) -> None:
        item = self.jobs.pop(key, None)
        index.waiting.discard(key[1])
        self.dirty.discard(key)
        if item is None:
            return
        for parent in item.wait.open_refs():
            keys = self.dependents.get(parent)
            if keys is not None:
                try:
                    keys.remove(key)
                except ValueError:
                    pass
                if not keys:
                    del self.dependents[parent]
                    self.foreign.discard(parent)

    def hold(self, index: QueueIndex, job_id: str, job: Job, now: float) -> bool:
        """A job about to be claimed names parents and was never woken: move it to
        ``waiting/`` instead (``pending -> waiting``); False when it may run."""
        if not waits.holds(job):
            return False
        try:
            wait = waits.wait_of(job)
        except InvalidName as exc:
            log.error("job %s/%s names bad parents (%s): it runs without waiting", index.name,
                      job_id, exc)
            return False
        wait.since = now
        data = encode_job(waits.waiting(job, wait))
        index.pending.discard(job_id)

        def moved(outcome: Outcome) -> None:
            if outcome is None:
                index.ready.forget(job_id)  # noted again when it is woken
                self.counters["held"] += 1
                log.info("hold", extra={"fields": {"queue": index.name, "id": job_id,
                                                   "from": "pending", "to": "waiting"}})
                self.register(index.name, job_id, job, now)
            elif not isinstance(outcome, JobNotFound):
                log.error("cannot hold %s/%s in waiting/: %s", index.name, job_id, outcome)
                index.pending.add(job_id)
                self.ix.delay(index, job_id, now + RETRY_DELAY)

        priority = index.ready.prio.get(job_id, 0)
        self.ix.txn.add(Move(index.name, job_id, State.PENDING, State.WAITING, data,
                             priority=priority, key=index.ready.key_of(job_id)), moved)
        return True

    def cancelling(self, queue: str, job_id: str) -> bool:
        """Mark a waiting job as on its way out for a cancel (False when it is not waiting
        here, or already moving)."""
        item = self.jobs.get((queue, job_id))
        if item is None or item.moving:
            return False
        item.moving = True
        return True

    def forget(self, queue: str, job_id: str) -> None:
        """A waiting job left ``waiting/`` behind the daemon's back, or was cancelled."""
        self._forget((queue, job_id), self.ix.queue(queue))

    # -- each turn -------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Timers that are due, ends to write into files, what the polls found."""
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, queue, job_id = heapq.heappop(timers)
            self.evaluate((queue, job_id), now)
        while self._polled:
            for parent, end in self._polled.popleft().items():
                queue, job_id = parent.split("/", 1)
                self.ended(queue, job_id, end, now)
        if self.dirty:
            self._record(now)
        if self.foreign and now >= self._poll_at:
            self._poll_at = now + POLL_INTERVAL
            self._poll()

    def next_due(self) -> float | None:
        """When a timer is due next (the loop sleeps no longer)."""
        due = self.timers[0][0] if self.timers else None
        if self.foreign:
            due = self._poll_at if due is None else min(due, self._poll_at)
        return due

    def _record(self, now: float) -> None:
        """Write the ends learned into the files of jobs that still wait (one rewrite per
        job per turn, however many of its parents ended)."""
        dirty, self.dirty = self.dirty, set()
        store = self.ix.store
        for key in dirty:
            item = self.jobs.get(key)
            if item is None or item.moving or len(item.wait.ended) <= item.recorded:
                continue
            queue, job_id = key
            try:
                job = decode_job(store.read(queue, State.WAITING, job_id), queue, job_id)
            except CkptdError:
                continue  # moved meanwhile, or unreadable: the next end tries again
            record = job.get("wait") if isinstance(job.get("wait"), dict) else {}
            assert isinstance(record, dict)
            record["ended"] = dict(item.wait.ended)
            job["wait"] = record
            count = len(item.wait.ended)

            def written(outcome: Outcome, item: Waiting = item, count: int = count) -> None:
                if outcome is None:
                    item.recorded = max(item.recorded, count)

            self.ix.txn.add(Move(queue, job_id, State.WAITING, State.WAITING,
                                 encode_job(job)), written)

    def _poll(self) -> None:
        """Look up, in a thread, the parents that other daemons lead."""
        if self._thread is not None and self._thread.is_alive():
            return
        refs = sorted(self.foreign)
        store = self.ix.store

        def look() -> None:
            found: dict[str, str] = {}
            for parent in refs:
                queue, job_id = parent.split("/", 1)
                try:
                    states = store.find(queue, job_id)
                except CkptdError:
                    continue
                if State.DONE in states:
                    found[parent] = waits.DONE
                elif State.FAILED in states:
                    found[parent] = waits.FAILED
                elif not states:
                    found[parent] = waits.REMOVED
            if found:
                self._polled.append(found)

        self._thread = threading.Thread(target=look, name="ckptd-parents", daemon=True)
        self._thread.start()

    # -- what explain and status show --------------------------------------------------------

    def view(self, queue: str, job_id: str) -> dict[str, Any] | None:
        """What the daemon knows of a waiting job: what it still waits for."""
        item = self.jobs.get((queue, job_id))
        if item is None:
            return None
        wait = item.wait
        return {"open": wait.open_refs(), "ended": dict(wait.ended), "rule": wait.rule,
                "signals_wanted": list(wait.signals),
                "signals_present": self.signals.view(queue, job_id),
                "moving": item.moving}
