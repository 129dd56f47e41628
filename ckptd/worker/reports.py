"""The answer a worker sends for an attempt (``done``, ``failed`` or ``park``), from how its
handler ended: a result, an exception, a Park, or a stop by force.

One function per way of ending, shared by every pool (threads, child processes, the event
loop), so that an attempt reads the same in ``failed/`` whatever ran it.
"""

from __future__ import annotations

import traceback
from typing import Any

from ckptd.core.edits import GIVEN_BACK
from ckptd.core.errors import LeaseLost
from ckptd.core.outcomes import Cancelled, Fail, Interrupt, Park, Retry, TimeLimit
from ckptd.wire import protocol
from ckptd.wire.messages import JobMessage
from ckptd.worker.job import _Attempt

Answer = tuple[bytes, dict[str, object]]
"""A message kind (``done`` or ``failed``) and its body."""

ERROR_LIMIT = 4000
TRACEBACK_LIMIT = 8000


def _base(body: JobMessage) -> dict[str, object]:
    return {"queue": body.queue, "id": body.id, "attempt": body.attempt}


def done(body: JobMessage, result: Any) -> Answer:
    """The answer of an attempt whose handler returned ``result`` (a Fail when that is not
    JSON: the job could never succeed as written)."""
    try:
        protocol.encode_body({"result": result})
    except ValueError as exc:
        return failed(body, Fail(f"the handler's result is not JSON-serialisable: {exc}"))
    answer = _base(body)
    answer["result"] = result
    return b"done", answer


def failed(body: JobMessage, exc: BaseException, trace: str | None = None) -> Answer:
    """The answer of an attempt whose handler raised ``exc`` (``trace`` its traceback)."""
    answer = _base(body)
    if isinstance(exc, Retry):
        answer.update(error=exc.reason, type="Retry", retry=True, delay=exc.delay)
    elif isinstance(exc, Fail):
        answer.update(error=exc.reason, type="Fail", retry=False)
    elif isinstance(exc, LeaseLost):
        answer.update(error=str(exc), type="LeaseLost", retry=True)
    elif isinstance(exc, Interrupt):
        answer.update(error=exc.reason or type(exc).__name__, type=type(exc).__name__,
                      retry=not isinstance(exc, Cancelled))
        if trace:
            answer["traceback"] = trace[-TRACEBACK_LIMIT:]
    else:
        answer.update(error=f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT], type=type(exc).__name__,
                      traceback=(trace or "")[-TRACEBACK_LIMIT:] or None, retry=True)
    return b"failed", answer


def failed_now(body: JobMessage, exc: BaseException, job: _Attempt | None = None
               ) -> Answer:
    """:func:`failed`, with the traceback of the exception being handled (:func:`parked`
    when it is a Park: ``job`` names the children it spawned)."""
    if isinstance(exc, Park):
        return parked(body, exc, job.spawned if job is not None else [])
    return failed(body, exc, traceback.format_exc())


def parked(body: JobMessage, park: Park, spawned: list[str]) -> Answer:
    """The answer of an attempt whose handler raised :class:`ckptd.Park`: the daemon moves
    the job to waiting/ and frees its slot (``children``: the jobs this attempt spawned)."""
    answer = _base(body)
    answer.update(reason=park.reason[:ERROR_LIMIT], until=park.until, timeout=park.timeout,
                  signals=park.signals or None)
    if park.children:
        answer.update(children=list(spawned) or None, children_asked=True)
    return b"park", answer


def stopped(body: JobMessage, stop: Interrupt | None, how: str) -> Answer:
    """The answer of an attempt ended by force (``how``: what was done to it), after it was
    asked to stop with ``stop`` (a time limit, or a cancel) and did not."""
    if stop is None:
        stop = TimeLimit("stopped by force")
    reason = f"{stop.reason or type(stop).__name__}; {how}"
    return failed(body, type(stop)(reason))


def died(body: JobMessage, how: str) -> Answer:
    """The answer of an attempt whose child process died on its own (``how``)."""
    answer = _base(body)
    answer.update(error=f"the worker's child process running the job died ({how})",
                  type="ChildDied", retry=True)
    return b"failed", answer


def given_back(body: JobMessage, reason: str) -> Answer:
    """The answer of an attempt its worker gives back unfinished because it is stopping:
    the daemon sends the job back to pending at once, without counting the attempt."""
    answer = _base(body)
    answer.update(error=reason, type=GIVEN_BACK, retry=True, delay=0.0, given_back=True)
    return b"failed", answer


def summary(kind: bytes, answer: dict[str, object]) -> str:
    """One line saying how an attempt ended, for the log."""
    if kind == b"done":
        return "done"
    return str(answer.get("error", "failed"))[:300]
