"""What a store lists of its pending files by name, where names carry priorities.

The capabilities of :class:`~ckptd.store.base.Store` that list ``pending/`` by file name
(``<id>,p<N>.json``, :mod:`ckptd.store.file_names`), each with the default of a backend that
has nothing better; the local store and the S3 store do better.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from ckptd.core.states import State
from ckptd.store.file_names import JOB_SUFFIX, split_pending_name


class PendingListings(ABC):
    """Listing pending files by name (a part of the store contract)."""

    @abstractmethod
    def ids(self, queue: str, state: State) -> list[str]:
        """See :meth:`ckptd.store.base.Store.ids`."""

    @abstractmethod
    def exists(self, queue: str, state: State, job_id: str, priority: int = 0) -> bool:
        """See :meth:`ckptd.store.base.Store.exists`."""

    def pending_priority(self, queue: str, job_id: str) -> int | None:
        """The priority the name of ``pending/<id>...`` carries, None when the job is not
        pending. For callers that do not know it (the store commands); the daemon does.

        Default: look for the plain name, then list the folder.
        """
        if self.exists(queue, State.PENDING, job_id):
            return 0
        for name in self.pending_names(queue):
            found = split_pending_name(name)
            if found is not None and found[0] == job_id:
                return found[1]
        return None

    def pending_names(self, queue: str) -> list[str]:
        """The file names in ``pending/`` that are job files, priorities included.

        Default: the plain names of :meth:`ids` (a store without tagged names).
        """
        return [job_id + JOB_SUFFIX for job_id in self.ids(queue, State.PENDING)]

    def listing_chunks(self, queue: str, state: State, size: int = 65536
                       ) -> Iterator[list[str]]:
        """The file names of a state folder in chunks of at most ``size``, in no order, as
        the listing goes (a folder of ten million files is never held at once). Names that
        are not job files may be among them: :func:`~ckptd.store.file_names.ids_by_priority`
        keeps the job files.

        Default: :meth:`pending_names` or :meth:`ids`, cut into chunks.
        """
        names = self.pending_names(queue) if state is State.PENDING else \
            [job_id + JOB_SUFFIX for job_id in self.ids(queue, state)]
        for start in range(0, len(names), size):
            yield names[start:start + size]

    def pending_after(self, queue: str, start_after: str | None) -> list[tuple[str, int]]:
        """``(id, priority)`` of the pending jobs whose names sort after ``start_after``.

        Default: a full listing, filtered. A bucket lists only the keys after it.
        """
        found = [split_pending_name(name) for name in self.pending_names(queue)]
        return sorted(f for f in found if f is not None and (start_after is None
                                                             or f[0] > start_after))
