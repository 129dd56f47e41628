"""Batches: many jobs made together (map), and what happens when they have all ended (reduce).

A batch has a manifest, ``<queue>/batches/<batch>.json``, that ``cat`` can read::

    {"batch": "B20261127T1902-3fa9c1", "queue": "price", "total": 300, "then": "pricelist",
     "source": "blobs/B20261127T1902-3fa9c1.source", "format": "csv", "created": "..."}

Its jobs are ``<batch>.<n>`` (n = 000000, 000001, ...), so membership follows from the id and
a repeated submit of the same batch makes no second job. When every job of the batch has
ended (done or failed) and the manifest names a ``then`` queue, the daemon submits one reduce
job there, ``<batch>.reduce``, whose payload lists the batch's jobs and their end states.
Its id is fixed, so submitting it again after a crash is a no-op: it runs exactly once.

A batch made with ``client.batch(...)`` (any jobs, in any queues) has a manifest in its
home queue too, with ``"sealed": false`` until its producer seals it and the callbacks it
names (``"callbacks": {"then": "report", "on_failure": "alerts"}``). Its jobs are the jobs
whose ids begin with ``<batch>.``: the producer's (``<batch>.<key>``) and any job those
spawn (``<batch>.<key>.<child>``), so a job of the batch adds to its batch by spawning.
Once it is sealed and every job of it has ended, each callback whose condition holds is
created once, as ``<batch>.<callback>`` in its queue, with the outcomes of every job:

- ``then``: every job is done (a chord's body);
- ``on_failure``: one or more failed;
- ``on_complete``: always.

The manifest records each callback created (``fired``), so a purged callback is not made
again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from ckptd.core.answer_types import BatchStatus
from ckptd.core.errors import InvalidName, MalformedJob
from ckptd.core.names import MAX_NAME_LENGTH, check_name, is_valid_name

BATCH_DIR = "batches"
REDUCE_SUFFIX = "reduce"
SEQ_DIGITS = 6
CALLBACKS = {"then": "success", "on_failure": "failure", "on_complete": "complete",
             REDUCE_SUFFIX: "complete"}
"""Callback keys and when each is due: every job done, one or more failed, always."""


def new_batch_id(now: float) -> str:
    """A fresh batch name: ``B`` + UTC time to the second + 6 random hex digits."""
    import time

    return f"B{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{os.urandom(3).hex()}"


def check_batch(name: str) -> str:
    """Validate a batch name (it prefixes job ids, so it must leave room for them)."""
    check_name(name, "batch name")
    limit = MAX_NAME_LENGTH - SEQ_DIGITS - len(REDUCE_SUFFIX) - 2
    if len(name) > limit:
        raise InvalidName(f"batch name {name[:40]!r}... is too long: at most {limit} "
                          "characters, so that its job ids fit")
    return name


def job_id(batch: str, seq: int) -> str:
    """The id of the ``seq``-th job of a batch."""
    return f"{batch}.{seq:0{SEQ_DIGITS}d}"


def reduce_id(batch: str) -> str:
    """The id of a batch's reduce job (in the ``then`` queue)."""
    return f"{batch}.{REDUCE_SUFFIX}"


def batch_of(job: str) -> str | None:
    """The batch a job id belongs to by its shape (``<batch>.<digits>``), else None."""
    head, dot, tail = job.rpartition(".")
    if dot and tail.isdigit() and len(tail) >= SEQ_DIGITS and is_valid_name(head):
        return head
    return None


