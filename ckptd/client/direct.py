"""Submitting on the daemon's host: the client writes the job file into ``pending/`` itself.

A producer on the machine that holds the daemon's local store need not ask the daemon to
write each job: writing it into ``pending/`` (in ``tmp/`` first, then a create-only rename,
synced as the daemon's fsync mode says) is exactly what the daemon would do, and what the
design allows any producer to do. The daemon sees the file through its watcher and runs it.
A submit then costs a few file operations instead of a round trip through the daemon.

The client uses this path only when it is sure it writes into the daemon's own store: the
daemon names its root, fsync mode and defaults in its ``endpoints`` answer, and the root's
lock (``<root>/.ckptd/root.lock``) must name this very daemon (its token) on this host. A
daemon that leads only some queues of a root (``lead``) holds a lock per queue instead
(``<root>/.ckptd/queue-<name>.lock``): the client writes directly only into a queue whose
lock names that daemon, and sends the rest through it (it forwards them to their leader).
Anything else (another host, a bucket, no write permission, a store this user does not own)
goes through the daemon, as before: files this client makes must be the daemon's to move,
which root's are not when the daemon runs as another user (systemd's dynamic user). The
daemon's defaults (attempts per queue, blob threshold) are asked for again every
:data:`REFRESH` seconds, so a reload of its settings reaches the client soon.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ckptd.core.answer_types import EndpointsAnswer, SubmitOffer
from ckptd.core.answers import Submitted
from ckptd.core.config import FsyncMode, QueueSettings, Settings
from ckptd.core.errors import CkptdError, DaemonUnavailable, JobExists
from ckptd.store.admin import StoreAdmin, prepare_submit
from ckptd.store.base import Op, PutNew, Store
from ckptd.store.local.backend import ROOT_LOCK, LocalStore
from ckptd.store.local.locks import lock_holder

log = logging.getLogger(__name__)

REFRESH = 30.0  # seconds between two looks at the daemon's defaults


def submit_settings(store_root: str, settings: Settings, token: str) -> SubmitOffer:
    """What a daemon tells clients so that they can submit into its local store directly
    (part of its ``endpoints`` answer); ``token`` is also in the root's lock (or, with
    ``lead``, in the lock of each queue it leads)."""
    return {"root": store_root, "token": token, "lead": list(settings.lead),
            "fsync": settings.fsync.value,
            "file_mode": settings.file_mode, "dir_mode": settings.dir_mode,
            "max_attempts": settings.max_attempts, "blob_threshold": settings.blob_threshold,
            "queues": {name: q.max_attempts for name, q in settings.queues.items()
                       if q.max_attempts},
            # queues whose ids come from their payloads: only the daemon knows which of
            # their jobs are open, so their submits go through it; so do those whose jobs
            # take their key from the payload (the daemon knows the path)
            "through_daemon": sorted(name for name, q in settings.queues.items()
                                     if q.unique or q.unique_fields or q.key)}


def _owned_by_me(root: str) -> bool:
    """Whether this process runs as the owner of the store (as its daemon does): the files
    and folders it creates there are then the daemon's too."""
    try:
        return os.stat(root).st_uid == os.geteuid()
    except OSError:
        return False


