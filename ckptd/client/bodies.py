"""What a client's requests carry and what their answers mean: built once, for the blocking
:class:`~ckptd.client.client.Client` and the :class:`~ckptd.client.async_client.AsyncClient`
alike (each only adds its way of waiting)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ckptd.client.conversation import RESEND_MAX, Ask
from ckptd.client.preparing import Preparer
from ckptd.core.answers import Submitted
from ckptd.core.errors import CkptdError, DaemonUnavailable, SubmitUnconfirmed, WaitTimeout
from ckptd.core.ids import new_id
from ckptd.core.job_keys import check_key
from ckptd.core.jobs import check_delay, check_time_limit
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.queue_controls import check_priority
from ckptd.core.states import State
from ckptd.core.waits import check_signal
from ckptd.wire.protocol import Body

WAIT_CHUNK = 30.0  # seconds one ``wait`` request is parked in the daemon at most


@dataclass(frozen=True)
class SubmitRequest:
    """One submit: its request body, and whether the client chose the id (``generated``)."""

    queue: str
    body: Body
    generated: bool

    @property
    def id(self) -> str:
        """The job's id, as sent."""
        return str(self.body["id"])

    def ask(self, timeout: float) -> Ask:
        """The request as a conversation sends it: again, after a silence, only when a
        second send cannot fail where the first succeeded."""
        return Ask("submit", self.body, timeout, again={**self.body, "fresh": False},
                   repeatable=self.body["if_exists"] == "return")

    @property
    def meta(self) -> dict[str, Any] | None:
        """What the client's hooks and tracing add to the job (:mod:`ckptd.client.hooks`)."""
        meta: dict[str, Any] | None = self.body.get("meta")
        return meta

    def may_go_direct(self) -> bool:
        """Whether a client on the daemon's host may write this job into the store itself:
        a job of a batch, one to run later, with a priority, a key or parents goes through
        the daemon, which then counts the batch's figures and the delayed jobs, orders it,
        and knows what it waits for, at once."""
        body = self.body
        return body.get("batch") is None and not body.get("delay") \
            and not body.get("priority") and body.get("key") is None and not body.get("after")


class BatchJobOptions(TypedDict, total=False):
    """The options of a job of a batch (see :meth:`ckptd.client.batches.Batch.submit`):
    a submit's but those the batch sets (its id, batch; ``key`` there names the job)."""

    max_attempts: int | None
    delay: float | None
    time_limit: float | None
    priority: int | None
    after: list[str] | None
    on_parent_failure: str | None


class SubmitOptions(BatchJobOptions, total=False):
    """The options of a submit (see :meth:`ckptd.client.client.Client.submit`)."""

    batch: str | None
    key: str | None
    if_exists: str


class JobOptions(SubmitOptions, total=False):
    """The options of :meth:`ckptd.client.client.Client.submit_job`: a submit's, and the
    job's own id."""

    job_id: str | None


def submit_request(queue: str, payload: Any = None, *, job_id: str | None = None,
                   max_attempts: int | None = None, delay: float | None = None,
                   if_exists: str = "error", batch: str | None = None,
                   time_limit: float | None = None, priority: int | None = None,
                   key: str | None = None, after: list[str] | None = None,
                   on_parent_failure: str | None = None,
                   prep: Preparer | None = None) -> SubmitRequest:
    """The body of a ``submit`` (see :meth:`ckptd.client.client.Client.submit_job`); without
    ``job_id`` the client chooses the id (sortable by time) and a resend finds the job.
    ``prep``: the client's hooks, tracing and keys, applied to the payload. Values out of
    range (an id, priority, delay or time limit) raise InvalidInput before anything is
    sent."""
    check_queue(queue)
    generated = job_id is None
    body: Body = {"queue": queue, "payload": payload,
                  "id": new_id() if generated else check_job_id(job_id),
                  "if_exists": "return" if generated else if_exists}
    if not generated:
        body["own_id"] = True
    if priority:
        body["priority"] = check_priority(priority)
    if key is not None:
        body["key"] = check_key(key)
    if max_attempts is not None:
        body["max_attempts"] = max_attempts
    if delay is not None:
        delay = check_delay(delay)
    if delay:
        body["delay"] = delay
    if batch is not None:
        body["batch"] = batch
    if time_limit is not None:
        body["time_limit"] = check_time_limit(time_limit)
    if generated:
        body["fresh"] = True
    if after:  # parents (queue/id): the daemon holds it in waiting/ (docs/guide/graphs.md)
        body["after"] = list(after)
        body["on_parent_failure"] = on_parent_failure
    if prep is not None and prep.active:  # hooks, trace context, seal
        body["payload"], extra = prep.prepare(queue, payload, body["id"])
        body.update(extra)
    return SubmitRequest(queue, body, generated)


def batch_open_body(queue: str, *, then: str | None, on_complete: str | None,
                    on_failure: str | None, name: str | None, context: Any) -> Body:
    """The body of a ``batch_open`` (see :meth:`ckptd.client.batches.GraphCalls.batch`)."""
    check_queue(queue)
    callbacks = {k: check_queue(v) for k, v in (("then", then), ("on_complete", on_complete),
                                                ("on_failure", on_failure)) if v}
    if not callbacks:
        raise ValueError("a batch needs a callback: then=, on_complete= or on_failure=")
    return {"queue": queue, "batch": name, "callbacks": callbacks, "context": context}


