"""Work that waits on work, put together for the engine: waiting jobs
(:mod:`~ckptd.daemon.engine.waits`), parks (:mod:`~ckptd.daemon.engine.parks`), signals
(:mod:`~ckptd.daemon.engine.signal_box`) and batches
(:mod:`~ckptd.daemon.engine.batch_ends`, through the flows).

The engine calls :class:`GraphEvents` at a few points (a submit with parents, a worker's
``park``, recovery, each turn); the control socket calls it for ``signal``, ``batch_open``,
``batch_seal`` and what ``show`` adds. Besides the watcher's events, the queues' ``waiting/``
and ``signals/`` folders are listed now and then (in a thread: every ``poll_interval`` on a
bucket, every ``rescan_interval`` on a local disk), so a file dropped there while an event
was lost is still found.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ckptd.core import waits
from ckptd.core.errors import CkptdError, JobNotFound
from ckptd.core.states import State
from ckptd.daemon.engine.flows import Flows
from ckptd.daemon.engine.index import Index
from ckptd.daemon.engine.parks import Parks
from ckptd.daemon.engine.results import Answers
from ckptd.daemon.engine.waits import Waits
from ckptd.store import is_local
from ckptd.store.base import Delete, Outcome, SignalFile
from ckptd.store.packed_ids import IdRun
from ckptd.wire.control_requests import BatchOpen, BatchSeal, Signal
from ckptd.wire.protocol import Body

log = logging.getLogger(__name__)

Reply = Callable[[Body | CkptdError], None]


class GraphEvents:
    """Waiting jobs, parks, signals and batches of one engine."""

    def __init__(self, index: Index, flows: Flows, answers: Answers) -> None:
        self.ix = index
        self.flows = flows
        self.tracker = flows.tracker
        self.waits = Waits(index, ended=flows.ended, failing=flows.failing)
        flows.listeners.append(self.waits.ended)
        self.parks = Parks(index, answers, self.waits)
        self.signals = self.waits.signals
        self._scan_at = 0.0
        self._scanned: deque[dict[str, tuple[list[str], list[SignalFile]]]] = deque()
        self._thread: threading.Thread | None = None
        self._unsettled = False  # recovered, but the batches not looked at yet
        self.tracker.holding = self.recovering

    # -- the engine's calls ----------------------------------------------------------------

    def parents(self, queue: str, body: Body) -> list[str]:
        """The checked parents of a submit (``after``); raise JobNotFound for one that does
        not exist, InvalidName for a bad reference or rule."""
        refs = waits.check_refs(body["after"], queue)
        waits.check_rule(body.get("on_parent_failure"))
        for parent in refs:
            parent_queue, parent_id = parent.split("/", 1)
            if self.ix.where(parent_queue, parent_id) is None:
                raise waits.no_parent(parent)
        return refs

    # -- recovery (the steps of engine/indexing.py) -----------------------------------------

    def begin(self, queue: str, now: float) -> None:
        """A queue's recovery begins: its batches, and its waiting jobs (and signals) from a
        listing of ``waiting/``. No callback is made until every queue is recovered."""
        others = any(name != queue and index.recovering is None
                     for name, index in self.ix.queues.items())
        # A queue taken over while others run: count its batches' jobs everywhere now.
        self.tracker.load(queue, now, count=others, keep=not others)
        self._unsettled = True
        self.waits.recover(queue, self.ix.store.ids(queue, State.WAITING), now)

    def listed_pending(self, queue: str, runs: list[IdRun]) -> None:
        """Pending ids a recovery listed: those of batches are open (packed ids are
        generated, never a batch's)."""
        if self.tracker.batches:
            self.tracker.count_listing(queue, {State.PENDING: [
                i for run in runs if not run.packed for i in run if "." in i]})

    def listed_ended(self, queue: str, now: float) -> None:
        """A queue's recovery ended (its ended jobs were counted): its claimed and waiting
        jobs of batches are open."""
        index = self.ix.queues.get(queue)
        if index is not None and self.tracker.batches:
            self.tracker.count_listing(queue, {State.CLAIMED: list(index.claimed),
                                               State.WAITING: list(index.waiting)})

    def recovering(self) -> bool:
        """Whether a queue is still being recovered (batches wait for their counts)."""
        return any(index.recovering is not None for index in self.ix.queues.values())

    def settle(self, now: float) -> None:
        """After recovery: batches that completed while no daemon was watching."""
        self._unsettled = False
        self.tracker.settle(now)

    def drop(self, queue: str) -> None:
        """Forget one queue (another daemon leads it now)."""
        self.waits.drop(queue)

    def clear(self) -> None:
        """Forget everything (the daemon stopped leading)."""
        self.waits.clear()

    def tick(self, now: float) -> None:
        """Each turn: timers, polls and listings that are due."""
        self.waits.tick(now)
        if self._unsettled and not self.recovering():
            self.settle(now)
        self.tracker.tick(now)
        while self._scanned:
            self._reconcile(self._scanned.popleft(), now)
        if now >= self._scan_at:
            settings = self.ix.settings
            local = is_local(self.ix.store.url)
            self._scan_at = now + (settings.rescan_interval if local else settings.poll_interval)
            self._scan()

    def list_soon(self) -> None:
        """List the queues' waiting/ and signals/ at the next turn (a queue appeared: what
        was put there before its watch began has no event)."""
        self._scan_at = 0.0

    def next_due(self) -> float | None:
        """When the next timer or poll is due."""
        due = self.waits.next_due()
        return self._scan_at if due is None else min(due, self._scan_at)

    # -- files that appear -----------------------------------------------------------------

    def file_event(self, kind: str, queue: str, name: str, now: float) -> None:
        """What the watcher saw: a file that appeared in ``waiting/`` (``waiting``), or left
        it (``unwaiting``), or a signal file (``signal``)."""
        if kind == "waiting":
            self.waits.appeared(queue, name, now)
        elif kind == "unwaiting":
            self._waiting_vanished(queue, name, now)
        elif kind == "signal":
            self._signal_file(queue, name, now)

    def _waiting_vanished(self, queue: str, job_id: str, now: float) -> None:
        """The watcher saw a file leave ``waiting/``: the daemon's own move, or an
        operator's ``rm`` (a cancel) or ``mv`` (pending/ sees it come)."""
        item = self.waits.jobs.get((queue, job_id))
        if item is None or item.moving:
            return
        try:
            found = self.ix.store.find(queue, job_id)
        except CkptdError:
            return
        if State.WAITING not in found:
            self.waits.forget(queue, job_id)
            if not found:  # removed by hand: an end for whoever waits on it
                self.flows.removed(queue, job_id, now)

    def _signal_file(self, queue: str, name: str, now: float) -> None:
        parsed = waits.parse_signal_file(name)
        if parsed is not None:
            self.signals.seen(queue, parsed[0], parsed[1], now, now)

    def _scan(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        queues = [q for q in self.ix.queues if self.ix.leads(q)]
        store = self.ix.store

        def look() -> None:
            found: dict[str, tuple[list[str], list[SignalFile]]] = {}
            for queue in queues:
                try:
                    found[queue] = (store.ids(queue, State.WAITING), store.signals(queue))
                except CkptdError as exc:
                    log.debug("cannot list waiting/ and signals/ of %s: %s", queue, exc)
            self._scanned.append(found)

        self._thread = threading.Thread(target=look, name="ckptd-waiting", daemon=True)
        self._thread.start()

    def _reconcile(self, found: dict[str, tuple[list[str], list[SignalFile]]],
                   now: float) -> None:
        for queue, (waiting, signal_files) in found.items():
            if not self.ix.leads(queue):
                continue
            for job_id in waiting:
                if (queue, job_id) not in self.waits.jobs:
                    self.waits.appeared(queue, job_id, now)
            for item in signal_files:
                self.signals.seen(queue, item.job_id, item.name, item.mtime, now)

    # -- requests --------------------------------------------------------------------------

    def request(self, body: Signal | BatchOpen | BatchSeal, now: float, reply: Reply) -> None:
        """``signal`` (write a signal for a job, and wake it if it waits for it),
        ``batch_open`` and ``batch_seal``."""
        if isinstance(body, Signal):
            self.signals.send(body.queue, body.id, body.name, body.data, now, reply)
        elif isinstance(body, BatchOpen):
            self.tracker.open_batch(body, now, reply)
        else:
            self.tracker.seal(body.queue, body.batch, now, reply)

    def cancel(self, op: Delete, now: float, reply: Reply) -> bool:
        """Cancel a waiting job by its planned removal ``op``
        (:func:`ckptd.store.plans.plan_cancel`); False when it is not waiting here."""
        queue, job_id = op.queue, op.job_id
        if not self.waits.cancelling(queue, job_id):
            return False

        def removed(outcome: Outcome) -> None:
            if outcome is not None and not isinstance(outcome, JobNotFound):
                item = self.waits.jobs.get((queue, job_id))
                if item is not None:
                    item.moving = False
                reply(outcome)
                return
            log.info("cancel", extra={"fields": {"queue": queue, "id": job_id,
                                                 "from": "waiting", "to": "removed"}})
            self.waits.forget(queue, job_id)
            self.flows.removed(queue, job_id, now)
            reply({"was": "waiting"})

        self.ix.txn.add(op, removed)
        return True

    def view(self, queue: str, job_id: str) -> dict[str, Any] | None:
        """What the daemon knows of a waiting job, for ``show`` and ``explain``."""
        return self.waits.view(queue, job_id)
