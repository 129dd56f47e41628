"""Batches: many jobs made together (map), and what happens when they have all ended (reduce).

A batch has a manifest, ``<queue>/batches/<batch>.json``, that ``cat`` can read::

    {"batch": "B20261127T1902-3fa9c1", "queue": "price", "total": 300, "then": "pricelist",
     "source": "blobs/B20261127T1902-3fa9c1.source", "format": "csv", "created": "..."}

Its jobs are ``<batch>.<n>`` (n = 000000, 000001, ...), so membership follows from the id and
a repeated submit of the same batch makes no second job. When every job of the batch has
ended (done or failed) and the manifest names a ``then`` queue, the daemon submits one reduce
job there, ``<batch>.reduce``, whose payload lists the batch's jobs and their end states.
Its id is fixed, so submitting it again after a crash is a no-op: it runs exactly once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ckptd.core.errors import InvalidName, MalformedJob
from ckptd.core.names import MAX_NAME_LENGTH, check_name, is_valid_name

BATCH_DIR = "batches"
REDUCE_SUFFIX = "reduce"
SEQ_DIGITS = 6


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
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The manifest file's bytes (one line of JSON)."""
        body: dict[str, Any] = {"batch": self.batch, "queue": self.queue, "total": self.total,
                                "created": self.created, "then": self.then,
                                "source": self.source, "format": self.format}
        if self.reduced:
            body["reduced"] = self.reduced
        body.update(self.extra)
        return (json.dumps(body) + "\n").encode()

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
            known = {"batch", "queue", "total", "created", "then", "source", "format", "reduced"}
            manifest = cls(batch=str(body["batch"]), queue=str(body["queue"]),
                           total=int(body["total"]), created=str(body["created"]),
                           then=body.get("then"), source=body.get("source"),
                           format=body.get("format"), reduced=body.get("reduced"),
                           extra={k: v for k, v in body.items() if k not in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedJob(f"batch manifest lacks or garbles {exc}") from None
        if not is_valid_name(manifest.batch) or not is_valid_name(manifest.queue) or \
                (manifest.then is not None and not is_valid_name(manifest.then)):
            raise MalformedJob("batch manifest names are not valid")
        return manifest


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

    def as_dict(self, now: float) -> dict[str, Any]:
        """Progress for status: done, failed, open, rate and ETA."""
        total = self.manifest.total
        open_jobs = max(0, total - self.ended)
        elapsed = now - self.started_at if self.started_at else 0.0
        rate = self.ended / elapsed if elapsed > 0 else 0.0
        return {"queue": self.manifest.queue, "total": total, "done": self.done,
                "failed": self.failed, "open": open_jobs, "then": self.manifest.then,
                "reduced": self.manifest.reduced,
                "eta_s": round(open_jobs / rate, 1) if rate > 0 and open_jobs else None}
