"""The audit log: one record per operator action taken through the console, kept in the
store's control area (``<root>/.ckptd/audit/``) where ``ls`` and ``cat`` find it.

A record says who (the login), what (the action and its arguments), when, from where (the
client's address) and the result. On a local root the records of a day are lines appended
to ``audit/YYYY-MM-DD.jsonl`` (one ``write`` of a whole line, then fsync: lines never mix
and a crash loses at most the line being written); in a bucket, where nothing can be
appended, each record is an object of its own, ``audit/YYYY-MM-DD/<time>-<random>.json``,
written create-only. Retention leaves the audit log alone: it is removed by hand.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

from ckptd.core.errors import StoreError
from ckptd.core.timefmt import utc_iso
from ckptd.store import is_local
from ckptd.store.base import Store
from ckptd.store.objects import CONTROL_DIR

AUDIT_DIR = "audit"


def audit_folder(store: Store) -> str:
    """Where the audit log of ``store`` lives (a folder, or a bucket prefix)."""
    return f"{store.url.rstrip('/')}/{CONTROL_DIR}/{AUDIT_DIR}"


def record_action(store: Store, record: Mapping[str, object], now: float | None = None
                  ) -> str:
    """Append ``record`` (with ``at`` added) to the audit log; return where it went.

    Raises StoreError when it cannot be written: an action whose record cannot be kept is
    reported as such by the caller.
    """
    now = time.time() if now is None else now
    line = json.dumps({"at": utc_iso(now), **record}, sort_keys=True, ensure_ascii=False,
                      default=str) + "\n"
    day = utc_iso(now)[:10]
    if is_local(store.url):
        folder = os.path.join(store.url.removeprefix("file://"), CONTROL_DIR, AUDIT_DIR)
        path = os.path.join(folder, f"{day}.jsonl")
        try:
            os.makedirs(folder, mode=0o750, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)  # the record is kept before the action is reported done
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write the audit log {path}: {exc.strerror or exc}"
                             ) from None
        return path
    objects = store.control_objects()
    if objects is None:
        raise StoreError(f"the store {store.url} has no control area for the audit log")
    name = f"{AUDIT_DIR}/{day}/{utc_iso(now).replace(':', '')}-{os.urandom(4).hex()}.json"
    objects.put(name, line.encode(), create=True)
    return f"{audit_folder(store)}/{name.split('/', 1)[1]}"


def read_actions(store: Store, limit: int = 200) -> list[dict[str, object]]:
    """The latest ``limit`` records of the audit log, newest first ([] when there are none)."""
    lines: list[str] = []
    if is_local(store.url):
        folder = os.path.join(store.url.removeprefix("file://"), CONTROL_DIR, AUDIT_DIR)
        try:
            days = sorted(n for n in os.listdir(folder) if n.endswith(".jsonl"))
        except FileNotFoundError:
            return []
        for day in reversed(days):
            with open(os.path.join(folder, day), encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines() + lines
            if len(lines) >= limit:
                break
    else:
        objects = store.control_objects()
        names = objects.names(f"{AUDIT_DIR}/") if objects is not None else []
        for name in names[-limit:]:
            found = objects.get(name) if objects is not None else None
            if found is not None:
                lines.append(found[0].decode(errors="replace").strip())
    records: list[dict[str, object]] = []
    for text in lines[-limit:]:
        try:
            value = json.loads(text)
        except ValueError:
            continue  # a line cut by a crash
        if isinstance(value, dict):
            records.append(value)
    return records[::-1]
