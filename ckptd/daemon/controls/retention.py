"""Retention: finished jobs older than the queue keeps them are removed (or archived).

Every ``retention_interval`` a sweep runs on a thread of its own, which only lists, deletes
and moves files: for each queue whose retention is on (``keep_done``, ``keep_failed``,
``keep_last``; by default done jobs are kept 7 days and failed ones 30), it lists ``done/``
and ``failed/`` with the time each file last changed (when the job ended), and removes each
job that is older than its state keeps, or beyond the newest ``keep_last`` (its file, its
checkpoint, its blobs and its own logs), or with ``archive`` moves it (and its logs) under
``archive/<DATE>/``, DATE being
the day it ended (UTC). It works in groups of :data:`GROUP` jobs with a pause between
them as long as the group held the interpreter (its CPU time, at least :data:`PAUSE`), so
the daemon's loop (which dispatches) keeps the interpreter most of the time; time spent
waiting on the disk is not paused for again (on a slow disk that doubled a sweep). The loop
only folds the sweep's counts into the index at its next turn. ``status`` shows how long
the last sweep took and the seconds all sweeps took.

Only finished jobs are touched, which the loop never moves again, except an operator's retry
of a failed job; such a retry that races the sweep finds the job gone and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ckptd.core.answer_types import RetentionView
from ckptd.core.config import LiveSettings
from ckptd.core.errors import CkptdError
from ckptd.core.queue_controls import Retention, retention_of
from ckptd.core.states import State
from ckptd.core.timefmt import utc_iso
from ckptd.store.base import Store
from ckptd.store.job_logs import JobLogs, job_logs

log = logging.getLogger(__name__)

GROUP = 200  # jobs removed per store call
PAUSE = 0.002  # seconds between two groups: the loop gets the interpreter


@dataclass
class Swept:
    """What one sweep did to one queue and state."""

    queue: str
    state: State
    removed: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)


def due_for_removal(finished: list[tuple[str, float]], keep: float, keep_last: int | None,
                    now: float) -> list[tuple[str, float]]:
    """The jobs (id, ended) a state's retention removes, from its listing (oldest first)."""
    doomed = [pair for pair in finished if keep and now - pair[1] > keep]
    if keep_last is not None and len(finished) > keep_last:
        beyond = finished[:len(finished) - keep_last]
        if doomed:
            seen = {job_id for job_id, _ in doomed}
            doomed += [pair for pair in beyond if pair[0] not in seen]
        else:
            doomed = list(beyond)
    return doomed


class Sweeper:
    """Runs the retention sweeps of one daemon (see the module docstring)."""

    def __init__(self, store: Store, live: LiveSettings, *, wake: Callable[[], None],
                 may_write: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.live = live
        self.wake = wake
        self.may_write = may_write  # False once this daemon stopped leading (a bucket)
        self.results: deque[Swept] = deque()
        self.totals: dict[tuple[str, str, str], int] = {}  # (queue, state, action) -> count
        self.last_sweep: dict[str, float] = {}
        self.last_took = 0.0  # seconds the last complete sweep took
        self.busy = 0.0  # seconds all sweeps took, since the daemon started
        self.next_at = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        try:
            self.logs: JobLogs | None = job_logs(store)  # removed (or archived) with the jobs
        except CkptdError:
            self.logs = None

    def close(self) -> None:
        """Stop a sweep in progress (it ends after its group). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stop.clear()

    def due(self, now: float, queues: list[str]) -> None:
        """Start a sweep when its time has come and none is running."""
        if now < self.next_at or (self._thread is not None and self._thread.is_alive()):
            return
        self.next_at = now + max(0.1, self.live.current.retention_interval)
        settings = self.live.current
        work = [(q, retention_of(settings, q)) for q in queues]
        work = [(q, r) for q, r in work if r.active]
        if not work:
            return
        self._thread = threading.Thread(target=self._sweep, args=(work, now),
                                        name="ckptd-retention", daemon=True)
        self._thread.start()

    def _sweep(self, work: list[tuple[str, Retention]], now: float) -> None:
        began = time.monotonic()
        try:
            self._sweep_queues(work, now)
        finally:
            self.last_took = time.monotonic() - began
            self.busy += self.last_took

    def _sweep_queues(self, work: list[tuple[str, Retention]], now: float) -> None:
        for queue, retention in work:
            for state, keep in ((State.DONE, retention.keep_done),
                                (State.FAILED, retention.keep_failed)):
                if self._stop.is_set() or not self.may_write():
                    return
                if not keep and retention.keep_last is None:
                    continue
                try:
                    self._one(queue, state, keep, retention, now)
                except CkptdError as exc:
                    log.warning("retention of %s/%s stopped (trying again at the next "
                                "sweep): %s", queue, state.value, exc)
            self.last_sweep[queue] = now
        self.wake()

    def _one(self, queue: str, state: State, keep: float, retention: Retention, now: float
             ) -> None:
        cutoff = now - keep if keep and retention.keep_last is None else None
        finished = self.store.finished(queue, state, cutoff)
        doomed = due_for_removal(finished, keep, retention.keep_last, now)
        for start in range(0, len(doomed), GROUP):
            if self._stop.is_set() or not self.may_write():
                return
            group = doomed[start:start + GROUP]
            began = time.thread_time()
            swept = Swept(queue, state)
            if retention.archive:
                for job_id, ended in group:
                    folder = time.strftime("%Y-%m-%d", time.gmtime(ended))
                    if self.store.archive(queue, state, job_id, folder):
                        swept.archived.append(job_id)
                        if self.logs is not None:  # the job's own logs go with it
                            self.logs.archive(queue, job_id, folder)
            else:
                swept.removed = self.store.remove_finished(queue, state,
                                                           [job_id for job_id, _ in group])
                if self.logs is not None:
                    self.logs.remove(queue, swept.removed)
            self.results.append(swept)
            self.wake()
            # As long as the group held the interpreter (at least PAUSE): the loop gets
            # half of it at least, however large the backlog.
            time.sleep(max(PAUSE, time.thread_time() - began))

    def take_results(self) -> list[Swept]:
        """What the sweep did since the last call (the loop folds it into the index)."""
        out = []
        while self.results:
            swept = self.results.popleft()
            for action, ids in (("removed", swept.removed), ("archived", swept.archived)):
                if ids:
                    key = (swept.queue, swept.state.value, action)
                    self.totals[key] = self.totals.get(key, 0) + len(ids)
                    log.info("retention %s %d %s job(s)", action, len(ids), swept.state.value,
                             extra={"fields": {"queue": swept.queue}})
            out.append(swept)
        return out

    def view(self, queue: str) -> RetentionView:
        """What status shows of a queue's retention: the rule and what it did."""
        view: RetentionView = {**retention_of(self.live.current, queue).as_dict()}
        totals = self.totals
        view["removed_done"] = totals.get((queue, "done", "removed"), 0)
        view["archived_done"] = totals.get((queue, "done", "archived"), 0)
        view["removed_failed"] = totals.get((queue, "failed", "removed"), 0)
        view["archived_failed"] = totals.get((queue, "failed", "archived"), 0)
        swept = self.last_sweep.get(queue)
        view["last_sweep"] = utc_iso(swept) if swept is not None else None
        view["interval_s"] = self.live.current.retention_interval
        view["last_sweep_s"] = round(self.last_took, 3)
        view["sweeping_s"] = round(self.busy, 3)
        return view
