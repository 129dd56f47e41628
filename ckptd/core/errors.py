"""The exceptions ckptd raises.

One root, :class:`CkptdError`, and a shallow tree under it. Every message is meant to be
read by a person: it says what went wrong and, where it can, what to do about it.
Control flow that is not an error (retry later, give up for good) has its own classes in
:mod:`ckptd.outcomes`.
"""

from __future__ import annotations


class CkptdError(Exception):
    """Raised for every error ckptd reports; catch this to catch them all."""

    exit_code = 1


class ConfigError(CkptdError):
    """Raised when a setting, a config file or a command-line value is invalid."""

    exit_code = 5


class InvalidName(CkptdError):
    """Raised when a queue name or job id does not match the allowed pattern."""

    exit_code = 5


class StoreError(CkptdError):
    """Raised when the store cannot be read or written (I/O error, unreachable bucket)."""

    exit_code = 6


class StoreUnavailable(StoreError):
    """Raised when the store does not answer (bucket down, timeout); retrying may help."""


class NoSpace(StoreError):
    """Raised when the store is out of space (ENOSPC, EDQUOT)."""


class JobNotFound(StoreError):
    """Raised when a job is not in the state (or in any state) it was looked for in."""

    exit_code = 3


class JobExists(StoreError):
    """Raised when a job id is submitted that already exists in some state of its queue."""

    exit_code = 4

    def __init__(self, queue: str, job_id: str, state: str | None = None) -> None:
        where = f" (in {state}/)" if state else ""
        super().__init__(
            f"job {job_id!r} already exists in queue {queue!r}{where}; "
            "use --if-exists=return to get the existing job instead"
        )
        self.queue = queue
        self.job_id = job_id
        self.state = state


class MalformedJob(StoreError):
    """Raised when a job file is not valid JSON or lacks a required field."""

    exit_code = 6


class TransitionError(CkptdError):
    """Raised when a state change is not allowed (for example done -> pending)."""

    exit_code = 4


class ProtocolError(CkptdError):
    """Raised when a ZeroMQ message does not follow the wire format."""

    exit_code = 7

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class AuthError(CkptdError):
    """Raised when keys are missing, unreadable, too widely readable or refused."""

    exit_code = 5


class DaemonUnavailable(CkptdError):
    """Raised when the daemon does not answer on its control address in time."""

    exit_code = 7


class RemoteError(CkptdError):
    """Raised by the client when the daemon answered a request with an error."""

    def __init__(self, kind: str, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code


class WaitTimeout(CkptdError):
    """Raised when waiting for jobs ends before they did."""

    exit_code = 8


class LeaseLost(CkptdError):
    """Raised in a handler when its job was taken back (lease expired, job cancelled)."""