def signal_body(queue: str, job_id: str, name: str, data: Any = None) -> Body:
    """The body of a ``signal`` (see :meth:`ckptd.client.batches.GraphCalls.signal`)."""
    return {"queue": queue, "id": job_id, "name": check_signal(name), "data": data}


def graph_body(queue: str, job_id: str, depth: int | None = None) -> Body:
    """The body of a ``graph`` request (a job's parents, children and batch)."""
    return {"queue": queue, "id": job_id, "depth": depth}


GRAPH_TIMEOUT = 60.0  # seconds: a graph request may read many files


def submitted(answer: Body) -> Submitted:
    """A ``submit`` answer as the caller gets it."""
    return Submitted(answer["id"], bool(answer.get("created", True)),
                     str(answer.get("state", State.PENDING.value)),
                     bool(answer.get("debounced")))


@dataclass(frozen=True)
class ManyRequest:
    """One ``submit_many``: its jobs (with their ids) and whether the client chose the ids."""

    queue: str
    items: list[Body]
    fresh: bool

    @property
    def ids(self) -> list[str]:
        """The jobs' ids, in order."""
        return [str(i["id"]) for i in self.items]

    def may_go_direct(self) -> bool:
        """Whether a client on the daemon's host may write these jobs into the store itself
        (jobs with ids of the caller's, with a key or with ``meta``, go through the
        daemon)."""
        return self.fresh and not any("meta" in i or "key" in i for i in self.items)

    def ask(self, timeout: float) -> Ask:
        """The request as a conversation sends it (again: looking for the jobs first)."""
        again = [{**item, "fresh": False} for item in self.items]
        return Ask("submit_many", {"queue": self.queue, "jobs": self.items}, timeout,
                   again={"queue": self.queue, "jobs": again})


def many_request(queue: str, payloads: list[Any], ids: list[str] | None = None,
                 prep: Preparer | None = None, key: str | None = None) -> ManyRequest:
    """The body of a ``submit_many``; with ``ids`` (one per payload) a resend returns the
    jobs made by the first call instead of making more. ``prep``: as for a submit;
    ``key``: the key of all of them."""
    check_queue(queue)
    if ids is not None and len(ids) != len(payloads):
        raise ValueError("give one id per payload")
    fresh = ids is None
    tag: Body = {} if key is None else {"key": check_key(key)}
    items: list[Body] = [{"id": new_id() if ids is None else check_job_id(ids[n]),
                          "payload": p, "fresh": fresh, "if_exists": "return", **tag}
                         for n, p in enumerate(payloads)]
    if prep is not None and prep.active:  # hooks, trace context, seal
        for item in items:
            item["payload"], extra = prep.prepare(queue, item["payload"], str(item["id"]))
            item.update(extra)
    return ManyRequest(queue, items, fresh)


def submitted_many(answer: Body) -> list[str]:
    """The ids of a ``submit_many`` answer; raises CkptdError when some jobs were refused."""
    ids = answer["ids"]
    errors = [i for i in ids if isinstance(i, dict)]
    if errors:
        raise CkptdError(f"{len(errors)} of {len(ids)} jobs were refused: "
                         f"{errors[0].get('error')}")
    return [str(i) for i in ids]


def unconfirmed(exc: DaemonUnavailable, queue: str, ids: list[str]) -> DaemonUnavailable:
    """What a submit that got no answer raises: SubmitUnconfirmed (with the ids, to look up
    or send again) when it may have reached a daemon."""
    return SubmitUnconfirmed(queue, ids, str(exc)) if exc.maybe_applied else exc


@dataclass
class WaitLoop:
    """A wait for jobs to end, as ``wait`` requests of at most :data:`WAIT_CHUNK` seconds
    each (each parked in the daemon, and asked again after its own long poll when its
    answer got lost) until they end or ``timeout`` passes."""

    queue: str
    ids: list[str] | None
    timeout: float
    client_timeout: float
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def next_ask(self) -> Ask:
        """The next ``wait`` request."""
        chunk = min(max(0.0, self.deadline - time.monotonic()), WAIT_CHUNK)
        return Ask("wait", {"queue": self.queue, "ids": self.ids, "timeout": chunk},
                   chunk + self.client_timeout, repeatable=True,
                   resend_after=chunk + RESEND_MAX)

    def answered(self, answer: Body) -> bool:
        """True when ``answer`` ends the wait; raises WaitTimeout when time is up."""
        if not answer.get("timed_out"):
            return True
        if time.monotonic() >= self.deadline:
            still = len(answer.get("open", [])) if self.ids else answer["open"]
            raise WaitTimeout(f"{still} job(s) of {self.queue!r} still open after "
                              f"{self.timeout:g}s")
        return False

    def state_of(self, answer: Body, job_id: str) -> str:
        """The state a job ended in, from the final answer."""
        return str(answer["states"][job_id])
