"""The Python client of a running daemon: submit jobs, read status, wait for results.

    from ckptd import Client
    client = Client("tcp://10.0.0.5:5550")
    job_id = client.submit("price", {"sku": "A-1"})
    client.wait("price", job_id, timeout=60)      # "done" or "failed"

A client talks to the daemon's control socket with a DEALER socket, one request at a time;
a request that times out closes the socket, so a late reply can never be taken for the answer
to the next request. Requests that time out move on to the next address when several are
given (a standby daemon). Submits are safe to retry: the
client chooses the id, so a repeated submit finds the job instead of making a second one.
A Client is not thread-safe: give each thread its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import zmq

from ckptd.core.answers import Submitted, SubmittedFile
from ckptd.core.edits import who_am_i
from ckptd.core.errors import (
    CkptdError,
    DaemonUnavailable,
    ProtocolError,
    RemoteError,
    Standby,
    TakingOver,
    WaitTimeout,
    remote_error,
)
from ckptd.core.ids import new_id
from ckptd.core.names import check_job_id, check_queue
from ckptd.core.states import State
from ckptd.wire import protocol
from ckptd.wire.security import ClientCurve

DEFAULT_TIMEOUT = 10.0


class Client:
    """A connection to a daemon's control socket (or to a list of them, tried in turn)."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context[Any] | None = None, curve: ClientCurve | None = None
                 ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise CkptdError("no daemon address given: expected tcp://HOST:PORT")
        self.endpoints = endpoints
        self.timeout = timeout
        self.curve = curve
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._sock: zmq.Socket[bytes] | None = None
        self._current = 0

    @property
    def endpoint(self) -> str:
        """The address in use now."""
        return self.endpoints[self._current]

    def _socket(self) -> zmq.Socket[bytes]:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue requests for a daemon not there
            sock.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)  # as the worker's socket
            if self.curve is not None:
                self.curve.apply_client(sock)
            sock.connect(self.endpoint)
            self._sock = sock
        return self._sock

    def _reset(self, rotate: bool) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if rotate and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)

    def request(self, kind: str, body: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """Send one control request and return the reply body.

        Raises RemoteError when the daemon answers with an error, DaemonUnavailable when no
        daemon answers in time (every address is tried once). A daemon that is taking the
        leader lease (``TakingOver``: it applied nothing) is asked again until the timeout.
        """
        frames = protocol.request(kind.encode(), body or {})
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        pause = 0.05
        taking_over: RemoteError | None = None
        while True:
            try:
                return self._request_once(frames, wait)
            except TakingOver as exc:
                assert isinstance(exc, RemoteError)
                taking_over = exc
            except DaemonUnavailable:
                if taking_over is None:
                    raise
                raise taking_over from None  # the time ran out while it took over
            left = deadline - time.monotonic()
            if left <= pause:
                raise taking_over
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            wait = deadline - time.monotonic()

    def _request_once(self, frames: list[bytes], wait: float) -> dict[str, Any]:
        standby: RemoteError | None = None
        for _ in range(len(self.endpoints)):
            sock = self._socket()
            started = time.monotonic()
            sock.setsockopt(zmq.SNDTIMEO, max(1, int(wait * 1000)))
            try:
                sock.send_multipart(frames)  # waits up to the timeout for a connection
            except zmq.Again:
                self._reset(rotate=True)
                continue
            left = max(0.0, wait - (time.monotonic() - started))
            if sock.poll(int(left * 1000), zmq.POLLIN):
                reply = sock.recv_multipart()
                try:
                    ok, answer = protocol.decode_reply(reply)
                except ProtocolError as exc:
                    raise CkptdError(f"the daemon at {self.endpoint} sent a bad reply: "
                                     f"{exc}") from None
                if ok:
                    return answer
                error = remote_error(str(answer.get("error", "error")),
                                     str(answer.get("message", "the daemon refused")),
                                     int(answer.get("exit_code", 1)))
                if isinstance(error, Standby) and len(self.endpoints) > 1:
                    if standby is None or isinstance(error, TakingOver):  # that one may retry
                        standby = error  # a standby daemon: the active one is another address
                    self._reset(rotate=True)
                    continue
                raise error
            self._reset(rotate=True)
        if standby is not None:
            raise standby
        raise DaemonUnavailable(f"no answer from the daemon at {', '.join(self.endpoints)} "
                                f"within {wait:g}s: is 'ckptd serve' running there, and is "
                                "the address (and key) right?")

    # -- producing -------------------------------------------------------------------------

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               batch: str | None = None, time_limit: float | None = None) -> str:
        """Submit a job and return its id once the daemon has stored it durably.

        ``time_limit`` (seconds) bounds each attempt of this job, over the queue's own
        (README "Time limits").
        """
        return self.submit_job(queue, payload, job_id=id, max_attempts=max_attempts,
                               delay=delay, batch=batch, time_limit=time_limit).id

    def submit_job(self, queue: str, payload: Any = None, *, job_id: str | None = None,
                   max_attempts: int | None = None, delay: float | None = None,
                   if_exists: str = "error", batch: str | None = None,
                   time_limit: float | None = None) -> Submitted:
        """Submit a job; return its id and whether this call created it."""
        check_queue(queue)
        generated = job_id is None
        body: dict[str, Any] = {"queue": queue, "payload": payload,
                                "id": new_id() if generated else check_job_id(job_id),
                                "if_exists": "return" if generated else if_exists}
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        if delay:
            body["delay"] = delay
        if batch is not None:
            body["batch"] = batch
        if time_limit is not None:
            body["time_limit"] = time_limit
        if generated:
            body["fresh"] = True
        for attempt in range(3):
            try:
                answer = self.request("submit", body)
                return Submitted(answer["id"], bool(answer.get("created", True)),
                                 str(answer.get("state", State.PENDING.value)))
            except DaemonUnavailable:
                if attempt == 2:
                    raise
                body["fresh"] = False  # it may have arrived: look before creating again
        raise AssertionError("unreachable")

    def submit_file(self, queue: str, data: bytes, *, fmt: str = "lines", chunk: int = 1000,
                    batch: str | None = None, then: str | None = None,
                    max_attempts: int | None = None, source_name: str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SubmittedFile:
        """Send a file to the daemon in parts and have it submitted as one batch, as
        :meth:`ckptd.admin.StoreAdmin.submit_file` does on the store (same answer)."""
        from ckptd.wire.uploads import PART_BYTES, encode_part

        check_queue(queue)
        token = f"up-{os.urandom(8).hex()}"
        for offset in range(0, max(1, len(data)), PART_BYTES):
            part = data[offset:offset + PART_BYTES]
            self.request("upload", {"upload": token, "offset": offset,
                                    "data": encode_part(part)})
            if progress is not None:
                progress(offset + len(part), len(data))
        answer = self.request("submit_file", {
            "upload": token, "size": len(data), "queue": queue, "format": fmt, "chunk": chunk,
            "batch": batch, "then": then, "max_attempts": max_attempts,
            "source_name": source_name}, timeout=max(self.timeout, 120.0))
        return SubmittedFile(**{k: answer[k] for k in ("batch", "jobs", "records", "created",
                                                       "format")})

    def submit_many(self, queue: str, payloads: list[Any], ids: list[str] | None = None
                    ) -> list[str]:
        """Submit many jobs in one request; return their ids (in order).

        With ``ids`` (one per payload) a repeated call returns the jobs made by the first
        one instead of making more, so a request that timed out can simply be sent again.
        """
        check_queue(queue)
        if ids is not None and len(ids) != len(payloads):
            raise ValueError("give one id per payload")
        fresh = ids is None
        items = [{"id": new_id() if ids is None else check_job_id(ids[n]), "payload": p,
                  "fresh": fresh, "if_exists": "return"} for n, p in enumerate(payloads)]
        answer = self.request("submit_many", {"queue": queue, "jobs": items})
        ids = answer["ids"]
        errors = [i for i in ids if isinstance(i, dict)]
        if errors:
            raise CkptdError(f"{len(errors)} of {len(ids)} jobs were refused: "
                             f"{errors[0].get('error')}")
        return [str(i) for i in ids]

    # -- looking ---------------------------------------------------------------------------

    def status(self, queue: str | None = None) -> dict[str, Any]:
        """Counts per state per queue (from the daemon's index), workers and drop counters."""
        return self.request("status", {"queue": queue} if queue else {})

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the daemon's name; raise DaemonUnavailable if it does not answer."""
        return self.request("ping", {}, timeout=timeout)

    def show(self, queue: str, job_id: str) -> dict[str, Any]:
        """The job's state, file, checkpoint and (when claimed) its lease."""
        return self.request("show", {"queue": queue, "id": job_id})

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """(state, id) of the queue's jobs."""
        answer = self.request("ls", {"queue": queue, "state": state.value if state else None},
                              timeout=max(self.timeout, 60.0))
        return [(State(s), i) for s, i in answer["jobs"]]

    def result(self, queue: str, job_id: str) -> Any:
        """The result of a done job (read from its blob when it is not inline)."""
        return self.request("fetch", {"queue": queue, "id": job_id, "what": "result"})["result"]

    def fetch(self, queue: str, job_id: str, what: str) -> Any:
        """Fetch a job's ``payload`` or checkpoint ``state`` through the daemon."""
        return self.request("fetch", {"queue": queue, "id": job_id, "what": what},
                            timeout=max(self.timeout, 60.0))[what]

    def wait(self, queue: str, job_id: str, timeout: float = 60.0) -> str:
        """Wait until a job is done or failed; return that state.

        Raises WaitTimeout when it has not ended within ``timeout`` seconds.
        """
        answer = self.wait_many(queue, [job_id], timeout)
        return str(answer["states"][job_id])

    def wait_many(self, queue: str, job_ids: list[str] | None, timeout: float = 60.0
                  ) -> dict[str, Any]:
        """Wait for several jobs (or, with None, every open job of the queue) to end."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            chunk = min(left, 30.0)
            answer = self.request("wait", {"queue": queue, "ids": job_ids, "timeout": chunk},
                                  timeout=chunk + self.timeout)
            if not answer.get("timed_out"):
                return answer
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{len(answer.get('open', [])) if job_ids else answer['open']}"
                                  f" job(s) of {queue!r} still open after {timeout:g}s")

    # -- repairing -------------------------------------------------------------------------

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """Move failed jobs back to pending; return the ids moved."""
        return list(self.request("retry", {"queue": queue, "ids": job_ids,
                                           "attempts": attempts})["ids"])

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """Cancel a pending (removed) or claimed (failed) job; return the state it was in.

        ``by`` is recorded as who cancelled it (default: this user on this host).
        """
        return str(self.request("cancel", {"queue": queue, "id": job_id,
                                           "by": by or who_am_i("client")})["was"])

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """Remove done or failed jobs; return how many."""
        return int(self.request("purge", {"queue": queue, "state": state.value,
                                          "older_than": older_than},
                                timeout=max(self.timeout, 600.0))["count"])

    def close(self) -> None:
        """Close the socket (and the context if the client made it). Idempotent."""
        self._reset(rotate=False)
        if self._own_context:
            self._ctx.term()
            self._own_context = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteAdmin:
    """The CLI's store commands, carried out through a daemon (``--connect``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, queue: str, payload: Any, *, job_id: str | None = None,
               max_attempts: int | None = None, delay: float | None = None,
               if_exists: str = "error", batch: str | None = None,
               time_limit: float | None = None) -> Submitted:
        """See :meth:`ckptd.admin.StoreAdmin.submit`."""
        return self.client.submit_job(queue, payload, job_id=job_id, max_attempts=max_attempts,
                                      delay=delay, if_exists=if_exists, batch=batch,
                                      time_limit=time_limit)

    def submit_file(self, queue: str, data: bytes, **options: Any) -> SubmittedFile:
        """See :meth:`Client.submit_file`."""
        return self.client.submit_file(queue, data, **options)

    def status(self, queue: str | None = None) -> dict[str, Any]:
        """See :meth:`Client.status`."""
        return self.client.status(queue)

    def ls(self, queue: str, state: State | None = None) -> list[tuple[State, str]]:
        """See :meth:`Client.ls`."""
        return self.client.ls(queue, state)

    def show(self, queue: str, job_id: str) -> dict[str, Any]:
        """See :meth:`Client.show`."""
        return self.client.show(queue, job_id)

    def retry(self, queue: str, job_ids: list[str] | None = None, *,
              attempts: int | None = None) -> list[str]:
        """See :meth:`Client.retry`."""
        return self.client.retry(queue, job_ids, attempts=attempts)

    def cancel(self, queue: str, job_id: str, by: str | None = None) -> str:
        """See :meth:`Client.cancel`."""
        return self.client.cancel(queue, job_id, by or who_am_i("--connect"))

    def purge(self, queue: str, state: State, older_than: float | None = None) -> int:
        """See :meth:`Client.purge`."""
        return self.client.purge(queue, state, older_than)
