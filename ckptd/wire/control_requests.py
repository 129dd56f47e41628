"""The requests of the control socket, one struct per kind.

Decoded by :func:`ckptd.wire.protocol.decode_request` like the worker messages of
:mod:`ckptd.wire.messages`. A field whose absence means something of its own (a limit left
as it is, a payload's keyed hash) defaults to ``msgspec.UNSET``; the others to what
being left out means. The fields that carry the user's own JSON (payloads, signal data, a
batch's context, ``meta``, the jobs of ``submit_many``) are ``Any``.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Meta, UnsetType

from ckptd.core.names import is_valid_name
from ckptd.wire.fields import (
    Callbacks,
    Count,
    Ids,
    Label,
    Name,
    Names,
    Number,
    Priority,
    Rate,
    Refs,
    Seconds,
    Text,
    require_printable,
)
from ckptd.wire.messages import Message


class Ping(Message):
    """Is the daemon there. ``queues``: which of these does it lead, and who leads the
    others (workers follow their queues this way); ``leases``: its leases' times."""

    queues: Names | None = None
    leases: bool = False


class Endpoints(Message):
    """Where the dispatch port is, and how to submit on this host."""


class Submit(Message):
    """A job to create. ``meta``: fields added by the client's hooks; ``payload_key``: the
    keyed hash of a sealed payload; ``after``: parents (it waits in waiting/ for them)."""

    queue: Name
    payload: Any = None
    id: Name | None = None
    max_attempts: Count | None = None
    delay: Number | None = None
    if_exists: Text | None = None
    batch: Name | None = None
    fresh: bool = False
    time_limit: Seconds | None = None
    priority: Priority | None = None
    own_id: bool = False
    key: Text | None = None
    meta: dict[str, Any] | UnsetType = UNSET
    payload_key: Name | UnsetType = UNSET
    after: Refs | None = None
    on_parent_failure: Text | None = None


class SubmitMany(Message):
    """Jobs to create in one queue: each a submit's fields (checked one by one, each
    answered on its own), with a valid ``id`` or none."""

    queue: Name
    jobs: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=100_000)]

    def __post_init__(self) -> None:
        for job in self.jobs:
            if job.get("id") is not None and not is_valid_name(job["id"]):
                raise ValueError("Expected a valid id - at `$.jobs`")


class Status(Message):
    """The daemon's and its queues' counts (of one ``queue``, when given)."""

    queue: Name | None = None


class Ls(Message):
    """The jobs of a queue (in one ``state``, when given)."""

    queue: Name
    state: Text | None = None


class Show(Message):
    """One job's file, lease and controls."""

    queue: Name
    id: Name


class Retry(Message):
    """Failed jobs back to pending (``ids``, or all), with ``attempts`` more."""

    queue: Name
    ids: Ids | None = None
    attempts: Count | None = None


class CancelJob(Message):
    """An operator cancels a job (``by``: who)."""

    queue: Name
    id: Name
    by: Label | None = None

    def __post_init__(self) -> None:
        require_printable(self, "by")


class Purge(Message):
    """Jobs of a state removed (``older_than`` seconds, or these ``ids``)."""

    queue: Name
    state: Text
    older_than: Number | None = None
    ids: Ids | None = None


class Pause(Message):
    """A queue's dispatch paused (the file <queue>/paused)."""

    queue: Name
    reason: Text | None = None


class Resume(Message):
    """A paused queue dispatched again."""

    queue: Name


class Limit(Message):
    """A queue's limits changed (<queue>/limits.json): a limit left out stays as it is, a
    null one is removed; ``key`` and ``weight``: the limit of one key."""

    queue: Name
    max_running: Count | None | UnsetType = UNSET
    rate: Rate | None | UnsetType = UNSET
    reset: bool = False
    key: Text | None = None
    weight: Count | None | UnsetType = UNSET


class Schedules(Message):
    """The schedules and their next runs."""


class Move(Message):
    """A job to another queue (the console's action, ``ckptd move``)."""

    queue: Name
    id: Name
    to: Name
    by: Label | None = None

    def __post_init__(self) -> None:
        require_printable(self, "by")


class RunSchedule(Message):
    """A schedule's job now."""

    name: Name
    by: Label | None = None

    def __post_init__(self) -> None:
        require_printable(self, "by")


class Fetch(Message):
    """A job's payload, state or result, or a range of a batch's source (``what``)."""

    queue: Name
    id: Name
    what: Text
    start: Count | None = None
    end: Count | None = None


class Output(Message):
    """A named output of a queue written (its text)."""

    queue: Name
    name: Name
    text: str


class Logs(Message):
    """A job's own log: every attempt's, from the byte ``since[attempt]`` of each."""

    queue: Name
    id: Name
    since: dict[str, Any] | None = None


class Wait(Message):
    """Answered when these ``ids`` (or the whole queue) have ended, or at ``timeout``."""

    queue: Name
    timeout: Number
    ids: Ids | None = None


class Upload(Message):
    """A part of a file (base64) for ``submit_file``, from byte ``offset``."""

    upload: Name
    offset: Count
    data: str
    queue: Name | None = None


class Signal(Message):
    """A signal for a job (it wakes when it waits for it)."""

    queue: Name
    id: Name
    name: Text
    data: Any = None


class BatchOpen(Message):
    """A batch opened, with its callbacks."""

    queue: Name
    callbacks: Callbacks
    batch: Name | None = None
    context: Any = None


class BatchSeal(Message):
    """A batch sealed: no more jobs join it."""

    queue: Name
    batch: Name


class Graph(Message):
    """A job's graph: its parents and children, to ``depth``."""

    queue: Name
    id: Name
    depth: Count | None = None


class SubmitFile(Message):
    """An uploaded file split into jobs (``chunk`` lines or bytes each)."""

    upload: Name
    size: Count
    queue: Name
    format: Text
    chunk: Count = 1000
    batch: Name | None = None
    then: Name | None = None
    max_attempts: Count | None = None
    source_name: Text | None = None
    key: Text | None = None


Request = (Ping | Endpoints | Submit | SubmitMany | Status | Ls | Show | Retry | CancelJob
           | Purge | Pause | Resume | Limit | Schedules | Move | RunSchedule | Fetch | Output
           | Logs | Wait | Upload | Signal | BatchOpen | BatchSeal | Graph | SubmitFile)

CONTROL_REQUESTS: dict[bytes, type[Request]] = {
    b"ping": Ping, b"endpoints": Endpoints, b"submit": Submit, b"submit_many": SubmitMany,
    b"status": Status, b"ls": Ls, b"show": Show, b"retry": Retry, b"cancel": CancelJob,
    b"purge": Purge, b"pause": Pause, b"resume": Resume, b"limit": Limit,
    b"schedules": Schedules, b"move": Move, b"run_schedule": RunSchedule, b"fetch": Fetch,
    b"output": Output, b"logs": Logs, b"wait": Wait, b"upload": Upload, b"signal": Signal,
    b"batch_open": BatchOpen, b"batch_seal": BatchSeal, b"graph": Graph,
    b"submit_file": SubmitFile,
}
