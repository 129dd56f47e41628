"""ckptd: a checkpoint daemon for background work.

Jobs are files in a store (a local folder or a bucket); state changes are renames; a daemon
hands job ids to workers over ZeroMQ. See the README for the tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckptd.core.errors import CkptdError, LeaseLost
from ckptd.core.outcomes import Cancelled, Fail, Interrupt, Park, Retry, TimeLimit
from ckptd.core.version import __version__

if TYPE_CHECKING:
    from ckptd.client import AsyncClient, Client
    from ckptd.client.hooks import Hook, Submission
    from ckptd.codec.crypto import Keyring
    from ckptd.worker import AsyncJob, Job, Worker


__all__ = ["AsyncClient", "AsyncJob", "Cancelled", "Client", "CkptdError", "Fail", "Hook",
           "Interrupt", "Job", "Keyring", "LeaseLost", "Park", "Retry", "Submission", "TimeLimit",
           "Worker", "__version__"]


def __getattr__(name: str) -> object:
    """``Client``, ``AsyncClient``, ``Job``, ``AsyncJob`` and ``Worker`` on first use: they
    import ZeroMQ, which store commands of the CLI and other light users do not need (and
    ``Hook``, ``Submission``, ``Keyring`` with them)."""
    if name in ("Client", "AsyncClient"):
        from ckptd import client

        return getattr(client, name)
    if name in ("Hook", "Submission"):
        from ckptd.client import hooks

        return getattr(hooks, name)
    if name == "Keyring":
        from ckptd.codec.crypto import Keyring

        return Keyring
    if name in ("AsyncJob", "Job", "Worker"):
        from ckptd import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
