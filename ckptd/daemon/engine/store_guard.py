"""Applying the daemon's store operations when the store fails: nothing forgotten, nothing
claimed into a full disk.

Every round's transaction is applied through :meth:`StoreGuard.apply`. An operation that
fails for a store failure that may pass (a full disk, a bucket that does not answer, an I/O
error) is not forgotten: above all the move that records a worker's answer or a lease's end
is kept with its callback and applied again with backoff until it goes through. The lease
stays closing meanwhile, so the job cannot expire into a second run, and ``status`` and
``explain`` show the move waiting and why. Two kinds are not kept: a claim (the job simply
stays pending) and a create (the producer is told it was refused, so nothing was accepted).

On a store whose requests cross a network (:class:`~ckptd.store.background.Background`: a
bucket) a round's group is started and the loop goes on (:meth:`StoreGuard.start`); the
groups that ended come back at a later turn (:meth:`StoreGuard.ended`), and the same rules
apply to their outcomes. Probes of such a store run in the background too.

While the store fails, nothing is claimed: claiming into a full disk only piles up work whose
answers cannot be written. A probe (:meth:`~ckptd.store.base.Store.probe_access`: free space
on a disk, one listing on a bucket), or the retried operations themselves, tell when it is
back; then every waiting operation is tried at once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ckptd.core.answer_types import StoreHealth as StoreHealthView
from ckptd.core.errors import CkptdError, NotLeader, StoreError
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.daemon.engine.index import Callback, Txn
from ckptd.store.background import Background
from ckptd.store.base import Move, Op, Outcome, PutNew, Store

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5  # seconds before a failed op is tried again; doubles up to RETRY_MAX
RETRY_MAX = 10.0
PROBE_FIRST = 0.5


def transient(outcome: Outcome) -> bool:
    """True for a store failure that retrying may cure. Answers (not found, exists,
    malformed) are not store failures; a fenced write is not retried (another daemon leads)."""
    return isinstance(outcome, StoreError)


def kept_when_failing(op: Op) -> bool:
    """True for ops applied again after a store failure (see the module docstring)."""
    if isinstance(op, PutNew):
        return False
    return not (isinstance(op, Move) and op.src is State.PENDING and op.dst is State.CLAIMED)


@dataclass
class Deferred:
    """A store op that failed for a store failure, waiting to be applied again."""

    op: Op
    callback: Callback | None
    due: float
    error: str
    attempts: int = 1
    since: float = 0.0


@dataclass
class StoreHealth:
    """Whether the store answers (and has room), since when it does not, and why."""

    available: bool = True
    since: float | None = None
    error: str | None = None
    error_code: str | None = None  # the error's wire code (a client makes the same class)
    failures: int = 0
    outages: int = 0
    next_probe: float = 0.0
    retried_ops: int = 0

    def failed(self, error: Exception | str, now: float) -> None:
        """Note a failure; the first one of an outage is logged as a warning."""
        self.failures += 1
        self.error = str(error)
        self.error_code = error.code if isinstance(error, CkptdError) else StoreError.code
        if self.available:
            self.available = False
            self.since = now
            self.outages += 1
            self.next_probe = now + PROBE_FIRST
            log.warning("store unavailable: %s; backing off, nothing is claimed until it is "
                        "back (jobs and answers are kept)", error)

    def ok(self, now: float) -> bool:
        """Note a success; return True when it ends an outage (logged)."""
        if self.available:
            return False
        log.info("store available again after %.1fs", now - (self.since or now))
        self.available = True
        self.since = None
        self.error = self.error_code = None
        return True

    def view(self, now: float) -> StoreHealthView:
        """The part of ``status`` about the store."""
        return {"available": self.available,
                "unavailable_since": utc_iso(self.since) if self.since else None,
                "unavailable_s": round(now - self.since, 3) if self.since else None,
                "error": self.error, "error_code": self.error_code,
                "failures": self.failures, "outages": self.outages,
                "retried_ops": self.retried_ops}


class StoreGuard:
    """Applies a daemon's transactions; keeps and retries what a store failure stopped."""

    def __init__(self, store: Store, clock: Callable[[], float],
                 wake: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.clock = clock
        self.health = StoreHealth()
        self.deferred: list[Deferred] = []
        #: The store's requests cross a network: groups and probes run in the background.
        self.background = store if isinstance(store, Background) else None
        self.wake = wake
        if self.background is not None:
            self.background.notify(wake)  # files read ahead have arrived: dispatch them
        self.in_flight = 0  # groups started and not collected yet
        self._ended: deque[tuple[Txn, list[Outcome], float]] = deque()  # from other threads
        self._probe: deque[CkptdError | None] = deque()  # a background probe's answer
        self._probing = False

    def clear(self) -> None:
        """Forget the waiting ops (this daemon stopped leading: the next one redoes them)."""
        self.deferred.clear()

    def forget(self, queue: str) -> None:
        """Forget the waiting ops of one queue (another daemon leads it now and redoes them:
        a worker sends its answer again to the queue's leader)."""
        self.deferred = [d for d in self.deferred if d.op.queue != queue]

    def apply(self, txn: Txn, writable: bool = True) -> list[Outcome]:
        """Apply the round's ops; keep the ones that failed for a store failure.

        With ``writable`` False (this daemon does not lead) nothing is written and every op
        is answered NotLeader.
        """
        ops = txn.ops
        if not writable:
            return [NotLeader("this daemon leads no queue; nothing was written")] \
                * len(ops)
        try:
            outcomes = self.store.apply(ops)
        except Exception as exc:  # a backend bug must not kill the loop; nothing is acked
            log.exception("store apply failed")
            outcomes = [StoreError(f"store failure: {exc}")] * len(ops)
        return self.settle(txn, outcomes)

    def start(self, txn: Txn, writable: bool = True) -> None:
        """Start applying the round's ops in the background (a store that crosses a
        network); :meth:`ended` returns them with their outcomes once the store answered."""
        assert self.background is not None
        started = time.perf_counter()
        self.in_flight += 1
        if not writable:
            self._ended.append((txn, [NotLeader("this daemon leads no queue; nothing was "
                                                "written")] * len(txn.ops), started))
            return

        def then(outcomes: list[Outcome]) -> None:  # in the store's thread
            self._ended.append((txn, outcomes, started))
            self.wake()
        self.background.apply_later(txn.ops, then)

    def ended(self) -> list[tuple[Txn, list[Outcome], float]]:
        """The groups started in the background that ended since the last call, with their
        outcomes (failures kept for a retry, as :meth:`apply` does) and how long each
        took."""
        found = []
        while self._ended:
            txn, outcomes, started = self._ended.popleft()
            self.in_flight -= 1
            found.append((txn, self.settle(txn, outcomes), time.perf_counter() - started))
        return found

    def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the groups in flight to end (a stop)."""
        if self.background is not None and self.in_flight:
            self.background.settle(timeout)

    def settle(self, txn: Txn, outcomes: list[Outcome]) -> list[Outcome]:
        """Look at the outcomes of the round's ops (applied by :meth:`apply`, in the
        background, :meth:`ended`, or in steps by :mod:`~ckptd.daemon.engine.group_commit`):
        keep the ones that failed for a store failure (their
        callbacks run once they went through), note the store's health."""
        ops = txn.ops
        now = self.clock()
        failed: CkptdError | None = None
        for i, outcome in enumerate(outcomes):
            if not transient(outcome):
                continue
            assert outcome is not None
            failed = outcome
            if kept_when_failing(ops[i]):
                self.deferred.append(Deferred(ops[i], txn.callbacks[i], now + RETRY_FIRST,
                                              str(outcome), since=now))
                txn.callbacks[i] = None  # its callback runs once the op went through
        if failed is not None:
            self.health.failed(failed, now)
        elif ops and any(o is None for o in outcomes) and self.health.ok(now):
            self._all_due(now)
        return outcomes

    def requeue(self, now: float, txn: Txn) -> None:
        """Put the waiting ops whose time has come into ``txn`` (this round's)."""
        if not self.deferred:
            return
        due = [d for d in self.deferred if d.due <= now]
        if not due:
            return
        self.deferred = [d for d in self.deferred if d.due > now]
        for item in due:
            self.health.retried_ops += 1
            txn.add(item.op, self._retrying(item))

    def may_claim(self, now: float, txn: Txn) -> bool:
        """Whether jobs may be claimed now: not while the store fails. A failing store is
        probed (unless retried ops in ``txn`` are the probe) with backoff."""
        if self._probe:
            return self._probed(self._probe.popleft(), now)
        if self.health.available:
            return True
        if self.deferred or txn.ops or self.in_flight:
            return False  # the retried ops (or the groups in flight) are the probe
        if now < self.health.next_probe or self._probing:
            return False
        if self.background is not None:  # the loop does not wait for the answer
            self._probing = True

            def then(error: CkptdError | None) -> None:  # in the store's thread
                self._probe.append(error)
                self.wake()
            self.background.probe_later(then)
            return False
        try:
            self.store.probe_access()
        except CkptdError as exc:
            return self._probed(exc, now)
        return self._probed(None, now)

    def _probed(self, error: CkptdError | None, now: float) -> bool:
        self._probing = False
        if error is not None:
            self.health.failed(error, now)
            wait = min(RETRY_MAX, PROBE_FIRST * 2 ** min(self.health.failures, 6))
            self.health.next_probe = now + wait
            return False
        self.health.ok(now)
        return True

    def _all_due(self, now: float) -> None:
        for item in self.deferred:
            item.due = min(item.due, now)

    def _retrying(self, item: Deferred) -> Callback:
        def then(outcome: Outcome) -> None:
            if transient(outcome) and kept_when_failing(item.op):
                item.attempts += 1
                item.error = str(outcome)
                wait = min(RETRY_MAX, RETRY_FIRST * 2 ** (item.attempts - 1))
                item.due = self.clock() + wait
                self.deferred.append(item)  # its callback waits on
                return
            if item.callback is not None:
                item.callback(outcome)
        return then

    def waiting(self, queue: str, job_id: str, now: float) -> dict[str, object] | None:
        """What is known of a waiting op of a job (for ``show`` and ``explain``), or None."""
        for item in self.deferred:
            if item.op.queue == queue and item.op.job_id == job_id:
                what = (f"move to {item.op.dst.value}/" if isinstance(item.op, Move)
                        else type(item.op).__name__)
                return {"op": what, "attempts": item.attempts, "error": item.error,
                        "waiting_s": round(now - item.since, 3),
                        "next_try_s": round(max(0.0, item.due - now), 3)}
        return None

    def view(self, now: float) -> StoreHealthView:
        """The part of ``status`` about the store: health and waiting ops."""
        view = self.health.view(now)
        view["deferred_ops"] = len(self.deferred)
        stats = self.store.request_stats()
        if stats:
            view["requests"] = stats
        return view
