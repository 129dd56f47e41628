"""The shapes of the answers of the store commands and the clients, as ``TypedDict``: they
stay plain dicts at runtime (JSON on the wire, ``answer["queues"]["price"]["pending"]`` in
users' code) and get checked types in ours.

An answer comes from a bare store (:class:`ckptd.store.admin.StoreAdmin`, ``"source":
"store"``) or from a daemon (``"source": "daemon"``), which knows more: what only one of
them says is ``NotRequired``. A test holds these shapes to what both really answer
(``tests/unit/test_answer_types.py``).
"""

# No ``from __future__ import annotations`` here: on Python 3.11, ``NotRequired`` in a
# string annotation is not seen at runtime, and ``__required_keys__`` (which the clients
# check answers against) would then name every key.
from typing import Any, NotRequired, TypedDict

# -- a queue's operator controls (status, show, explain) ---------------------------------------


class PauseView(TypedDict):
    """A paused queue: the reason (its ``paused`` file's text) and since when (a daemon
    knows; None on a store)."""

    reason: str
    since: str | None


class LimitsView(TypedDict):
    """The limits in force of a queue (``limits.json`` over the config), or of a key."""

    max_running: int | None
    rate: str | None
    rate_per_s: float | None
    source: str  # "config", or the limits file that sets them
    weight: NotRequired[int]  # a key's share (limits of keys only)
    running: NotRequired[int]  # a daemon's: jobs of the queue running now
    throttled: NotRequired[int]  # a daemon's: claims the rate held back
    error: NotRequired[str]  # the limits file is ignored: why


class RetentionView(TypedDict):
    """How long finished jobs are kept, and (a daemon's) what its sweeps did."""

    keep_done: str
    keep_failed: str
    keep_last: int | None
    archive: bool
    keep_done_s: float | None
    keep_failed_s: float | None
    removed_done: NotRequired[int]
    removed_failed: NotRequired[int]
    archived_done: NotRequired[int]
    archived_failed: NotRequired[int]
    last_sweep: NotRequired[str | None]
    interval_s: NotRequired[float]
    last_sweep_s: NotRequired[float]
    sweeping_s: NotRequired[float]


class UniqueView(TypedDict):
    """How a unique queue makes ids from payloads (and, a daemon's, how often it found one)."""

    by: str  # "payload" or "fields"
    scope: str  # forever, open, window, debounce
    fields: NotRequired[list[str]]
    window_s: NotRequired[float]
    debounce_s: NotRequired[float]
    hits: NotRequired[int]
    debounced: NotRequired[int]


class PrioritiesView(TypedDict):
    """A queue's priorities: how fast waiting jobs age (a daemon: jobs per level, aged)."""

    aging_s: float
    levels: NotRequired[dict[str, int]]
    aged: NotRequired[int]


class KeyRow(TypedDict):
    """What holds one key now (a daemon's): its jobs, its limits, what it waits for."""

    key: str
    running: int
    ready: int
    max_running: int | None
    rate: str | None
    rate_per_s: float | None
    weight: int
    source: str
    held: str | None  # "max_running", "rate" or None
    fair: NotRequired[bool]


class KeysView(TypedDict):
    """A queue's flow control by key (docs/guide/flow-control.md)."""

    fair: bool
    every_key: LimitsView
    named: list[str]
    key: NotRequired[str | None]  # a store's: where in the payload the key is
    error: NotRequired[str]  # key_limits.json is ignored: why
    throttled: NotRequired[int]  # the rest: a daemon's, from what runs
    held: NotRequired[int]
    count: NotRequired[int]
    running: NotRequired[int]
    ready: NotRequired[int]
    busiest: NotRequired[list[KeyRow]]
    claims: NotRequired[dict[str, int]]


class JobPlace(TypedDict):
    """A pending job's place in line (a daemon's ``show``)."""

    priority: int
    ahead: int
    due: bool
    key: KeyRow | None


class QueueControls(TypedDict):
    """A queue's operator controls (in ``show``; in ``status`` they are in its row)."""

    paused: PauseView | None
    limits: LimitsView
    retention: RetentionView
    unique: UniqueView | None
    priorities: PrioritiesView
    keys: KeysView | None
    job: NotRequired[JobPlace]  # a daemon's, for a pending job: its place in line


# -- status --------------------------------------------------------------------------------


class BatchStatus(TypedDict):
    """A batch's progress (a daemon's open-ended batches add their seal and callbacks)."""

    queue: str
    total: int
    done: int
    failed: int
    open: int
    then: str | None
    reduced: str | None
    eta_s: float | None
    sealed: NotRequired[bool]
    callbacks: NotRequired[dict[str, str]]
    fired: NotRequired[dict[str, str]]


