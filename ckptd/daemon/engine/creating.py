"""Creates in flight: a submit of an id whose create is not answered yet waits for it.

A client that hears nothing within half a second sends its submit again, with the same ids.
On a bucket the first create may still be in flight then (its group runs while the loop goes
on), so "the id is pending" would be said before the store said it is durable: if that create
then failed, the producer would hold an id of a job that does not exist. A second submit of
an id being created therefore joins the first and is answered with its outcome: created
(then "it exists, pending"), exists elsewhere, or the error.
"""

from __future__ import annotations

from collections.abc import Callable

from ckptd.core.errors import CkptdError, JobExists
from ckptd.store.base import Outcome
from ckptd.wire.protocol import Body

Reply = Callable[[Body | CkptdError], None]


class Creating:
    """The ids whose create is in flight, and the submits that wait for each."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], list[Callable[[Outcome], None]]] = {}

    def begin(self, queue: str, job_id: str) -> None:
        """A create of ``job_id`` is queued."""
        self._waiting.setdefault((queue, job_id), [])

    def join(self, queue: str, job_id: str, if_exists: str, reply: Reply) -> bool:
        """When ``job_id`` is being created, answer ``reply`` once that create is answered
        (as a submit of an id that exists, per ``if_exists``) and return True."""
        waiters = self._waiting.get((queue, job_id))
        if waiters is None:
            return False

        def then(outcome: Outcome) -> None:
            if outcome is not None and not isinstance(outcome, JobExists):
                reply(outcome)  # nothing was made: the producer hears why
                return
            state = (outcome.state if isinstance(outcome, JobExists) else None) or "pending"
            reply({"id": job_id, "created": False, "state": state} if if_exists == "return"
                  else JobExists(queue, job_id, state))
        waiters.append(then)
        return True

    def end(self, queue: str, job_id: str, outcome: Outcome) -> None:
        """The create of ``job_id`` was answered: answer the submits that joined it."""
        for then in self._waiting.pop((queue, job_id), []):
            then(outcome)

    def clear(self) -> None:
        """Forget everything (the index was dropped)."""
        self._waiting.clear()
