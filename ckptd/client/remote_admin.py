"""The CLI's store commands carried out through a daemon (``--connect``): the same
answers as :class:`ckptd.store.admin.StoreAdmin` gives on the store
(:class:`ckptd.core.answers.Admin`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ckptd.client.answer_shapes import answer_as
from ckptd.client.client import Client
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
from ckptd.core.answers import LimitChanges, Submitted, SubmittedFile
from ckptd.core.edits import who_am_i
from ckptd.core.states import State


class RemoteAdmin:
    """The CLI's store commands, carried out through a daemon (``--connect``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, queue: str, payload: Any, *, job_id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               if_exists: str = "error", batch: str | None = None,
               time_limit: float | None = None, priority: int | None = None,
               after: list[str] | None = None, on_parent_failure: str | None = None,
               key: str | None = None) -> Submitted:
        """See :meth:`ckptd.store.admin.StoreAdmin.submit`."""
        return self.client.submit_job(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                      delay=delay, if_exists=if_exists, batch=batch,
                                      time_limit=time_limit, priority=priority, key=key,
                                      after=after, on_parent_failure=on_parent_failure)

    def signal(self, queue: str, job_id: str, name: str, data: Any = None) -> SignalAnswer:
        """See :meth:`Client.signal`."""
        return self.client.signal(queue, job_id, name, data)

    def graph(self, queue: str, job_id: str, depth: int | None = None) -> GraphNode:
        """See :meth:`Client.graph`."""
        return self.client.graph(queue, job_id, depth)

    def pause(self, queue: str, reason: str = "") -> PauseAnswer:
        """See :meth:`Client.pause`."""
        return self.client.pause(queue, reason)

    def resume(self, queue: str) -> ResumeAnswer:
        """See :meth:`Client.resume`."""
        return self.client.resume(queue)

    def limit(self, queue: str, changes: LimitChanges, reset: bool = False,
              key: str | None = None) -> LimitAnswer:
        """See :meth:`Client.limit`."""
        return self.client.limit(queue, changes, reset, key)

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    key: str | None = None) -> SubmittedFile:
        """See :meth:`Client.submit_file`."""
        return self.client.submit_file(queue, data, fmt=fmt, chunk=chunk, batch=batch,
                                       then=then, max_attempts=max_attempts,
                                       source_name=source_name, progress=progress, key=key)

    def status(self, queue: str | None = None) -> StatusAnswer:
        """See :meth:`Client.status`."""
        return self.client.status(queue)

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """See :meth:`Client.ls`."""
        return self.client.ls(queue, state)

    def show(self, queue: str, job_id: str) -> ShowAnswer:
        """See :meth:`Client.show`."""
        return self.client.show(queue, job_id)

    def job_logs(self, queue: str, job_id: str, since: dict[int, int] | None = None
                 ) -> LogsAnswer:
        """See :meth:`ckptd.store.admin.StoreAdmin.job_logs`."""
        return answer_as(self.client.request("logs", {"queue": queue, "id": job_id, "since": {
            str(k): v for k, v in (since or {}).items()}}), LogsAnswer)

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """See :meth:`Client.retry`."""
        return self.client.retry(queue, job_ids, attempts=attempts)

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """See :meth:`Client.cancel`."""
        return self.client.cancel(queue, job_id, by or who_am_i("--connect"))

    def move(self, queue: str, job_id: str, to: str, by: str | None = None) -> str:
        """See :meth:`Client.move`."""
        return self.client.move(queue, job_id, to, by or who_am_i("--connect"))

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """See :meth:`Client.purge`."""
        return self.client.purge(queue, state, older_than)
