"""A worker's way to a job's data: straight from the store when this host can reach it,
else through the daemon's control socket.

Payloads too big for the job message, checkpoints too big to inline, ranges of a batch's
source file, other jobs' results and output files. On the daemon's host (or a shared folder,
or a bucket the worker has credentials for) they are read and written directly; anywhere
else they go through the daemon (``fetch`` and ``output`` requests).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from typing import Any

import zmq
from msgspec import UNSET

from ckptd.client.client import Client
from ckptd.codec import decode_job
from ckptd.core.config import Settings, load_settings
from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.store import Store, is_local, open_store, store_from_settings
from ckptd.wire.messages import JobMessage
from ckptd.wire.security import ClientCurve

log = logging.getLogger(__name__)


class JobData:
    """Reads and writes of job data for one worker."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoints: list[str],
                 curve: ClientCurve | None,
                 root: str | None, settings: Settings | None) -> None:
        self._ctx = ctx
        self.ctx = ctx
        self.endpoints = endpoints
        self.curve = curve
        self.root = root
        self.settings = settings  # for a bucket's credentials, endpoint and options
        self.daemon_root: str | None = None  # the daemon's store, as it says in welcome
        self._store: Store | None = None
        self._store_checked = False
        self._lock = threading.Lock()

    def _client(self) -> Client:
        return Client(self.endpoints, timeout=60.0, context=self._ctx, curve=self.curve)

    def payload(self, body: JobMessage) -> Any:
        if body.payload is not UNSET and not body.payload_ref:
            return body.payload
        store = self.direct_store()
        if store is not None:
            try:
                if (body.payload_ref or "").startswith("blobs/"):
                    return json.loads(store.read_blob(body.queue, body.id, "payload"))
                raw = store.read(body.queue, State.CLAIMED, body.id)
                return decode_job(raw)["payload"]
            except (CkptdError, ValueError) as exc:
                log.debug("direct read failed (%s); fetching through the daemon", exc)
        return self.fetch(body, "payload")

    def state(self, body: JobMessage) -> Any:
        if not body.state_ref:
            return body.state
        store = self.direct_store()
        if store is not None:
            try:
                raw = store.read_checkpoint(body.queue, body.id)
                if raw is not None:
                    return json.loads(raw).get("state")
            except (CkptdError, ValueError):
                pass
        return self.fetch(body, "state")

    def source_range(self, queue: str, batch: str, start: int, end: int) -> bytes:
        store = self.direct_store()
        if store is not None:
            try:
                return bytes(store.read_blob_range(queue, batch, "source", start, end))
            except CkptdError as exc:
                log.debug("direct read failed (%s); fetching through the daemon", exc)
        client = self._client()
        try:
            answer = client.request("fetch", {"queue": queue, "id": batch, "what": "source",
                                              "start": start, "end": end}, timeout=60.0)
        finally:
            client.close()
        return str(answer["text"]).encode()

    def write_output(self, queue: str, name: str, data: bytes) -> str:
        store = self.direct_store()
        if store is not None:
            return str(store.put_output(queue, name, data))
        client = self._client()
        try:
            answer = client.request("output", {"queue": queue, "name": name,
                                               "text": data.decode()}, timeout=60.0)
        finally:
            client.close()
        return str(answer["location"])

    def result_of(self, queue: str, job_id: str) -> Any:
        store = self.direct_store()
        if store is not None:
            try:
                job = decode_job(store.read(queue, State.DONE, job_id), queue, job_id)
                if job.get("result_ref"):
                    return json.loads(store.read_blob(queue, job_id, "result"))
                return job.get("result")
            except (CkptdError, ValueError) as exc:
                log.debug("direct read failed (%s); fetching through the daemon", exc)
        client = self._client()
        try:
            return client.result(queue, job_id)
        finally:
            client.close()

    def fetch(self, body: JobMessage, what: str) -> Any:
        client = self._client()
        try:
            return client.fetch(body.queue, body.id, what)
        finally:
            client.close()

    def direct_store(self) -> Store | None:
        """The store, when this host can read it directly (else payloads come by fetch)."""
        if self._store_checked:
            return self._store
        with self._lock:
            if self._store_checked:
                return self._store
            self._store_checked = True
            root = self.root or self.daemon_root
            if root:
                try:
                    if is_local(root) and not os.path.isdir(root):
                        raise CkptdError(f"{root} is not on this host")
                    if is_local(root):
                        self._store = open_store(root)
                    else:  # a bucket: with this worker's own credentials and endpoint
                        self._store = self._open_bucket(root)
                except (CkptdError, OSError, ImportError, ValueError) as exc:
                    log.info("reading payloads through the daemon (store %s: %s)", root, exc)
            return self._store

    def _open_bucket(self, root: str) -> Store:
        """Open the daemon's bucket with this worker's settings; fail when it cannot read."""
        settings = self.settings if self.settings is not None else load_settings()
        store = store_from_settings(dataclasses.replace(settings, root=root))
        store.probe_access()  # no credentials, or no access: fetch through the daemon instead
        log.info("reading payloads straight from %s", root)
        return store
