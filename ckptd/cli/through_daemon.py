"""Store commands that must reach the daemon that runs the store, even given ``--root``.

Most ``--root`` commands change files that a running daemon follows by itself. Cancelling a
running job is not one of them: its worker must be told to stop, and only the daemon can
tell it. So ``ckptd --root DATA cancel`` asks the daemon that leads the job's queue (its
control address is in the root's lock, where every daemon writes it) to cancel the job; only
when no daemon runs the store, or it does not answer, is the store changed directly.
"""

from __future__ import annotations

import logging

from ckptd.cli.context import Context
from ckptd.core.errors import AuthError, CkptdError, DaemonUnavailable

log = logging.getLogger(__name__)

ASK_TIMEOUT = 3.0  # seconds to wait for the daemon before changing the store directly


def leader_address(ctx: Context, queue: str) -> str | None:
    """The control address of the daemon leading ``queue`` of the ``--root`` store (a
    local one), or None when no daemon runs it."""
    from ckptd.store.local.backend import ROOT_LOCK

    store = ctx.store_admin().store
    for lock in (f"queue-{queue}", ROOT_LOCK):
        try:
            holder = store.lock_holder(lock)
        except CkptdError:
            return None
        if holder and isinstance(holder.get("control"), str):
            return str(holder["control"])
    return None


def cancel_through_daemon(ctx: Context, queue: str, job_id: str, by: str
                          ) -> tuple[str, str] | None:
    """Cancel through the daemon that runs the store: (the state the job was in, the
    daemon's address), or None when no daemon answered (nothing was done then)."""
    from ckptd.client.client import Client
    from ckptd.wire.security import client_curve

    address = leader_address(ctx, queue)
    if address is None:
        return None
    try:
        curve = client_curve(ctx.settings())
        with Client(address, timeout=ASK_TIMEOUT, curve=curve, direct=False) as client:
            return client.cancel(queue, job_id, by), address
    except (DaemonUnavailable, AuthError) as exc:
        # (Had it cancelled the job after all, the store now says the job is failed.)
        log.debug("cancelling in the store: the daemon at %s did not answer (%s)", address,
                  exc)
        return None
