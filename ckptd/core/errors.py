"""The exceptions ckptd raises.

One root, :class:`CkptdError`, and a shallow tree under it. Every message is meant to be
read by a person: it says what went wrong and, where it can, what to do about it.
Control flow that is not an error (retry later, give up for good) has its own classes in
:mod:`ckptd.core.outcomes`.

Two kinds live here. *Failures* (:class:`StoreError` and below, :class:`ProtocolError`, ...)
say that something did not work and retrying may help. *Answers* (:class:`JobNotFound`,
:class:`JobExists`, :class:`MalformedJob`, :class:`TransitionError`) say how things are:
retrying the same request gets the same answer. They are siblings, not one under the other,
so ``except StoreError`` never swallows "not found".

Each class has a stable ``code``: what travels on the wire when the daemon answers a request
with an error, and what the client turns back into the same class (:func:`remote_error`).
"""

from __future__ import annotations

from typing import ClassVar


class CkptdError(Exception):
    """Raised for every error ckptd reports; catch this to catch them all."""

    exit_code = 1
    code: ClassVar[str] = "error"


class ConfigError(CkptdError):
    """Raised when a setting, a config file or a command-line value is invalid."""

    exit_code = 5
    code = "config"


class InvalidName(CkptdError):
    """Raised when a queue name or job id does not match the allowed pattern."""

    exit_code = 5
    code = "invalid_name"


class InvalidInput(CkptdError):
    """Raised when a value given by the user cannot be used: a payload that is not JSON (or
    holds NaN), a file that is not the kind expected."""

    exit_code = 5
    code = "invalid_input"


class FileMissing(CkptdError):
    """Raised when a file or folder named by the user (a payload file, the store's root)
    does not exist."""

    exit_code = 3
    code = "file_missing"


class FileExists(CkptdError):
    """Raised when a file that ckptd never overwrites (a key pair) already exists."""

    exit_code = 4
    code = "file_exists"


class DecryptError(CkptdError):
    """Raised when encrypted data (a payload, result or checkpoint) cannot be decrypted: no
    key of its key id here, or the wrong key under that id."""

    exit_code = 5
    code = "decrypt"


# -- failures of the store ------------------------------------------------------------------

class StoreError(CkptdError):
    """Raised when the store cannot be read or written (I/O error, unreachable bucket)."""

    exit_code = 6
    code = "store"


class StoreUnavailable(StoreError):
    """Raised when the store does not answer (bucket down, timeout); retrying may help."""

    code = "store_unavailable"


class StoreNotFound(StoreError):
    """Raised when the store itself does not exist (a bucket that was never created)."""

    exit_code = 3
    code = "no_store"


class NoSpace(StoreError):
    """Raised when the store is out of space (ENOSPC, EDQUOT)."""

    code = "no_space"


class InUse(CkptdError):
    """Raised when something this process must have to itself is held by another: a port
    (another daemon listens there), the root's lock."""

    exit_code = 4
    code = "in_use"


class LockHeld(InUse):
    """Raised when another daemon already leads the root (or queue) this one would lead."""

    code = "lock_held"


class NotLeader(CkptdError):
    """Raised when a write is refused because this daemon no longer leads the queue (its
    lease ran out, or another daemon holds the lock): nothing was written."""

    exit_code = 7
    code = "not_leader"


# -- answers: how things are ----------------------------------------------------------------

class JobNotFound(CkptdError):
    """Raised when a job is not in the state (or in any state) it was looked for in."""

    exit_code = 3
    code = "not_found"


class QueueNotFound(JobNotFound):
    """Raised when a queue is asked for that the store (or the daemon) does not have."""

    code = "no_queue"

    @classmethod
    def among(cls, queue: str, where: str, known: list[str]) -> QueueNotFound:
        """The error for ``queue`` missing under ``where``, naming the queues there are
        (and the closest one, for a typo)."""
        import difflib

        if not known:
            return cls(f"no queue {queue!r} under {where}: it has no queues yet (a queue is "
                       "made by its first submit)")
        close = difflib.get_close_matches(queue, known, n=1)
        names = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return cls(f"no queue {queue!r} under {where} (its queues: {names}){hint}")


class JobExists(CkptdError):
    """Raised when a job id is submitted that already exists in some state of its queue."""

    exit_code = 4
    code = "exists"
    queue: str = ""
    job_id: str = ""
    state: str | None = None

    def __init__(self, queue: str, job_id: str, state: str | None = None,
                 message: str | None = None) -> None:
        where = f" (in {state}/)" if state else ""
        super().__init__(message or (
            f"job {job_id!r} already exists in queue {queue!r}{where}; "
            "use --if-exists=return to get the existing job instead"))
        self.queue = queue
        self.job_id = job_id
        self.state = state