class QueueStatus(TypedDict):
    """One queue's row of ``status``: the jobs per state, its batches and controls (those
    of :class:`QueueControls`); from a daemon also its figures since it started (none of
    them scans jobs). The row of a queue another daemon leads has only the counts its
    leader published, ``leader`` and ``source``."""

    pending: int
    claimed: int
    done: int
    failed: int
    waiting: int
    batches: NotRequired[dict[str, BatchStatus]]
    paused: NotRequired[PauseView | None]
    limits: NotRequired[LimitsView]
    retention: NotRequired[RetentionView]
    unique: NotRequired[UniqueView | None]
    priorities: NotRequired[PrioritiesView]
    keys: NotRequired[KeysView | None]
    quarantined: NotRequired[int]  # files in quarantine (a store), or since the start
    leader: NotRequired[str | None]  # the daemon leading it (several daemons on one store)
    source: NotRequired[str]
    # a daemon's, since it started
    submitted: NotRequired[int]
    succeeded: NotRequired[int]
    failures: NotRequired[int]  # attempts that failed (``failed``: what failed/ holds)
    retried: NotRequired[int]
    expired: NotRequired[int]
    stale_answers: NotRequired[int]
    throughput_1m: NotRequired[float]
    delayed: NotRequired[int]
    recovering: NotRequired[dict[str, int] | None]
    workers: NotRequired[int]
    slots: NotRequired[int]
    cycle_mean_s: NotRequired[float | None]
    lead_p50_s: NotRequired[float | None]
    lead_p95_s: NotRequired[float | None]
    cycle_p50_s: NotRequired[float | None]
    cycle_p95_s: NotRequired[float | None]
    oldest_pending_age_s: NotRequired[float | None]


class ScheduleRow(TypedDict):
    """A schedule, with its next and last runs (``submitted``, ``existing``, ``error``:
    a daemon's)."""

    name: str
    queue: str
    when: str
    catch_up: str
    next: str | None
    next_in_s: float
    last: str | None
    last_id: str | None
    backlog: int
    submitted: int | None
    existing: int | None
    error: str | None


class StoreHealth(TypedDict):
    """Whether a daemon's store answers, and the writes kept to be retried."""

    available: bool
    unavailable_since: str | None
    unavailable_s: float | None
    error: str | None
    error_code: str | None
    failures: int
    outages: int
    retried_ops: int
    deferred_ops: NotRequired[int]
    requests: NotRequired[dict[str, int]]  # a bucket's request counts
    flushes: NotRequired[dict[str, float]]


class RecoveryView(TypedDict):
    """A daemon's listing of its store while it serves (after a start)."""

    running: bool
    seconds: NotRequired[float]
    queues: NotRequired[dict[str, dict[str, int]]]
    error: NotRequired[str | None]


class DaemonInfo(TypedDict):
    """What ``status`` says of the daemon itself (on a bucket its role adds more)."""

    name: str
    uptime_s: float
    fsync: str
    lease_s: float
    heartbeat_s: float
    time: float
    curve: bool
    role: str
    stopping: bool
    store: StoreHealth
    recovery: RecoveryView
    members: NotRequired[list[dict[str, object]]]  # the daemons of the store
    leader: NotRequired[dict[str, object]]  # a bucket's: the leases it holds


class StatusAnswer(TypedDict):
    """``status``: a row per queue; a daemon adds itself, its workers and schedules."""

    queues: dict[str, QueueStatus]
    root: str
    source: str  # "store" or "daemon"
    workers: NotRequired[int]
    counters: NotRequired[dict[str, int]]
    schedules: NotRequired[list[ScheduleRow]]
    drops: NotRequired[dict[str, int]]
    daemon: NotRequired[DaemonInfo]


class SchedulesAnswer(TypedDict):
    """``schedules``."""

    schedules: list[ScheduleRow]
    source: NotRequired[str]


# -- one job ---------------------------------------------------------------------------------


class WaitsInfo(TypedDict, total=False):
    """What a waiting job waits for, with the state each job it waits on is in now (only
    ``error`` when its file's wait cannot be read)."""

    parents: dict[str, str]
    children: dict[str, str]
    open: list[str]
    missing: list[str]
    rule: str
    signals_wanted: list[str]
    signals_present: list[str]
    until: object
    timeout: object
    since: object
    error: str


class LeaseInfo(TypedDict):
    """What a daemon knows of a claimed job beyond its file."""

    attempt: int
    worker: str | None
    claimed_at: str
    age_s: float
    lease_s: float
    time_limit_s: float | None
    heartbeat_s: float
    heartbeat_age_s: float | None
    checkpoint_age_s: float | None
    closing: bool
    expires_in_s: float
    last_heartbeat: str | None
    last_checkpoint: str | None
    progress: Any  # the handler's own JSON (job.progress)


