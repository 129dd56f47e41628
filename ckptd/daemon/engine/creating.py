"""Creates in flight, and just answered: a resent submit is answered as the first one was.

A client that hears nothing within half a second sends its submit again, with the same ids
(then after 1 s, and every 2 s). On a bucket the first create may still be in flight then
(its group runs while the loop goes on), so "the id is pending" would be said before the
store said it is durable: if that create then failed, the producer would hold an id of a job
that does not exist. A second submit of an id being created therefore joins the first and is
answered with its outcome: created (then "it exists, pending"), exists elsewhere, or the
error.

A create of an id that has ended (done/ or failed/) costs a bucket five requests: the
create-only PUT, a look in each other folder, and the delete of the copy it just made. A
resent ``submit_many`` of a thousand ended jobs, each resend redoing all of that, took
longer than the client waits between two sends: every answer went to a connection the client
had left, and the work grew with each resend (no answer ever, issue 21). So the outcome of
such a create (the folder it found the job in) is kept :data:`KEPT_S` seconds, and a submit
of the same id in that time is answered from it without a request. A job that has ended stays
where it is, unless an operator moves it: within that window a resend is told what the first
send was told.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ckptd.core.errors import CkptdError, JobExists
from ckptd.core.states import State
from ckptd.store.base import Outcome
from ckptd.wire.protocol import Body

Reply = Callable[[Body | CkptdError], None]

KEPT_S = 30.0  # seconds the ended state a create found is used to answer a resend
KEPT = 200_000  # such states kept at most (the oldest go first)
_ENDED = frozenset({State.DONE.value, State.FAILED.value})


def answer(queue: str, job_id: str, if_exists: str, state: str) -> Body | CkptdError:
    """What a submit of ``job_id``, found in ``state``, is answered (per ``if_exists``)."""
    return ({"id": job_id, "created": False, "state": state} if if_exists == "return"
            else JobExists(queue, job_id, state))


class Creating:
    """The ids whose create is in flight, the submits that wait for each, and the ended
    states that creates found lately."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._waiting: dict[tuple[str, str], list[Callable[[Outcome], None]]] = {}
        self._ended: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._clock = clock

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Whether the create of ``(queue, id)`` is in flight."""
        return key in self._waiting

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
            reply(answer(queue, job_id, if_exists, state))
        waiters.append(then)
        return True

    def end(self, queue: str, job_id: str, outcome: Outcome) -> None:
        """The create of ``job_id`` was answered: answer the submits that joined it; keep
        the state it found when the job had ended."""
        key = (queue, job_id)
        if isinstance(outcome, JobExists) and outcome.state in _ENDED:
            self._ended.pop(key, None)
            self._ended[key] = (self._clock(), outcome.state)
            if len(self._ended) > KEPT:
                self._ended.popitem(last=False)
        for then in self._waiting.pop(key, []):
            then(outcome)

    def found_ended(self, queue: str, job_id: str) -> str | None:
        """The folder (done or failed) a create of ``job_id`` found it in, within the last
        :data:`KEPT_S` seconds; else None. (A job open in the index is answered from there
        first: an operator's retry makes it pending again.)"""
        key = (queue, job_id)
        ended = self._ended.get(key)
        if ended is None:
            return None
        if self._clock() - ended[0] > KEPT_S:
            del self._ended[key]
            return None
        return ended[1]

    def forget(self, queue: str, job_id: str) -> None:
        """The job left the folder a create found it in (purged, or moved to another
        queue): a submit of its id creates it again."""
        self._ended.pop((queue, job_id), None)

    def clear(self) -> None:
        """Forget everything (the index was dropped)."""
        self._waiting.clear()
        self._ended.clear()
