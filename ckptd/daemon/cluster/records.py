"""What the daemons of one store write about themselves, and what they show of each other.

Records are JSON in the bucket's control area (membership records, leases) or in lock files;
a record of another daemon is read back as that daemon wrote it (an older ckptd may leave a
field out), so readers use ``.get()``. Shared by the modules of this folder and routing.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class ProcessMark(TypedDict):
    """What identifies the process that wrote a record (see ``previous_run``)."""

    host: str
    boot_id: str | None
    pid_ns: str | None
    pid: int
    started: int | None  # clock ticks since boot


class Addresses(TypedDict):
    """Where a daemon is reached, and what it serves (in its records and leases)."""

    control: str
    dispatch: str
    bound: str
    host: str
    root: str


class LeaseSpan(TypedDict):
    """A lease a daemon holds, on the wall clock (None where a lock has no end)."""

    since: float | None
    until: float | None
    token: NotRequired[str | None]


class LeaseView(TypedDict):
    """What a daemon holds now, for checkers."""

    held: dict[str, LeaseSpan]
    refused: int  # writes its fence refused


class MemberRecord(TypedDict, total=False):
    """A daemon's membership record (``members/<name>.json``), and this daemon's own entry
    among the live ones."""

    name: str
    token: str  # new at each start
    pid: int
    host: str
    started: float
    renewed: float
    lease_s: float
    seq: int
    control: str
    dispatch: str
    bound: str
    root: str
    leads: dict[str, LeaseSpan]
    lead: list[str]  # the queues it may lead
    prefer: dict[str, str]  # its pins: queue -> the daemon it prefers
    counts: dict[str, dict[str, int]]  # queue -> state -> jobs


class LeaseRecord(TypedDict, total=False):
    """A queue's lease object (``queues/<queue>.json``)."""

    holder: str
    pid: int
    lease_s: float
    renewed: float
    token: str
    process: ProcessMark
    queue: str
    control: str
    dispatch: str
    bound: str
    host: str
    root: str


class MemberRow(TypedDict):
    """A daemon of the store, as ``status`` shows it."""

    name: str
    control: object  # as its record says (a str, or None when it said nothing)
    leads: list[str]
    self: bool
