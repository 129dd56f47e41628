"""What the store commands answer, and the one interface both ways of running them share
(the shapes of the answers: :mod:`ckptd.core.answer_types`).

The CLI carries out store commands either on the store itself (``--root``:
:class:`ckptd.store.admin.StoreAdmin`) or through a daemon (``--connect``:
:class:`ckptd.client.remote_admin.RemoteAdmin`); both follow :class:`Admin` and give the
same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from ckptd.core.answer_types import (
    GraphNode,
    LimitAnswer,
    LogsAnswer,
    PauseAnswer,
    ResumeAnswer,
    ShowAnswer,
    SignalAnswer,
    StatusAnswer,
)
from ckptd.core.states import State


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the job's id, and whether this call created it."""

    id: str
    created: bool = True
    state: str = State.PENDING.value
    debounced: bool = False  # it replaced the payload of a pending job (debounce)


@dataclass(frozen=True)
class SubmittedFile:
    """The answer to submit-file: the batch, its jobs and records, and what was new."""

    batch: str
    jobs: int
    records: int
    created: int
    format: str



class LimitChanges(TypedDict, total=False):
    """Limits to set in a queue's ``limits.json`` (or, for a key, ``key_limits.json``); a
    None value removes one, so the config's applies again."""

    max_running: int | None
    rate: str | None  # as people write it: 100/s, 5000/h, 3/2s
    weight: int | None  # a key's turns per round of the fair share (keys only)


class Admin(Protocol):
    """The store commands, on a store or through a daemon."""

    def submit(self, queue: str, payload: Any, *, job_id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               if_exists: str = "error", batch: str | None = None,
               time_limit: float | None = None, priority: int | None = None,
               after: list[str] | None = None, on_parent_failure: str | None = None,
               key: str | None = None) -> Submitted:
        """Create a job; see :meth:`ckptd.store.admin.StoreAdmin.submit`."""

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    key: str | None = None) -> SubmittedFile:
        """Submit a file as a batch of jobs."""

    def status(self, queue: str | None = None) -> StatusAnswer:
        """Counts per state, per queue."""

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """(state, id) of the queue's jobs."""

    def show(self, queue: str, job_id: str) -> ShowAnswer:
        """A job's state, file and checkpoint."""

    def job_logs(self, queue: str, job_id: str, since: dict[int, int] | None = None
                 ) -> LogsAnswer:
        """A job's own logs after ``since`` (attempt -> byte), and its state."""

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """Move failed jobs back to pending; return their ids."""

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """Cancel a job; return the state it was in."""

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """Remove done or failed jobs; return how many."""

    def pause(self, queue: str, reason: str = "") -> PauseAnswer:
        """Pause a queue (its ``paused`` file)."""

    def resume(self, queue: str) -> ResumeAnswer:
        """Resume a queue."""

    def limit(self, queue: str, changes: LimitChanges, reset: bool = False,
              key: str | None = None) -> LimitAnswer:
        """Change a queue's ``limits.json`` (with ``key``: ``key_limits.json``)."""

    def move(self, queue: str, job_id: str, to: str, by: str | None = None) -> str:
        """Move a pending or failed job to queue ``to``; return the state it was in."""

    def signal(self, queue: str, job_id: str, name: str, data: Any = None) -> SignalAnswer:
        """Send a signal to a job (``<queue>/signals/<id>.<name>.json``)."""

    def graph(self, queue: str, job_id: str, depth: int | None = None) -> GraphNode:
        """A job's parents, children, dependents and batch, with their states."""
