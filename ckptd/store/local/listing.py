"""Listing a big folder of job files: in chunks, as the directory is read.

A folder of ten million files is never held as one list of names: :func:`folder_chunks`
yields the names as ``os.scandir`` reads them (in the directory's order, not sorted), and
:func:`ckptd.store.file_names.ids_by_priority` turns a chunk into ids per priority.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice

from ckptd.core.states import State
from ckptd.store.file_names import split_job_name, split_pending_name
from ckptd.store.local.durable import io_error


def folder_chunks(folder: str, size: int) -> Iterator[list[str]]:
    """The names in ``folder``, ``size`` at a time (none when it does not exist); raises
    StoreError when it cannot be read."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise io_error(exc, "list", folder) from exc
    with entries:
        while True:
            try:
                chunk = [entry.name for entry in islice(entries, size)]
            except OSError as exc:
                raise io_error(exc, "list", folder) from exc
            if not chunk:
                return
            yield chunk


def folder_names(folder: str) -> list[str]:
    """The names in ``folder`` ([] when it does not exist); StoreError when unreadable."""
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise io_error(exc, "list", folder) from exc


def count_jobs(folder: str, state: State) -> int:
    """How many job files ``folder`` (of ``state``) holds, without a list of them."""
    split = split_pending_name if state is State.PENDING else split_job_name
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if split(e.name) is not None)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise io_error(exc, "list", folder) from exc
