"""Stores whose requests cross a network: the daemon's loop starts them and goes on.

On a local disk a store operation takes microseconds, and the daemon applies a turn's group
and waits. On a bucket every request costs a round trip (10 to 30 ms on a real region), and
a loop that waits for each group has about one group in flight: its rate falls with the
latency, whatever the bucket could take. A store that derives from :class:`Background`
offers the same operations without waiting: the group of a turn is started and its
outcomes are handed back, from another thread, when the server has answered
(:meth:`Background.apply_later`); pending files are read ahead in the background and a claim
takes only what is already read (:meth:`Background.prefetch_later`,
:meth:`Background.ready`); a request that waits on jobs learns where they are the same way
(:meth:`Background.locate_later`). Requests of every group share one bound
(``store_concurrency``), and the operations of one job keep their order across groups.

The daemon's :mod:`~ckptd.daemon.engine.store_guard` runs its groups this way on such a
store; everything else (the store commands, tests) keeps the waiting methods of
:class:`~ckptd.store.base.Store`, which these stores still have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

from ckptd.core.errors import CkptdError
from ckptd.core.states import State
from ckptd.store.base import Op, Outcome


class Background(ABC):
    """What a store whose requests cross a network offers the daemon's loop."""

    @abstractmethod
    def apply_later(self, ops: Sequence[Op], then: Callable[[list[Outcome]], None]) -> None:
        """Start applying ``ops`` as :meth:`~ckptd.store.base.Store.apply` would; return at
        once. ``then(outcomes)`` is called once, from another thread, when every op has its
        outcome. Ops of a job wait for that job's ops of groups started before."""

    @abstractmethod
    def probe_later(self, then: Callable[[CkptdError | None], None]) -> None:
        """Start :meth:`~ckptd.store.base.Store.probe_access`; ``then(error or None)`` is
        called from another thread when the answer came."""

    @abstractmethod
    def notify(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (from another thread) whenever files read in the background
        (:meth:`prefetch_later`) have arrived."""

    @abstractmethod
    def prefetch_later(self, queue: str, ids: Sequence[str],
                       priorities: Mapping[str, int] | None = None) -> int:
        """Start reading the pending files of ``ids`` (named with ``priorities``, 0 where not
        given) that are neither kept nor being read
        (the function given to :meth:`notify` is called when they arrived); return how many
        were started (0: nothing to read)."""

    @abstractmethod
    def locate_later(self, queue: str, ids: Sequence[str],
                     then: Callable[[dict[str, str | None], list[str]], None]) -> None:
        """Start looking for ``ids`` in every state folder (done and failed first), many at
        once; ``then(states, failed)`` is called from another thread with the state of each
        found id (None: in no folder) and the ids whose look failed."""

    @abstractmethod
    def ready(self, queue: str, job_id: str, priority: int = 0) -> bool:
        """True when reading ``pending/<id>[,p<priority>]`` now waits on no request: its
        file is kept, or its read ended (a read of a file that was gone or failed raises at
        once). When not, its read is started and the queue is noted (:meth:`missed`)."""

    @abstractmethod
    def missed(self) -> set[str]:
        """The queues where :meth:`ready` said no since the last call: the files of their
        next claims are worth reading ahead."""

    @abstractmethod
    def busy(self, queue: str, job_id: str) -> bool:
        """True while a group with an op of the job is in flight (safe from any thread): a
        listing may then see the job in two folders, which is no leftover to resolve."""

    @abstractmethod
    def moved_out(self, queue: str, job_id: str, state: State, since: float) -> bool:
        """True when this process moved the job out of ``state`` after ``since`` (wall
        clock; the last few minutes are kept): a listing that began before saw it there
        and is out of date for it."""

    @abstractmethod
    def settle(self, timeout: float) -> bool:
        """Wait until every group started has ended (up to ``timeout`` seconds); True when
        none is left."""
