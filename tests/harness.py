"""The engine on a fake clock and a memory store, driven as the daemon drives it.

No process, no socket, no thread: a test calls what the daemon's loop would call, with the
time it chooses, and each round ends with the daemon's own commit
(:func:`ckptd.daemon.engine.commit.commit`, through the same
:class:`~ckptd.daemon.engine.store_guard.StoreGuard`). A test of a rule the engine decides
(dispatch, leases, retries, the gate, priorities, schedules, retention) runs here in
milliseconds; the fixtures ``harness`` and ``make_harness`` (tests/conftest.py) hand one out
and close it at the end.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.daemon.engine.actions import Operators
from ckptd.daemon.engine.commit import commit
from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.store_guard import StoreGuard
from ckptd.store.bucket import BucketStore
from ckptd.testing import FakeClock
from ckptd.wire import protocol
from ckptd.wire.control_requests import Request
from ckptd.wire.messages import FromWorker

Sent = tuple[bytes, bytes, dict[str, Any]]


def handler(engine: Engine, kind: str) -> Callable[..., None]:
    """The engine's part that takes a worker's message of ``kind`` (``done``, ``failed``,
    ``checkpoint``, ``progress``, ``heartbeat``, ``park``)."""
    handlers: dict[str, Callable[..., None]] = {
        "done": engine.answers.done, "failed": engine.answers.failed,
        "checkpoint": engine.answers.checkpoint, "progress": engine.answers.progress,
        "heartbeat": engine.workers_part.heartbeat, "park": engine.graph.parks.park}
    return handlers[kind]

_roots = itertools.count()
START = 1_000_000.0  # the fake clock's first reading

DEFAULTS: dict[str, Any] = {"lease": 10.0, "heartbeat": 1.0, "backoff_base": 2.0,
                            "backoff_cap": 60.0, "backoff_jitter": 0.0}


def worker_message(kind: str, body: dict[str, Any]) -> FromWorker:
    """A worker's message as the daemon gets it: checked, as its kind's struct."""
    return protocol.WORKER_MESSAGES.tolerant(kind.encode(), body)


def control_request(kind: str, body: dict[str, Any]) -> Request:
    """A control request as the daemon gets it: checked, as its kind's struct."""
    return protocol.CONTROL_REQUESTS.tolerant(kind.encode(), body)


class CallbackErrors(logging.Handler):
    """Keeps the errors the commit logs (a callback that raised): the fixture fails the test
    on them, where the daemon only logs them and goes on."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """An engine on a fresh memory store (``settings`` over :data:`DEFAULTS`)."""

    def __init__(self, store: BucketStore | None = None, clock: FakeClock | None = None,
                 **settings: Any) -> None:
        self.store = store or BucketStore(f"memory://engine-{next(_roots)}")
        self.given = settings
        self.settings = Settings(**{**DEFAULTS, **settings})
        self.clock = clock or FakeClock(START)
        self.engine = Engine(self.store, self.settings, rand=lambda: 0.5)
        self.operators = Operators(self.engine)
        self.guard = StoreGuard(self.store, self.clock)
        self.replies: list[Any] = []
        self.engine.recover(self.now)

    @property
    def now(self) -> float:
        """The fake time (``h.now += 5`` moves it; :meth:`tick` also runs the timers)."""
        return self.clock()

    @now.setter
    def now(self, value: float) -> None:
        self.clock.set(value)

    def close(self) -> None:
        """Stop a retention sweep, and the writer of jobs' logs, still running (the fixtures
        call this)."""
        self.engine.sweeper.close()
        self.engine.log_writer.close()

    def restart(self, **settings: Any) -> Harness:
        """A new engine on the same store and clock, as after a kill -9 of the daemon."""
        return Harness(self.store, self.clock, **{**self.given, **settings})

    # -- a turn, as the daemon's loop takes it --------------------------------------------

    def commit(self) -> list[Sent]:
        """The daemon's commit; return what it sent to workers."""
        sent: list[Sent] = []

        def deliver() -> None:
            sent.extend(self.engine.outbox)
            self.engine.outbox = []

        commit(self.engine, lambda txn: self.guard.apply(txn), deliver, timer=self.clock)
        return sent

    def tick(self, seconds: float = 0.0) -> list[Sent]:
        """Let ``seconds`` pass, then the timers' share of a turn: leases that ran out,
        delayed jobs that are due, the controls (schedules, retention, aging)."""
        self.clock.advance(seconds)
        self.engine.answers.expire_leases(self.now)
        self.engine.index.promote_delayed(self.now)
        self.engine.tick(self.now)
        self.guard.requeue(self.now, self.engine.txn)
        return self.commit()

    def dispatch(self) -> list[dict[str, Any]]:
        """Claim for the workers with free slots; return the job messages sent."""
        self.engine.dispatcher.dispatch(self.now, 64 * 1024)
        return [body for _, kind, body in self.commit() if kind == b"job"]

    # -- producers and workers -------------------------------------------------------------

    def submit(self, queue: str = "q", **body: Any) -> str:
        """Submit a job (``payload``, ``delay``, ``priority``...) and return its id."""
        self.engine.submit({"queue": queue, "payload": body.pop("payload", {"n": 1}), **body},
                           self.now, self.replies.append)
        self.commit()
        answer = self.replies[-1]
        if isinstance(answer, CkptdError):
            raise answer
        return str(answer["id"])

    def hello(self, name: str = "w", slots: int = 1, queues: tuple[str, ...] = ("q",)) -> bytes:
        """A worker says hello with ``slots`` free slots; return its identity."""
        identity = name.encode()
        self.engine.workers_part.hello(identity, worker_message(
            "hello", {"worker": name, "queues": list(queues), "slots": slots}), self.now)
        self.commit()
        return identity

    def answer(self, identity: bytes, kind: str, body: dict[str, Any]) -> list[Sent]:
        """A worker's message (``done``, ``failed``, ``heartbeat``, ``checkpoint``...)."""
        worker = self.engine.workers_part.worker_for(identity, self.now)
        handler(self.engine, kind)(worker, worker_message(kind, body), self.now)
        return self.commit()

    def finish(self, identity: bytes, job: dict[str, Any], result: Any = None) -> None:
        """The worker ``identity`` answers ``done`` for the job message ``job``."""
        self.answer(identity, "done", {"queue": job["queue"], "id": job["id"],
                                       "attempt": job["attempt"], "result": result})

    # -- the store -------------------------------------------------------------------------

    def file(self, state: State, job_id: str, queue: str = "q") -> dict[str, Any]:
        """The job file, decoded."""
        return dict(json.loads(self.store.read(queue, state, job_id)))

    def where(self, job_id: str, queue: str = "q") -> list[State]:
        """The states whose folder holds the job."""
        return self.store.find(queue, job_id)


MakeHarness = Callable[..., Harness]
"""The ``make_harness`` fixture: ``make_harness(**settings)`` returns a new :class:`Harness`."""