class JobDetails(TypedDict, total=False):
    """What ``show`` says of a job only when there is something to say."""

    also_in: list[str]  # other states its file is found in too (after a crash)
    priority: int  # from its file's name
    key: str  # likewise
    hand_written: bool  # a pending file written by hand: completed as shown
    waits: WaitsInfo | None  # what it waits for (None: it waits no more)
    lease: LeaseInfo | None  # a daemon's: the claim it runs under
    waiting_op: dict[str, object]  # a daemon's: a write of it kept for a retry
    sealed: list[str]  # the CLI's (--decrypt, explain): what opening sealed values did


class ShowAnswer(JobDetails):
    """``show``: a job's state, file (or, unreadable, why and its text) and checkpoint."""

    state: str
    path: str
    job: dict[str, Any]  # the job file: the user's payload and result in it
    checkpoint: Any  # the handler's own state (JSON, or text when it is not)
    controls: QueueControls
    log_tail: list[str]


class LogPart(TypedDict):
    """A piece of one attempt's log: bytes ``start`` to ``end``."""

    attempt: int
    start: int
    end: int
    text: str


class LogsAnswer(TypedDict):
    """``logs``: a job's log after what was read, and its state (None: no such job)."""

    state: str | None
    parts: list[LogPart]


# -- operator controls ---------------------------------------------------------------------


class PauseAnswer(TypedDict):
    """``pause``."""

    queue: str
    paused: PauseView


class ResumeAnswer(TypedDict):
    """``resume``."""

    queue: str
    was_paused: bool


class LimitAnswer(TypedDict):
    """``limit``: the limits in force now (of ``key`` when one was given)."""

    queue: str
    limits: LimitsView
    key: NotRequired[str]


# -- work that waits ---------------------------------------------------------------------------


class SignalAnswer(TypedDict):
    """``signal``: where it went and the job's state."""

    queue: str
    id: str
    signal: str
    state: str | None


class GraphBatch(TypedDict):
    """The batch a graph's job is (or belongs to), its jobs counted by state."""

    batch: str
    queue: str
    sealed: bool | None
    callbacks: dict[str, str]
    fired: dict[str, str]
    jobs: dict[str, int]


class GraphNode(TypedDict):
    """A job of a graph, with its state and (to the depth asked) its relations."""

    job: str  # queue/id
    state: str
    seen: NotRequired[bool]  # drawn once already (or the graph is too big)
    batch_name: NotRequired[str | None]
    woken: NotRequired[object]
    waits: NotRequired[WaitsInfo | None]
    parents: NotRequired[list["GraphNode"]]
    children: NotRequired[list["GraphNode"]]
    dependents: NotRequired[list["GraphNode"]]
    batch: NotRequired[GraphBatch | None]  # the root's


class BatchOpened(TypedDict):
    """``batch_open``: the batch, and whether this call made it."""

    batch: str
    queue: str
    created: bool
    sealed: bool


class BatchSealed(BatchStatus):
    """``batch_seal``: the batch, sealed, with its progress."""

    batch: str


class SubmitAnswer(TypedDict):
    """A submit's answer on the wire (``run_schedule`` gives it as it is)."""

    id: str
    created: bool
    state: str
    debounced: NotRequired[bool]


class WaitAnswer(TypedDict):
    """``wait``: whether time ran out; the end states (ids given) or the counts (none)."""

    timed_out: bool
    open: NotRequired[list[str] | int]  # the ids still open, or how many
    states: NotRequired[dict[str, str | None]]
    counts: NotRequired[dict[str, int]]


class SubmitOffer(TypedDict):
    """What a daemon tells clients on its host so that they submit into its local store
    themselves (``ckptd.client.direct``)."""

    root: str
    token: str  # also in the root's lock (or, with ``lead``, in each led queue's)
    lead: list[str]
    fsync: str
    file_mode: int
    dir_mode: int
    max_attempts: int
    blob_threshold: int
    queues: dict[str, int]  # a queue's own max_attempts
    through_daemon: list[str]  # queues whose submits go through the daemon all the same


class EndpointsAnswer(TypedDict):
    """``endpoints``: where workers connect, the store, and (several daemons) who leads
    which queue."""

    dispatch: str
    dispatch_port: int
    root: str
    submit: NotRequired[SubmitOffer]  # a daemon on a local disk
    daemon: NotRequired[str]
    routes: NotRequired[dict[str, dict[str, str]]]
    members: NotRequired[list[str]]


class PingAnswer(TypedDict):
    """``ping``: the daemon's name; with several daemons on one store, who leads what."""

    pong: bool
    daemon: str
    standby: NotRequired[bool]
    leases: NotRequired[dict[str, object]]
    leads: NotRequired[list[str]]
    routes: NotRequired[dict[str, dict[str, str]]]
