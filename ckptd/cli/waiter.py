"""``ckptd wait``: wait for jobs to end, with a progress bar and an exit code that tells.

Exit code 0 when every job waited for is done, 8 when some failed or the wait timed out.
Through a daemon the waiting happens there (``wait`` requests of a second each, so the bar
moves); on a bare store the folders are looked at twice a second.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from ckptd.client.client import Client
from ckptd.client.remote_admin import RemoteAdmin
from ckptd.core.answers import Admin
from ckptd.core.errors import JobNotFound
from ckptd.core.states import State
from ckptd.core.timefmt import format_duration
from ckptd.store import Store
from ckptd.store.admin import StoreAdmin

EXIT_OK = 0
EXIT_FAILED = 8
ROUND = 1.0  # seconds per wait request to the daemon
POLL = 0.5  # seconds between looks at a bare store
BAR_WIDTH = 30


@dataclass
class Outcome:
    """How a wait ended."""

    total: int
    done: int = 0
    failed: int = 0
    open: int = 0
    timed_out: bool = False
    failed_ids: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when everything waited for is done, else 8."""
        return EXIT_OK if not self.timed_out and self.failed == 0 and self.open == 0 \
            else EXIT_FAILED

    def summary(self) -> str:
        """One line for the end of the wait."""
        text = f"{self.total} job(s): {self.done} done, {self.failed} failed"
        if self.open:
            text += f", {self.open} still open"
        if self.timed_out:
            text += " (timed out)"
        return text


class Progress:
    """A one-line progress bar on a terminal (done/total, rate, ETA); silent otherwise."""

    def __init__(self, stream: TextIO | None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._drawn = False

    def draw(self, ended: int, total: int) -> None:
        """Redraw the bar."""
        if not self.enabled:
            return
        self.stream.write("\r" + progress_line(ended, total, time.monotonic() - self.started))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_line(ended: int, total: int, elapsed: float) -> str:
    """``[########......]  412/1000  41%  35.2/s  ETA 17s``."""
    fraction = ended / total if total else 1.0
    filled = int(BAR_WIDTH * fraction)
    rate = ended / elapsed if elapsed > 0 else 0.0
    eta = format_duration((total - ended) / rate) if rate > 0 and ended < total else "-"
    return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]  {ended}/{total}  "
            f"{fraction * 100:3.0f}%  {rate:.1f}/s  ETA {eta}   ")


def wait_jobs(admin: Admin, queue: str, ids: list[str] | None, timeout: float | None,
              progress: Progress) -> Outcome:
    """Wait for ``ids`` (or, with None, every open job of ``queue``) to end.

    ``admin`` is the CLI's: a RemoteAdmin (through the daemon) or a StoreAdmin (the store).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if isinstance(admin, RemoteAdmin):
            client = admin.client
            return (_daemon_ids(client, queue, ids, deadline, progress) if ids is not None
                    else _daemon_all(client, queue, deadline, progress))
        assert isinstance(admin, StoreAdmin)
        return (_store_ids(admin.store, queue, ids, deadline, progress) if ids is not None
                else _store_all(admin.store, queue, deadline, progress))
    finally:
        progress.finish()


def _left(deadline: float | None) -> float:
    return ROUND if deadline is None else max(0.0, min(ROUND, deadline - time.monotonic()))


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _daemon_ids(client: Client, queue: str, ids: list[str], deadline: float | None,
                progress: Progress) -> Outcome:
    open_ids = list(dict.fromkeys(ids))
    total = len(open_ids)
    timed_out = False
    while open_ids:
        chunk = _left(deadline)
        answer = client.request("wait", {"queue": queue, "ids": open_ids, "timeout": chunk},
                                timeout=chunk + client.timeout, repeatable=True,
                                resend_after=chunk + 2.0)
        open_ids = list(answer.get("open") or []) if answer.get("timed_out") else []
        progress.draw(total - len(open_ids), total)
        if open_ids and _expired(deadline):
            timed_out = True
            break
    unique = list(dict.fromkeys(ids))
    outcome = Outcome(total, open=len(open_ids), timed_out=timed_out)
    still = set(open_ids)
    ended = [i for i in unique if i not in still]
    if ended:  # one more look, with nothing left to wait for, says how each one ended
        answer = client.request("wait", {"queue": queue, "ids": ended, "timeout": 0},
                                timeout=client.timeout + 60)
        for job_id, state in (answer.get("states") or {}).items():
            _count(outcome, job_id, state)
    return outcome


def _daemon_all(client: Client, queue: str, deadline: float | None, progress: Progress
                ) -> Outcome:
    first = client.status(queue)["queues"].get(queue)
    if first is None:
        raise JobNotFound(f"no queue {queue!r}")
    done0, failed0 = int(first.get("done", 0)), int(first.get("failed", 0))
    while True:
        chunk = _left(deadline)
        answer = client.request("wait", {"queue": queue, "ids": None, "timeout": chunk},
                                timeout=chunk + client.timeout, repeatable=True,
                                resend_after=chunk + 2.0)
        counts = answer.get("counts") or {}
        done = max(0, int(counts.get("done", 0)) - done0)
        failed = max(0, int(counts.get("failed", 0)) - failed0)
        still = int(answer.get("open") or 0)
        progress.draw(done + failed, done + failed + still)
        if not answer.get("timed_out"):
            return Outcome(done + failed + still, done, failed, still)
        if _expired(deadline):
            return Outcome(done + failed + still, done, failed, still, timed_out=True)


def _count(outcome: Outcome, job_id: str, state: str | None) -> None:
    if state == State.DONE.value:
        outcome.done += 1
    elif state == State.FAILED.value:
        outcome.failed += 1
        outcome.failed_ids.append(job_id)
    elif state is None:
        raise JobNotFound(f"job {job_id!r} is gone from the store (purged?)")
    else:
        outcome.open += 1


def _state_of(store: Store, queue: str, job_id: str) -> str | None:
    states = store.find(queue, job_id)
    return states[-1].value if states else None


def _store_ids(store: Store, queue: str, ids: list[str], deadline: float | None,
               progress: Progress) -> Outcome:
    unique = list(dict.fromkeys(ids))
    ended: dict[str, str] = {}
    for job_id in unique:
        if _state_of(store, queue, job_id) is None:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
    open_ids = unique
    while True:
        still = []
        for job_id in open_ids:
            state = _state_of(store, queue, job_id)
            if state in (State.DONE.value, State.FAILED.value):
                ended[job_id] = state
            else:
                still.append(job_id)
        open_ids = still
        progress.draw(len(ended), len(unique))
        if not open_ids or _expired(deadline):
            break
        time.sleep(POLL)
    outcome = Outcome(len(unique), open=len(open_ids), timed_out=bool(open_ids))
    for job_id, state in ended.items():
        _count(outcome, job_id, state)
    return outcome


def _store_all(store: Store, queue: str, deadline: float | None, progress: Progress) -> Outcome:
    if queue not in store.queues():
        raise JobNotFound(f"no queue {queue!r} under {store.url}")
    done0, failed0 = store.count(queue, State.DONE), store.count(queue, State.FAILED)
    while True:
        still = store.count(queue, State.PENDING) + store.count(queue, State.CLAIMED)
        done = max(0, store.count(queue, State.DONE) - done0)
        failed = max(0, store.count(queue, State.FAILED) - failed0)
        progress.draw(done + failed, done + failed + still)
        if still == 0 or _expired(deadline):
            return Outcome(done + failed + still, done, failed, still, timed_out=still > 0)
        time.sleep(POLL)
