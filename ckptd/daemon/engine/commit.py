"""The end of a turn: the round's store ops applied as one group, then their callbacks, then
what they have to say delivered.

One function, :func:`commit`, used by the daemon's loop (``Daemon.commit``) and by everything
that drives an engine without the daemon (the engine tests, :mod:`ckptd.testing`), so that
what a test sees is what the daemon does. How the ops reach the store and how replies and
worker messages leave are handed in: the daemon applies through its
:class:`~ckptd.daemon.engine.store_guard.StoreGuard` and sends over its sockets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ckptd.daemon.engine.engine import Engine
from ckptd.daemon.engine.group_commit import GroupCommit
from ckptd.daemon.engine.groups import run_callbacks
from ckptd.daemon.engine.index import Txn
from ckptd.store.base import Outcome

log = logging.getLogger(__name__)

MAX_COMMIT_ROUNDS = 8  # ops queued by callbacks are applied in the same turn, a few rounds deep


def commit(engine: Engine, apply: Callable[[Txn], Sequence[Outcome]],
           deliver: Callable[[], None], timer: Callable[[], float] = time.perf_counter,
           overlap: GroupCommit | None = None) -> None:
    """Apply the round's store ops as one group, run their callbacks, then ``deliver()``.

    ``apply(txn)`` returns one outcome per op, in order. ``deliver()`` sends what the round
    has to say (the control replies first: a client waits on its answer; then the engine's
    outbox to workers), and may queue more ops (a vanished worker's jobs go back). Ops that
    callbacks or ``deliver`` queue (a reduce's manifest, an answer's next step) are applied
    in the same turn, :data:`MAX_COMMIT_ROUNDS` rounds deep at most; ``deliver()`` runs once
    more at the end. A callback that raises is logged and the others still run: one bad
    callback must not cost the round. ``timer`` measures how long ``apply`` took (the
    engine paces workers' credits by it); a test hands in its fake clock.

    With ``overlap`` (``fsync = batch`` on a local disk) the ops are staged and flushed on
    its thread instead of applied here: the callbacks that run are those of the groups
    made durable since the last turn (:mod:`~ckptd.daemon.engine.group_commit`).
    """
    for _ in range(MAX_COMMIT_ROUNDS):
        txn = engine.index.take_txn()
        if overlap is not None:
            ended = overlap.run(txn)
        elif txn.ops:
            started = timer()
            ended = [(txn, list(apply(txn)))]
            engine.index.note_apply(timer() - started)
        else:
            ended = []
        if not ended:
            break
        for done, outcomes in ended:
            run_callbacks(done, outcomes)
        if overlap is not None:
            overlap.landed(ended)
        deliver()
    deliver()