@dataclass
class Manifest:
    """What a batch is: its jobs' queue, how many, where the data is, what comes next."""

    batch: str
    queue: str
    total: int
    created: str
    then: str | None = None
    source: str | None = None
    format: str | None = None
    reduced: str | None = None  # when the reduce job was submitted (set after the fact)
    extra: dict[str, object] = field(default_factory=dict)  # unknown keys, kept as they are
    sealed: bool | None = None  # None: a fixed number of jobs (total), as submit-file's
    callbacks: dict[str, str] = field(default_factory=dict)  # key -> queue
    fired: dict[str, str] = field(default_factory=dict)  # key -> when it was created
    context: Any = None  # the producer's JSON, given to every callback as it was passed

    def encode(self) -> bytes:
        """The manifest file's bytes (one line of JSON)."""
        body: dict[str, object] = {
            "batch": self.batch, "queue": self.queue, "total": self.total,
            "created": self.created, "then": self.then, "source": self.source,
            "format": self.format}
        if self.reduced:
            body["reduced"] = self.reduced
        if self.sealed is not None:
            body["sealed"] = self.sealed
        if self.callbacks:
            body["callbacks"] = self.callbacks
        if self.fired:
            body["fired"] = self.fired
        if self.context is not None:
            body["context"] = self.context
        body.update(self.extra)
        return (json.dumps(body) + "\n").encode()

    def open_ended(self) -> bool:
        """Whether its jobs are whoever joins until it is sealed (not a fixed number)."""
        return self.sealed is not None

    def all_callbacks(self) -> dict[str, str]:
        """Every callback, key -> queue (submit-file's ``then`` is the ``reduce``)."""
        found = dict(self.callbacks)
        if self.then:
            found[REDUCE_SUFFIX] = self.then
        return found

    def due(self, done: int, failed: int) -> list[str]:
        """The callbacks due for a batch that ended with ``done`` and ``failed`` jobs and
        were not created yet."""
        made = set(self.fired) | ({REDUCE_SUFFIX} if self.reduced else set())
        due = []
        for key in self.all_callbacks():
            when = CALLBACKS.get(key)
            if key in made or when is None:
                continue
            if when == "complete" or (when == "success" and not failed) or \
                    (when == "failure" and failed):
                due.append(key)
        return due

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse a manifest; raise MalformedJob saying what is wrong."""
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise MalformedJob(f"batch manifest is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise MalformedJob("batch manifest is not a JSON object")
        try:
            known = {"batch", "queue", "total", "created", "then", "source", "format", "reduced",
                     "sealed", "callbacks", "fired", "context"}
            sealed = body.get("sealed")
            manifest = cls(batch=str(body["batch"]), queue=str(body["queue"]),
                           total=int(body.get("total") or 0), created=str(body["created"]),
                           then=body.get("then"), source=body.get("source"),
                           format=body.get("format"), reduced=body.get("reduced"),
                           extra={k: v for k, v in body.items() if k not in known},
                           sealed=None if sealed is None else bool(sealed),
                           callbacks={str(k): str(v) for k, v in
                                      (body.get("callbacks") or {}).items()},
                           fired={str(k): str(v) for k, v in (body.get("fired") or {}).items()},
                           context=body.get("context"))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedJob(f"batch manifest lacks or garbles {exc}") from None
        if not is_valid_name(manifest.batch) or not is_valid_name(manifest.queue) or \
                (manifest.then is not None and not is_valid_name(manifest.then)) or \
                not all(k in CALLBACKS and is_valid_name(q)
                        for k, q in manifest.callbacks.items()):
            raise MalformedJob("batch manifest names are not valid")
        return manifest


def member_of(job_id: str, known: Container[str]) -> str | None:
    """The batch (one of ``known``) an id belongs to by its shape: it begins with
    ``<batch>.`` and is not one of the batch's callbacks; else None."""
    position = job_id.find(".")
    while position > 0:
        head = job_id[:position]
        if head in known:
            return None if job_id[position + 1:] in CALLBACKS else head
        position = job_id.find(".", position + 1)
    return None


def callback_id(batch: str, key: str) -> str:
    """The id of a batch's callback ``key`` (created once, in the callback's queue)."""
    return f"{batch}.{key}"


def seq_of(batch: str, job: str) -> int | None:
    """The position of job id ``job`` in ``batch`` (None when it is not one of its jobs)."""
    head, dot, tail = job.rpartition(".")
    if head == batch and dot and tail.isdigit() and len(tail) >= SEQ_DIGITS:
        return int(tail)
    return None


@dataclass
class BatchProgress:
    """Which jobs of a batch have ended, and how (one entry per ended job, ids only)."""

    manifest: Manifest
    ends: dict[int, str] = field(default_factory=dict)  # seq -> "done" | "failed"
    started_at: float | None = None

    def record(self, job: str, state: str | None) -> bool:
        """Note that job ``job`` ended in ``state`` ("done", "failed"), or with None that it
        is open again (retried); return False when the id is not one of the batch's jobs."""
        seq = seq_of(self.manifest.batch, job)
        if seq is None or not 0 <= seq < self.manifest.total:
            return False
        if state is None:
            self.ends.pop(seq, None)
        else:
            self.ends[seq] = state
        return True

    @property
    def done(self) -> int:
        return sum(1 for state in self.ends.values() if state == "done")

    @property
    def failed(self) -> int:
        return len(self.ends) - self.done

    @property
    def ended(self) -> int:
        return len(self.ends)

    @property
    def complete(self) -> bool:
        """True when every job of the batch has ended."""
        return len(self.ends) >= self.manifest.total

    def listing(self) -> list[list[str]]:
        """``[id, end state]`` of every job of the batch, in order (what a reduce is given)."""
        return [[job_id(self.manifest.batch, seq), self.ends.get(seq, "missing")]
                for seq in range(self.manifest.total)]

    def as_dict(self, now: float) -> BatchStatus:
        """Progress for status: done, failed, open, rate and ETA."""
        total = self.manifest.total
        open_jobs = max(0, total - self.ended)
        elapsed = now - self.started_at if self.started_at else 0.0
        rate = self.ended / elapsed if elapsed > 0 else 0.0
        return {"queue": self.manifest.queue, "total": total, "done": self.done,
                "failed": self.failed, "open": open_jobs, "then": self.manifest.then,
                "reduced": self.manifest.reduced,
                "eta_s": round(open_jobs / rate, 1) if rate > 0 and open_jobs else None}
