"""A job's key: who or what it is for (a supplier, a tenant, a customer), for flow control.

A key is set per submit (``submit(..., key="supplier-a")``, ``--key``) or by the queue from
the payload (``[queues.price] key = "payload.supplier"``); it is kept in the job file
(``"key": "supplier-a"``) and in the pending file's name, ``<id>,k<key>.json`` (after the
priority, ``<id>,p3,k<key>.json``), so that a listing alone tells the daemon every pending
job's key (:mod:`ckptd.store.file_names`). Limits per key, a fair share between keys and the
busiest keys in ``status`` all work from it.

A key is 1 to 64 printable characters, not ``*`` (which names every key in the limits).
In a file name the characters other than letters, digits and ``._@:+=~-`` are written as
``%XX`` per byte of UTF-8 (``acme corp`` -> ``acme%20corp``), at most 100 bytes, so that
a name stays within the 255 bytes a file system allows. Pure: standard library only.
"""

from __future__ import annotations

from typing import TypeGuard
from urllib.parse import quote, unquote

from ckptd.core.errors import ConfigError, InvalidInput

MAX_KEY = 64  # characters of a key
MAX_KEY_NAME = 100  # bytes of a key as written in a file name
EVERY_KEY = "*"  # in limits: the default of every key
KEY_TAG = ",k"
SAFE = "._@:+=~-"  # written as they are in a name (letters and digits too)
PAYLOAD = "payload"
_RULE = (f"1-{MAX_KEY} printable characters, not '{EVERY_KEY}', at most {MAX_KEY_NAME} "
         "bytes once written in a file name (other characters than letters, digits and "
         f"'{SAFE}' take 3 bytes per byte of UTF-8)")


def key_name(key: str) -> str:
    """A key as its file names write it (``acme corp`` -> ``acme%20corp``)."""
    return quote(key, safe=SAFE)


def is_valid_key(key: object) -> TypeGuard[str]:
    """True when ``key`` may be a job's key."""
    return (isinstance(key, str) and 0 < len(key) <= MAX_KEY and key != EVERY_KEY
            and key.isprintable() and len(key_name(key)) <= MAX_KEY_NAME)


def check_key(key: object, what: str = "key") -> str:
    """Return ``key`` when it is a valid key; InvalidInput saying the rule otherwise."""
    if is_valid_key(key):
        return key
    shown = repr(key)
    if len(shown) > 70:
        shown = shown[:67] + "..."
    raise InvalidInput(f"invalid {what} {shown}: a key is {_RULE}")


def key_of_name(text: str) -> str | None:
    """The key a file name's ``,k...`` part writes, None when it is not a key written as
    :func:`key_name` writes it (one name per key: ``%7e`` for ``~`` is not a job file)."""
    try:
        key = unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None
    if not is_valid_key(key) or key_name(key) != text:
        return None
    return key


def check_key_path(value: object, what: str) -> tuple[str, ...]:
    """The fields of ``payload.a.b`` (the queue's ``key`` setting); ConfigError otherwise."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) < 2 or parts[0] != PAYLOAD or not all(parts[1:]):
        raise ConfigError(f"invalid {what} {value!r}: expected a path into the payload, "
                          "like \"payload.supplier\" or \"payload.customer.id\"")
    return tuple(parts[1:])


def value_at(payload: object, path: tuple[str, ...]) -> object:
    """The value at ``path`` in ``payload`` (objects only), None where it is missing."""
    value: object = payload
    for field in path:
        if not isinstance(value, dict):
            return None
        value = value.get(field)
    return value


def key_from_payload(payload: object, path: tuple[str, ...]) -> str | None:
    """The key the payload gives at ``path``: a string, or a whole number as text; None
    when the payload has nothing there (the job then has no key). InvalidInput for a value
    that cannot be a key (a list, an object, a float, a string that breaks the rule)."""
    value = value_at(payload, path)
    if value is None:
        return None
    where = "payload." + ".".join(path)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"the key at {where} is {type(value).__name__} {value!r:.40}: "
                           "expected a string or a whole number")
    return check_key(str(value), f"key at {where}")


def job_key(explicit: str | None, payload: object, path: tuple[str, ...] | None) -> str | None:
    """A new job's key: the one given with the submit, else the queue's path's, else none."""
    if explicit is not None:
        return check_key(explicit)
    if path is None:
        return None
    return key_from_payload(payload, path)


def key_of_job(job: object) -> str:
    """A job file's key ("" for none, or for one that is not a valid key)."""
    found = job.get("key") if isinstance(job, dict) else None
    return found if is_valid_key(found) else ""
