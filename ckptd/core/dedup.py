"""Dedup by content: a job's id derived from a hash of its payload.

On a queue with ``unique = "payload"`` the id of a job is ``u`` and the first 32 hex digits
(128 bits) of the SHA-256 of its payload as canonical JSON (keys sorted, no spaces), so the
same work submitted twice, a minute or a month apart, finds the first job:

- scope ``forever`` (the default): the id is exactly that, and an id is created only where
  it exists in no state, so the payload makes one job until retention removes it;
- scope ``open``: the id is that plus ``.`` and a new time-ordered id; while a job of that
  payload is pending or claimed, a submit returns it; once it has ended, the same payload
  makes a new job. The daemon knows which are open from its index.

Pure: standard library only.
"""

from __future__ import annotations

import hashlib
import json

from ckptd.core.ids import new_id

PREFIX = "u"
DIGITS = 32


def payload_key(payload: object) -> str:
    """``u`` + 32 hex digits of the payload's canonical JSON (ValueError: not JSON)."""
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload is not JSON-serialisable: {exc}") from None
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:DIGITS]


def open_id(key: str, now: float | None = None) -> str:
    """A new id for a job of scope ``open`` with payload key ``key``."""
    return f"{key}.{new_id(now)}"


def key_of(job_id: str) -> str | None:
    """The payload key an id of a unique queue starts with, or None."""
    key = job_id[:1 + DIGITS]
    if len(key) == 1 + DIGITS and key.startswith(PREFIX) and \
            all(c in "0123456789abcdef" for c in key[1:]) and \
            (len(job_id) == len(key) or job_id[len(key)] == "."):
        return key
    return None