class DirectSubmit:
    """Submits into the daemon's local store when this host holds it (see the module).

    Safe to share between threads (a shared :class:`~ckptd.client.client.Client`): the look
    at the daemon's offer is made under a lock, and a store that another thread may still be
    writing into is not closed when the offer changes, only when the client closes."""

    def __init__(self, ask: Callable[[], EndpointsAnswer]) -> None:
        self._ask = ask  # the daemon's endpoints answer
        self._lock = threading.Lock()
        self._retired: list[Store] = []  # replaced stores, closed with the client
        self._admin: StoreAdmin | None = None
        self._checked_at = float("-inf")
        self.through_daemon: frozenset[str] = frozenset()  # queues never submitted here
        self._lead: set[str] | None = None  # the daemon leads only these queues (lead)
        self._token = ""
        self._queues: dict[str, tuple[bool, float]] = {}  # queue -> (ours, when looked)

    def admin(self, queue: str) -> StoreAdmin | None:
        """The store commands on the daemon's store, or None when ``queue`` of it is not
        reachable here (or is led by another daemon of the root)."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at >= REFRESH:
                self._checked_at = now
                self._queues.clear()
                try:
                    self._admin = self._open(self._admin)
                except DaemonUnavailable:
                    self._checked_at = float("-inf")  # look again at the next submit
                    raise
            return self._admin_for(queue, now)

    def _admin_for(self, queue: str, now: float) -> StoreAdmin | None:
        if self._admin is None or self._lead is None:
            return self._admin
        ours, looked = self._queues.get(queue, (False, float("-inf")))
        if now - looked >= REFRESH:
            holder = lock_holder(self._admin.store.url, f"queue-{queue}") \
                if queue in self._lead else None
            ours = holder is not None and holder.get("host") == os.uname().nodename \
                and holder.get("token") == self._token
            self._queues[queue] = (ours, now)
        return self._admin if ours else None

    def close(self) -> None:
        """Close the stores it opened. Idempotent."""
        with self._lock:
            if self._admin is not None:
                self._retired.append(self._admin.store)
                self._admin = None
            for store in self._retired:
                store.close()
            self._retired.clear()

    def give_up(self, why: Exception) -> None:
        """Stop submitting directly (until the next look), after a failure of this path."""
        log.info("submitting through the daemon from now on: %s", why)
        with self._lock:
            if self._admin is not None:
                self._retired.append(self._admin.store)
            self._admin = None

    def _open(self, current: StoreAdmin | None) -> StoreAdmin | None:
        """The store commands on the store the daemon offers now (the current store kept
        when the offer names the same one)."""
        fresh = self._offer()
        if fresh is None:
            if current is not None:
                self._retired.append(current.store)
            return None
        settings, store = fresh
        if current is not None:
            old = current.store
            if isinstance(old, LocalStore) and (old.root, old.fsync, old.file_mode,
                                                old.dir_mode) == (store.root, store.fsync,
                                                                  store.file_mode,
                                                                  store.dir_mode):
                return StoreAdmin(old, settings)  # the same store, the defaults refreshed
            self._retired.append(old)
        return StoreAdmin(store, settings)

    def _offer(self) -> tuple[Settings, LocalStore] | None:
        try:
            answer = self._ask()
        except DaemonUnavailable:
            raise  # no daemon answered within the timeout: the request would not be either
        except CkptdError:
            return None
        offer = answer.get("submit")
        if not isinstance(offer, Mapping):
            return None
        root = str(offer.get("root", ""))
        lead = offer.get("lead")
        self._lead = {str(q) for q in lead} if isinstance(lead, list) and lead else None
        self._token = str(offer.get("token"))
        if self._lead is None:
            holder = lock_holder(root, ROOT_LOCK) if root and os.path.isdir(root) else None
            if not holder or holder.get("host") != os.uname().nodename \
                    or holder.get("token") != offer.get("token"):
                return None  # not this daemon's store, or not on this host
        elif not os.path.isdir(root):
            return None
        if not os.access(root, os.W_OK | os.X_OK) or not _owned_by_me(root):
            return None
        self.through_daemon = frozenset(str(q) for q in offer.get("through_daemon") or ())
        try:
            settings = Settings(
                root=root, fsync=FsyncMode(offer["fsync"]), file_mode=int(offer["file_mode"]),
                dir_mode=int(offer["dir_mode"]), max_attempts=int(offer["max_attempts"]),
                blob_threshold=int(offer["blob_threshold"]),
                queues={str(q): QueueSettings(max_attempts=int(n))
                        for q, n in dict(offer.get("queues") or {}).items()})
            store = LocalStore(root, settings.fsync, file_mode=settings.file_mode,
                               dir_mode=settings.dir_mode)
        except (KeyError, TypeError, ValueError, CkptdError) as exc:
            log.debug("not submitting directly: %s", exc)
            return None
        return settings, store

    def submit_many(self, admin: StoreAdmin, queue: str, items: list[tuple[str, Any]],
                    now: float, *, max_attempts: int | None = None,
                    time_limit: float | None = None, meta: dict[str, Any] | None = None
                    ) -> list[Submitted]:
        """Create jobs (a new id, payload) in one group of store operations (one flush in
        batch mode); an id found already is returned as it is (a resend). Raises StoreError
        or ValueError (a payload that is not JSON)."""
        ops: list[Op] = []
        for job_id, payload in items:
            ops.extend(prepare_submit(admin.settings, queue, payload, now, job_id=job_id,
                                      fresh=True, max_attempts=max_attempts,
                                      time_limit=time_limit, meta=meta)[1])
        answers = []
        outcomes = admin.store.apply(ops)
        for op, outcome in zip(ops, outcomes):
            if outcome is not None and not isinstance(outcome, JobExists):
                raise outcome
            if isinstance(op, PutNew):
                answers.append(Submitted(op.job_id) if outcome is None else
                               Submitted(op.job_id, created=False, state="pending"))
        return answers
