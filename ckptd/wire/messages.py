"""The messages between workers and the daemon, one struct per kind.

:mod:`ckptd.wire.protocol` decodes a body straight into its kind's struct; the types of
:mod:`ckptd.wire.fields` are the checks. A field left out gets its default; one that may not
be null has no null default (``msgspec.UNSET`` where "left out" must stay visible). The
fields that carry the user's own JSON (payloads, results, checkpoint states) are ``Any``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType, field

from ckptd.wire.fields import (
    Count,
    JobRefs,
    Label,
    Lines,
    Name,
    Names,
    Number,
    Refs,
    Seconds,
    Signals,
    Text,
    require_printable,
)


class Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A message body. Unknown fields are refused by the fast decoder only: the protocol
    then decodes the body again the tolerant way (a newer peer may add fields)."""


class AttemptMessage(Message):
    """A message about one attempt of a job."""

    queue: Name
    id: Name
    attempt: Count


# -- worker -> daemon -----------------------------------------------------------------------

class Hello(Message):
    """A worker (re)introduces itself: its queues, its slots and, after a daemon restart,
    the attempts it still runs."""

    worker: Label
    queues: Names
    slots: Count
    free: Count | None = None
    host: Label = ""
    pid: Count = 0
    running: JobRefs | None = None

    def __post_init__(self) -> None:
        require_printable(self, "worker", "host")


class Heartbeat(Message):
    """The attempts a worker runs (their leases are extended)."""

    jobs: JobRefs
    free: Count | None = None


class Checkpoint(AttemptMessage):
    """A handler's state to keep, numbered by ``seq``."""

    seq: Count
    state: Any


class Progress(AttemptMessage):
    """How far a running attempt has come."""

    done: Number
    total: Number | None = None
    note: Text | None = None


class Done(AttemptMessage):
    """An attempt succeeded (``took``: seconds its handler ran; the daemon sizes a worker's
    prefetch by it)."""

    result: Any = None
    result_ref: Text | None = None
    took: Number | None = None


class Failed(AttemptMessage):
    """An attempt failed. ``given_back``: the worker stopped before it ended; it runs again
    now and does not count against max_attempts. ``log_tail``: the last lines of its log."""

    error: Text
    type: Text | None = None
    traceback: Text | None = None
    retry: bool = True
    delay: Number | None = None
    took: Number | None = None
    given_back: bool = False
    log_tail: Lines = field(default_factory=list)


class Log(AttemptMessage):
    """A piece of a job's own log: its text, from byte ``offset`` of the attempt's log."""

    offset: Count
    text: str


class Park(AttemptMessage):
    """The handler raised Park: the job waits in waiting/ (slot and lease freed) until a
    signal, a time, its children (the jobs it spawned) or its timeout."""

    until: Number | None = None
    timeout: Number | None = None
    signals: Signals | None = None
    children: Refs | None = None
    children_asked: bool = False
    reason: Text | None = None
    took: Number | None = None


class Bye(Message):
    """A worker goes away."""


FromWorker = Hello | Heartbeat | Checkpoint | Progress | Done | Failed | Log | Park | Bye
Answer = Done | Failed | Park
"""The messages that end an attempt."""

WORKER_MESSAGES: dict[bytes, type[FromWorker]] = {
    b"hello": Hello, b"heartbeat": Heartbeat, b"checkpoint": Checkpoint, b"progress": Progress,
    b"done": Done, b"failed": Failed, b"log": Log, b"park": Park, b"bye": Bye,
}


# -- daemon -> worker -----------------------------------------------------------------------

class Welcome(Message):
    """The daemon's answer to a hello. ``confirms``: it answers every done and failed with
    an ack (workers keep each answer until then, and send it again after a reconnect)."""

    lease: Number
    heartbeat: Number
    root: Text = ""
    daemon: Text = ""
    blob_threshold: Count = 0
    confirms: bool = False


class JobMessage(AttemptMessage):
    """An attempt to run. The payload and the checkpoint's state are inline, or left out
    (``payload_ref``, ``state_ref``: the worker reads them from the store)."""

    payload: Any = UNSET
    payload_ref: Text | None = None
    state: Any = None
    state_ref: bool | None = None
    max_attempts: Count = 0
    created: Text | UnsetType = UNSET
    batch: Text | None = None
    time_limit: Seconds | None = None
    meta: dict[str, Any] | UnsetType = UNSET  # what the client's hooks added
    traceparent: Text | None = None  # the W3C trace context of this attempt
    # how its last wait ended: parents' and children's ends, signals, the reason
    woken: dict[str, Any] | None = None


class Saved(Message):
    """A checkpoint is durable (ok) or refused."""

    queue: Name
    id: Name
    seq: Count
    ok: bool
    error: Text | None = None


class Ack(AttemptMessage):
    """An answer (done, failed) is durable, or was ``stale`` (its attempt had already
    ended): either way the worker may forget it."""

    stale: bool = False


class Cancel(AttemptMessage):
    """An operator cancelled this running attempt: stop it (the job is in failed/)."""

    by: Text | None = None


class Rehello(Message):
    """The daemon does not know this worker: say hello again."""


FromDaemon = Welcome | JobMessage | Saved | Ack | Cancel | Rehello

DAEMON_MESSAGES: dict[bytes, type[FromDaemon]] = {
    b"welcome": Welcome, b"job": JobMessage, b"saved": Saved, b"ack": Ack, b"cancel": Cancel,
    b"rehello": Rehello,
}