def cannot_retry(job_id: str, state: str | None) -> CkptdError:
    """The answer to a retry of a job that is not failed: TransitionError (not allowed in
    its state) when it is in ``state``, JobNotFound when it is in no state."""
    if state is None:
        return JobNotFound(f"cannot retry {job_id!r}: no such job")
    hint = " (it is still to run)" if state in ("pending", "claimed") else ""
    return TransitionError(f"cannot retry {job_id!r}: it is {state}{hint}; only failed jobs "
                           "can be retried")


class MalformedJob(CkptdError):
    """Raised when a job file is not valid JSON or lacks a required field."""

    exit_code = 6
    code = "malformed"


class TransitionError(CkptdError):
    """Raised when a state change is not allowed (for example done -> pending)."""

    exit_code = 4
    code = "not_allowed"


# -- the network ----------------------------------------------------------------------------

class ProtocolError(CkptdError):
    """Raised when a ZeroMQ message does not follow the wire format."""

    exit_code = 7
    code = "protocol"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class AuthError(CkptdError):
    """Raised when keys are missing, unreadable, too widely readable or refused."""

    exit_code = 5
    code = "auth"


class DaemonUnavailable(CkptdError):
    """Raised when the daemon does not answer on its control address in time.

    ``maybe_applied`` is False when the request surely reached no daemon (no connection was
    made), True when it was sent and the answer did not come.
    """

    exit_code = 7
    code = "unavailable"

    def __init__(self, message: str, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class SubmitUnconfirmed(DaemonUnavailable):
    """Raised when a submit was sent but its answer did not come: the jobs may exist (then
    they run). Their ids are in ``ids``: look them up, or submit again with the same ids
    (``--id ... --if-exists=return``), which can never make a second job."""

    code = "unconfirmed"

    def __init__(self, queue: str, ids: list[str], reason: str) -> None:
        shown = ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]} ({len(ids)} jobs)"
        super().__init__(f"submit to {queue!r} not confirmed, the job(s) may exist: "
                         f"{shown}; check with 'ckptd show {queue} {ids[0]}' or submit again "
                         f"with the same id and --if-exists=return ({reason})")
        self.queue = queue
        self.ids = ids


class Standby(CkptdError):
    """Raised (as the answer to a request) by a daemon that does not lead the queue: another
    daemon does, so the request belongs there. Nothing was done."""

    exit_code = 7
    code = "standby"
    #: The daemon to ask instead, when known: {"daemon": name, "control": address}.
    leader: dict[str, str] | None = None

    def __init__(self, message: str, leader: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class TakingOver(Standby):
    """Raised (as the answer to a request) by a daemon that is taking the lead (nobody else
    holds it): nothing was done, and a client asks again after a moment."""

    code = "taking_over"


class ClientClosed(CkptdError):
    """Raised when a Client is used after ``close()`` (or after its ``with`` block)."""

    code = "client_closed"


class WaitTimeout(CkptdError):
    """Raised when waiting for jobs ends before they did."""

    exit_code = 8
    code = "timeout"


class LeaseLost(CkptdError):
    """Raised in a handler when its job was taken back (lease expired, job cancelled)."""

    code = "lease_lost"


class RemoteError(CkptdError):
    """Raised by the client when the daemon answered a request with an error.

    The exception is also an instance of the error's own class (``JobNotFound``,
    ``Standby``, ...), made by :func:`remote_error`; ``kind`` is its wire code.
    """

    def __init__(self, kind: str, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code


def _codes() -> dict[str, type[CkptdError]]:
    found: dict[str, type[CkptdError]] = {}
    pending: list[type[CkptdError]] = [CkptdError]
    while pending:
        cls = pending.pop()
        if issubclass(cls, RemoteError):
            continue  # made by remote_error below: never the class a code names
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


_REMOTE_CLASSES: dict[type[CkptdError], type[RemoteError]] = {}


def remote_error(code: str, message: str, exit_code: int = 1) -> RemoteError:
    """The exception the client raises for a daemon's error answer ``code``: a RemoteError
    that is also an instance of the class with that code (CkptdError when unknown)."""
    base = _codes().get(code, CkptdError)
    cls = _REMOTE_CLASSES.get(base)
    if cls is None:
        cls = type(f"Remote{base.__name__}", (RemoteError, base), {"__module__": __name__})
        _REMOTE_CLASSES[base] = cls
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.kind = code
    error.exit_code = exit_code
    return error
