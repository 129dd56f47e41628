"""Batches on a store, with no daemon: submit-file (a file split into one job per chunk of
records), and what is left when one stops halfway. Mixed into
:class:`ckptd.store.admin.StoreAdmin`; the daemon plans its own submit-files with
:meth:`StoreBatches.plan_file` too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckptd.codec import encode_job
from ckptd.core import batches, jobs, sources
from ckptd.core.answers import SubmittedFile
from ckptd.core.config import Settings
from ckptd.core.errors import CkptdError, JobExists, JobNotFound, MalformedJob
from ckptd.core.job_keys import check_key
from ckptd.core.names import check_queue
from ckptd.core.states import STATES, State
from ckptd.core.timefmt import utc_iso
from ckptd.store import recovery
from ckptd.store.base import Delete, Op, PutBlob, PutManifest, PutNew, Store

SUBMITTING = "submitting"
"""The manifest field of a batch whose submit-file has not made every job yet."""


def raise_first(outcomes: list[Any]) -> None:
    """Raise the first error of a group of store outcomes, if any."""
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


@dataclass
class FilePlan:
    """The store ops of a submit-file, in the order they must be applied.

    ``first`` (the source blob, and the manifest when the batch is new) must succeed before
    ``groups`` (the jobs, create-only), so that whatever a job refers to exists; then
    ``complete`` (when set) replaces a manifest marked as still being submitted.
    """

    answer: SubmittedFile
    first: list[Op]
    groups: list[list[Op]]
    complete: PutManifest | None = None  # the manifest once every job is made


class StoreBatches:
    """The batch part of the store commands (a mixin of StoreAdmin)."""

    store: Store

    @property
    def settings(self) -> Settings:
        raise NotImplementedError  # StoreAdmin's

    clock: Callable[[], float]

    def plan_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                  batch: str | None = None, then: str | None = None,
                  max_attempts: int | None = None, source_name: str | None = None,
                  group: int = 500, marked: bool = False, key: str | None = None
                  ) -> FilePlan:
        """Split a file into the ops of :meth:`submit_file` without applying them.

        ``marked``: a new manifest says ``"submitting": true`` until the caller has made
        every job (then it writes the plan's ``complete``), so that fsck can tell a
        submit-file that stopped halfway."""
        check_queue(queue)
        key = check_key(key) if key is not None else None
        if then is not None:
            check_queue(then)
        if fmt not in sources.FORMATS:
            raise ValueError(f"unknown format {fmt!r}: expected one of "
                             f"{', '.join(sources.FORMATS)}")
        now = self.clock()
        batch = batches.check_batch(batch) if batch else batches.new_batch_id(now)
        header, start = sources.header_of(data, fmt)
        chunks = list(sources.split(data, fmt, chunk, start))
        if not chunks:
            raise ValueError("the file holds no records")
        records = sum(c.count for c in chunks)
        manifest = batches.Manifest(batch, queue, len(chunks), utc_iso(now), then=then,
                                    source=f"blobs/{batch}.source", format=fmt,
                                    extra={"records": records, "chunk": chunk,
                                           "file": source_name})
        try:
            existing = batches.Manifest.decode(self.store.read_manifest(queue, batch))
        except JobNotFound:
            existing = None
        if existing is not None and existing.total != manifest.total:
            raise JobExists(queue, batch, "batches")
        first: list[Op] = [PutBlob(queue, batch, "source", data)]
        if existing is None and marked:
            marking = dataclasses.replace(manifest, extra={**manifest.extra, SUBMITTING: True})
            first.append(PutManifest(queue, batch, marking.encode()))
        elif existing is None:
            first.append(PutManifest(queue, batch, manifest.encode()))
        budget = max_attempts or self.settings.max_attempts_for(queue)
        groups: list[list[Op]] = []
        for begin in range(0, len(chunks), group):
            ops: list[Op] = []
            for seq in range(begin, min(len(chunks), begin + group)):
                piece = chunks[seq]
                payload = {"source": manifest.source, "format": fmt, "start": piece.start,
                           "end": piece.end, "first": piece.first, "count": piece.count}
                if header is not None:
                    payload["header"] = header
                job = jobs.new_job(queue, batches.job_id(batch, seq), payload, now,
                                   max_attempts=budget, batch=batch, key=key)
                ops.append(PutNew(queue, job["id"], encode_job(job), check_other_states=True,
                                  key=key or ""))
            groups.append(ops)
        complete = None
        if existing is None and marked:
            complete = PutManifest(queue, batch, manifest.encode())
        elif existing is not None and SUBMITTING in existing.extra:  # finishing one that stopped
            extra = {k: v for k, v in existing.extra.items() if k != SUBMITTING}
            complete = PutManifest(queue, batch,
                                   dataclasses.replace(existing, extra=extra).encode())
        return FilePlan(SubmittedFile(batch, len(chunks), records, 0, fmt), first, groups,
                        complete)

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    key: str | None = None) -> SubmittedFile:
        """Store a file once and submit one job per ``chunk`` records referring to its range.

        The jobs are ``<batch>.<n>``; the batch gets a manifest (with ``then``, the queue of
        its reduce job). Submitting the same batch again creates only what is missing, so an
        interrupted submit-file can simply be run again with the same ``--batch``.
        """
        plan = self.plan_file(queue, data, fmt=fmt, chunk=chunk, batch=batch, then=then,
                              max_attempts=max_attempts, source_name=source_name, marked=True,
                              key=key)
        # The data first, then the manifest, then the jobs: whatever a job refers to exists.
        raise_first(self.store.apply(plan.first))
        created = 0
        done = 0
        try:
            for ops in plan.groups:
                for outcome in self.store.apply(ops):
                    if outcome is None:
                        created += 1
                    elif not isinstance(outcome, JobExists):
                        raise outcome
                done += len(ops)
                if progress is not None:
                    progress(done, plan.answer.jobs)
        except BaseException as exc:  # Ctrl-C or a store error: say what is left, and where
            exc.add_note(self._stopped_batch(queue, plan))
            raise
        if plan.complete is not None:
            raise_first(self.store.apply([plan.complete]))
        return dataclasses.replace(plan.answer, created=created)

    def _stopped_batch(self, queue: str, plan: FilePlan) -> str:
        """Remove the batch a submit-file stopped before its first job (made by it); say
        what is left of it otherwise, and how to finish it."""
        batch, total = plan.answer.batch, plan.answer.jobs
        try:
            new = any(isinstance(op, PutManifest) for op in plan.first)
            if new and self.abandon_batch(queue, batch):
                return f"no job of batch {batch} was made, and nothing is left of it"
            made = len(self.batch_jobs(queue, batch))
        except CkptdError as exc:
            return f"batch {batch} may be incomplete ({exc}): see 'ckptd fsck'"
        return (f"batch {batch} has {made} of its {total} jobs: run the same command again "
                f"with --batch {batch} to make the rest ('ckptd fsck' lists it meanwhile)")

    def batch_jobs(self, queue: str, batch: str) -> set[str]:
        """The ids of a batch's jobs that exist, in any state (its reduce job left out)."""
        found: set[str] = set()
        for state in STATES:
            found.update(i for i in self.store.ids(queue, state)
                         if batches.batch_of(i) == batch)
        return found

    def abandon_batch(self, queue: str, batch: str) -> bool:
        """Remove a batch that has no job (its manifest and its data): what an interrupted
        submit-file left before its first job. Returns False, removing nothing, when some
        job of it exists (its data is needed then)."""
        if self.batch_jobs(queue, batch):
            return False
        # The data first: a manifest without data is found by fsck, data without a
        # manifest would look like any orphan blob.
        self.store.apply([Delete(queue, State.DONE, batch)])  # removes blobs/<batch>.*
        self.store.delete_manifest(queue, batch)
        return True

    def _incomplete_batches(self, queue: str, ids: dict[State, list[str]], repair: bool
                            ) -> list[recovery.Finding]:
        """Batches whose submit-file stopped before it made every job (their manifests
        still say ``submitting``): their reduce never comes. One without any job is removed
        by a repair."""
        names = self.store.manifests(queue)
        if not names:
            return []
        made: dict[str, int] = {}
        for state_ids in ids.values():
            for job_id in state_ids:
                batch = batches.batch_of(job_id)
                if batch is not None:
                    made[batch] = made.get(batch, 0) + 1
        found = []
        for name in names:
            try:
                manifest = batches.Manifest.decode(self.store.read_manifest(queue, name))
            except (JobNotFound, MalformedJob):
                continue
            count = made.get(name, 0)
            if SUBMITTING not in manifest.extra or count >= manifest.total:
                continue  # (jobs that retention or purge removed are no loss)
            fix = f"run submit-file again with --batch {name} (the same file) to make the rest"
            if count == 0:
                repaired = repair and self.abandon_batch(queue, name)
                fix = "fsck --repair removes it (its manifest and data)"
            else:
                repaired = False
            found.append(recovery.Finding(
                queue, "incomplete-batch", f"batches/{name}.json",
                f"{count} of its {manifest.total} jobs exist (a submit-file that stopped): "
                f"its reduce never comes; {fix}", repaired))
        return found

