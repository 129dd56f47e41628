"""Work that waits, read from the store with no daemon: signals, what a waiting job still
waits for, a job's graph, and what ``fsck`` finds in it.

Everything here reads the files (the truth): a job's parents are its ``after``, its
children the jobs whose ids are ``<id>.<key>`` (in any queue), its dependents the waiting
jobs that name it, its batch the manifest its id begins with. A daemon answers ``graph``
with the same code. Mixed into :class:`ckptd.store.admin.StoreAdmin`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ckptd.codec import decode_job
from ckptd.core import batches, waits
from ckptd.core.answer_types import BatchStatus, GraphBatch, GraphNode, SignalAnswer, WaitsInfo
from ckptd.core.errors import CkptdError, InvalidName, JobNotFound, MalformedJob
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.states import OPEN, STATES, State
from ckptd.store.base import PutSignal, Store
from ckptd.store.recovery import Finding

MAX_DEPTH = 3  # levels of parents and children ``graph`` follows by default
MAX_NODES = 500  # a graph shows at most this many jobs (the rest are counted)


class StoreGraphs:
    """The work-that-waits part of the store commands (a mixin of StoreAdmin)."""

    store: Store
    clock: Callable[[], float]

    # -- signals ---------------------------------------------------------------------------

    def signal(self, queue: str, job_id: str, name: str, data: Any = None) -> SignalAnswer:
        """Write the signal ``name`` for a job (``<queue>/signals/<id>.<name>.json``); a
        daemon running on the store wakes the job if it waits for it."""
        check_queue(queue)
        check_job_id(job_id)
        waits.check_signal(name)
        states = self.store.find(queue, job_id)
        if not states:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r} to signal")
        raw = b"" if data is None else json.dumps(data).encode()
        outcome = self.store.apply([PutSignal(queue, job_id, name, raw)])[0]
        if outcome is not None:
            raise outcome
        return {"queue": queue, "id": job_id, "signal": name, "state": states[-1].value}

    def check_parents(self, queue: str, after: object) -> list[str]:
        """The parents of a submit, checked (``queue/id``, each existing); raise JobNotFound
        for one that does not exist."""
        refs = waits.check_refs(after, queue)
        for parent in refs:
            if self._state_of(parent) is None:
                raise waits.no_parent(parent)
        return refs

    def batches_progress(self, queue: str) -> dict[str, BatchStatus]:
        """Progress of the queue's batches, counted from a listing (no rate, no ETA)."""
        found: dict[str, BatchStatus] = {}
        names = self.store.manifests(queue)
        ended = {state: self.store.ids(queue, state) for state in (State.DONE, State.FAILED)
                 } if names else {}
        for name in names:
            try:
                progress = batches.BatchProgress(
                    batches.Manifest.decode(self.store.read_manifest(queue, name)))
            except (JobNotFound, MalformedJob):
                continue
            for state in (State.DONE, State.FAILED):
                for job_id in ended[state]:
                    if job_id.startswith(name):
                        progress.record(job_id, state.value)
            found[name] = progress.as_dict(self.clock())
        return found

    # -- what a waiting job waits for ------------------------------------------------------

    def _state_of(self, ref: str) -> str | None:
        queue, job_id = waits.split_ref(ref)
        try:
            found = self.store.find(queue, job_id)
        except (CkptdError, InvalidName):
            return None
        return found[-1].value if found else None

    def waits_info(self, queue: str, job: Mapping[str, object]) -> WaitsInfo | None:
        """What a job's file says it waits for, with the state each job waited on is in
        now (``show`` adds it; ``explain`` says it)."""
        try:
            wait = waits.wait_of(job)
        except InvalidName as exc:
            return {"error": str(exc)}
        if not wait.refs() and "wait" not in job:
            return None
        jobs_now = {r: wait.ended.get(r) or self._state_of(r) or "missing" for r in wait.refs()}
        present = [s.name for s in self.store.signals(queue) if s.job_id == job.get("id")]
        spec = job.get("wait")  # as wait_of reads it: anything but a dict is no wait record
        wanted = spec if isinstance(spec, dict) else {}
        return {"parents": {r: jobs_now[r] for r in wait.after},
                "children": {r: jobs_now[r] for r in wait.children},
                "open": [r for r, s in jobs_now.items() if s in {x.value for x in OPEN}],
                "missing": [r for r, s in jobs_now.items() if s == "missing"],
                "rule": wait.rule, "signals_wanted": list(wait.signals),
                "signals_present": present,
                "until": wanted.get("until"),
                "timeout": wanted.get("timeout"),
                "since": wanted.get("since")}

    # -- the graph -------------------------------------------------------------------------

    def graph(self, queue: str, job_id: str, depth: int | None = None) -> GraphNode:
        """A job's parents, children, dependents and batch, with their states, as nested
        nodes (``ckptd graph`` draws them as a tree)."""
        check_queue(queue)
        check_job_id(job_id)
        depth = MAX_DEPTH if depth is None else max(0, min(depth, 20))
        if not self.store.find(queue, job_id):
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        self._seen: set[str] = set()
        queues = self.store.queues()
        root = self._node(queues, waits.ref(queue, job_id), depth, "both")
        root["batch"] = self._batch(queues, queue, job_id, root.get("batch_name"))
        return root

    def _node(self, queues: list[str], ref: str, depth: int, way: str) -> GraphNode:
        queue, job_id = waits.split_ref(ref)
        job = self._read(queue, job_id)
        node: GraphNode = {"job": ref, "state": str(job.pop("_state", "missing")) if job
                           else "missing"}
        if ref in self._seen or len(self._seen) >= MAX_NODES:
            node["seen"] = True  # drawn once already (or the graph is too big)
            return node
        self._seen.add(ref)
        if job:
            batch, woken = job.get("batch"), job.get("woken")
            node["batch_name"] = batch if isinstance(batch, str) else None
            if isinstance(woken, dict):
                node["woken"] = woken.get("reason")
            if isinstance(job.get("wait"), dict):
                node["waits"] = self.waits_info(queue, job)
        if depth <= 0:
            return node
        if job and way in ("both", "up"):
            after = _named(job.get("after"))
            node["parents"] = [self._node(queues, waits.ref(*waits.split_ref(str(r)))
                                          if "/" in str(r) else waits.ref(queue, str(r)),
                                          depth - 1, "up") for r in after]
        if way in ("both", "down"):
            node["children"] = [self._node(queues, r, depth - 1, "down")
                                for r in self._children(queues, job_id)]
            node["dependents"] = [self._node(queues, r, depth - 1, "down")
                                  for r in self._dependents(queues, ref)]
        return node

    def _read(self, queue: str, job_id: str) -> dict[str, object] | None:
        try:
            states = self.store.find(queue, job_id)
        except (CkptdError, InvalidName):
            return None
        for state in reversed(states):
            try:
                job = decode_job(self.store.read(queue, state, job_id), queue, job_id)
            except (JobNotFound, MalformedJob):
                continue
            return {**job, "_state": state.value}
        return {"_state": states[-1].value} if states else None

    def _children(self, queues: list[str], job_id: str) -> list[str]:
        """The jobs whose ids are ``<id>.<key>``, in any queue (one level down)."""
        prefix = job_id + "."
        found = []
        for queue in queues:
            for state in STATES:
                for child in self.store.ids_after(queue, state, job_id):
                    if child < prefix:
                        continue
                    if not child.startswith(prefix):
                        break
                    if "." not in child[len(prefix):]:
                        found.append(waits.ref(queue, child))
        return sorted(set(found))

    def _dependents(self, queues: list[str], ref: str) -> list[str]:
        """The waiting jobs that name ``ref`` as a parent."""
        found = []
        for queue in queues:
            for job_id in self.store.ids(queue, State.WAITING):
                job = self._read(queue, job_id) or {}
                if ref in [str(r) if "/" in str(r) else waits.ref(queue, str(r))
                           for r in _named(job.get("after"))]:
                    found.append(waits.ref(queue, job_id))
        return found

    def _batch(self, queues: list[str], queue: str, job_id: str, tag: object
               ) -> GraphBatch | None:
        """The batch the job is (its name) or belongs to, with its jobs counted by state."""
        names = [job_id, tag] + [job_id[:i] for i, c in enumerate(job_id) if c == "."]
        for home in queues:
            for name in names:
                if not isinstance(name, str) or not name:
                    continue
                try:
                    manifest = batches.Manifest.decode(self.store.read_manifest(home, name))
                except (JobNotFound, MalformedJob, InvalidName):
                    continue
                counts: dict[str, int] = {}
                prefix = name + "."
                for q in queues:
                    for state in STATES:
                        counts[state.value] = counts.get(state.value, 0) + sum(
                            1 for i in self.store.ids_after(q, state, name)
                            if i.startswith(prefix) and batches.member_of(i, {name}) == name)
                return {"batch": name, "queue": home, "sealed": manifest.sealed,
                        "callbacks": manifest.all_callbacks(),
                        "fired": manifest.fired or ({"reduce": manifest.reduced}
                                                    if manifest.reduced else {}),
                        "jobs": counts}
        return None

    # -- fsck ------------------------------------------------------------------------------

    def graph_findings(self, queue: str, ids: dict[State, list[str]]) -> list[Finding]:
        """What keeps waiting jobs of ``queue`` from ever going on: a job waited on that
        exists nowhere (an edge to nowhere), waits that wait on each other (a cycle), a wait
        on a job that can itself never end, signals for jobs that do not exist."""
        found: list[Finding] = []
        waiting = set(ids[State.WAITING])
        for job_id in sorted(waiting):
            job = self._read(queue, job_id)
            if not job or "_state" not in job or job["_state"] != State.WAITING.value:
                continue
            try:
                wait = waits.wait_of(job)
            except InvalidName as exc:
                found.append(Finding(queue, "bad-wait", f"waiting/{job_id}.json",
                                     f"{exc}; fix its file, or ckptd cancel {queue} {job_id}"))
                continue
            for parent in wait.open_refs():
                state = self._state_of(parent)
                if state is None:
                    found.append(Finding(queue, "edge-to-nowhere", f"waiting/{job_id}.json",
                                         f"waits for {parent}, which is in no state: it can "
                                         f"never end. Cancel the job (ckptd cancel {queue} "
                                         f"{job_id}) or remove {parent} from its after"))
            cycle = self._cycle(waits.ref(queue, job_id))
            if cycle:
                found.append(Finding(queue, "wait-cycle", f"waiting/{job_id}.json",
                                     "waits on itself through " + " -> ".join(cycle) +
                                     f": nothing can end it. Cancel one of them (ckptd cancel "
                                     f"{queue} {job_id})"))
        jobs_here = {i for listed in ids.values() for i in listed}
        for item in self.store.signals(queue):
            if item.job_id not in jobs_here:
                found.append(Finding(queue, "orphan-signal",
                                     f"signals/{item.job_id}.{item.name}.json",
                                     "signals a job that is in no state: remove the file "
                                     "(or check the id)"))
        return found

    def _cycle(self, start: str, limit: int = 200) -> list[str]:
        """The path by which ``start`` waits on itself through waiting jobs, or []."""
        path: list[str] = []
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack and len(seen) < limit:
            ref, path = stack.pop()
            queue, job_id = waits.split_ref(ref)
            job = self._read(queue, job_id)
            if not job or job.get("_state") != State.WAITING.value:
                continue
            try:
                wait = waits.wait_of(job)
            except InvalidName:
                continue
            for parent in wait.open_refs():
                if parent == start:
                    return path + [start]
                if parent not in seen:
                    seen.add(parent)
                    stack.append((parent, path + [parent]))
        return []


def _named(value: object) -> list[object]:
    """The items of a file's ``after`` (a list of refs unless edited by hand)."""
    return list(value) if isinstance(value, Iterable) else []
