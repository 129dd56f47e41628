"""One control request from a client's side, as a plan without I/O: what to send, how long to
wait, and what an answer (or its absence) means.

:func:`conversation` is a generator that yields the steps of one request (:class:`Exchange`:
send these frames and wait this long for the reply; :class:`Pause`: sleep) and is sent what
each exchange gave. The blocking :class:`~ckptd.client.client.Client` and the
:class:`~ckptd.client.async_client.AsyncClient` drive the same generator (:func:`drive` and
``AsyncClient``'s own loop), so resends, standbys, daemons taking over and leaders to follow
are decided in one place for both.

The rules: a request that may be repeated safely (:data:`IDEMPOTENT`) is sent again when no
answer came within a short while (0.5 s, then twice as long each time, up to 2 s): a daemon
that restarts costs about its restart time, not the whole timeout. From the second send on
it carries ``again`` when given (a submit that may have arrived must look for its job before
creating it). A daemon taking the lead (``TakingOver``: it applied nothing) is asked again
until the timeout; a standby is passed over when there are other addresses; a daemon that
names the leader of the request's queue is followed there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

from ckptd.core.errors import (
    DaemonUnavailable,
    RemoteError,
    Standby,
    TakingOver,
    remote_error,
)
from ckptd.wire import protocol
from ckptd.wire.protocol import Body

RESEND_FIRST = 0.5  # an idempotent request without an answer is sent again after this ...
RESEND_MAX = 2.0  # ... and then after twice as long each time, up to this
MAX_HOPS = 3  # daemons named as a queue's leader followed for one request
IDEMPOTENT = frozenset({"ping", "status", "endpoints", "ls", "show", "fetch", "submit",
                        "submit_many", "upload"})
"""Requests that may be sent twice with the same effect (a submit carries its id)."""

Reply = tuple[bool, Body]
"""A decoded reply: (ok, body)."""

Outcome = tuple[bool, Reply | None]
"""What an exchange gave: (whether the request was handed to a connection, the reply or
None when none came in time)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """Send ``frames`` (a request without its tag) and wait up to ``wait`` for its reply."""

    frames: list[bytes]
    wait: float


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep ``seconds`` before the next step."""

    seconds: float


Step = Exchange | Pause


class Line(Protocol):
    """What a conversation asks of the connection it runs on, besides exchanges."""

    endpoints: list[str]

    def reset(self, rotate: bool) -> None:
        """Drop the connection (and, with ``rotate``, go on to the next address)."""

    def follow(self, endpoint: str) -> None:
        """Send the next requests to ``endpoint`` (a queue's leader)."""


@dataclass(frozen=True, slots=True)
class Ask:
    """One request and how to send it (see :func:`conversation`)."""

    kind: str
    body: Body
    timeout: float
    again: Body | None = None
    repeatable: bool | None = None
    resend_after: float = RESEND_FIRST
    follow: bool = True


def conversation(line: Line, ask: Ask, clock: Callable[[], float] = time.monotonic
                 ) -> Generator[Step, Outcome | None, Body]:
    """The steps of one request on ``line``; returns the reply body.

    Raises the daemon's error as a RemoteError (also an instance of the error's own class);
    DaemonUnavailable when no daemon answered in time (its ``maybe_applied`` says whether the
    request may have reached one).
    """
    kind = ask.kind.encode()
    frames = protocol.request(kind, ask.body)
    resent = ask.again is None  # what is sent from the second time on is in frames
    repeatable = ask.kind in IDEMPOTENT if ask.repeatable is None else ask.repeatable
    deadline = clock() + ask.timeout
    interval = ask.resend_after
    pause = 0.05
    maybe_applied = False
    refused: RemoteError | None = None  # a standby's or a daemon taking over's answer
    tried = 0
    hops = 0
    while True:
        left = deadline - clock()
        if left <= 0:
            break
        if maybe_applied and not repeatable:
            break  # it may have been applied: never twice
        slot = min(left, interval) if repeatable else left
        outcome = yield Exchange(frames, slot)
        assert outcome is not None
        sent, reply = outcome
        tried += 1
        maybe_applied = maybe_applied or sent
        if reply is None:
            if sent and repeatable:
                if not resent and ask.again is not None:
                    frames, resent = protocol.request(kind, ask.again), True
                interval = max(interval, min(interval * 2, RESEND_MAX))
            continue
        ok, answer = reply
        if ok:
            return answer
        error = remote_error(str(answer.get("error", "error")),
                             str(answer.get("message", "the daemon refused")),
                             int(answer.get("exit_code", 1)))
        leader = answer.get("leader")
        if isinstance(error, Standby) and isinstance(leader, dict):
            error.leader = {str(k): str(v) for k, v in leader.items()}
            if ask.follow and leader.get("control") and hops < MAX_HOPS:
                hops += 1  # the queue's leader is named: ask it (nothing was done here)
                line.follow(str(leader["control"]))
                maybe_applied = False
                continue
        if isinstance(error, TakingOver):
            refused = error  # nothing was applied: ask again after a moment
            maybe_applied = False
            line.reset(rotate=True)
            yield Pause(min(pause, max(0.0, deadline - clock())))
            pause = min(pause * 2, 1.0)
            continue
        if isinstance(error, Standby) and len(line.endpoints) > 1:
            if refused is None:
                refused = error  # the active daemon is another address
            maybe_applied = False
            line.reset(rotate=True)
            if tried >= 2 * len(line.endpoints) and not isinstance(refused, TakingOver):
                raise error
            continue
        raise error
    if refused is not None:
        raise refused
    where = ", ".join(line.endpoints)
    raise DaemonUnavailable(
        f"no answer from the daemon at {where} within {ask.timeout:g}s: is 'ckptd serve' "
        "running there, and is the address (and key) right?", maybe_applied=maybe_applied)


def drive(steps: Generator[Step, Outcome | None, Body],
          exchange: Callable[[list[bytes], float], Outcome]) -> Body:
    """Run a conversation with blocking I/O: ``exchange(frames, wait)`` and ``time.sleep``."""
    step = next(steps)
    while True:
        try:
            if isinstance(step, Exchange):
                step = steps.send(exchange(step.frames, step.wait))
            else:
                time.sleep(step.seconds)
                step = steps.send(None)
        except StopIteration as end:
            body: Body = end.value
            return body
