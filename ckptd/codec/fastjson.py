"""Strict JSON, fast: msgspec underneath, the standard library's rules on top.

- :func:`loads` refuses what is not strict JSON (NaN, Infinity, numbers out of range, bad
  UTF-8, lone surrogates) and raises ValueError saying why.
- :func:`dumps` writes compact JSON of any Python value as the standard library would, and
  refuses what JSON cannot hold (NaN, Infinity, sets, bytes, objects): for values that come
  from users (payloads, results, checkpoints).
- :func:`dumps_decoded` writes compact JSON fast, for values made only of what
  :func:`loads` returns and of ckptd's own fields (the daemon's job files and messages):
  msgspec would write NaN as ``null`` and a set as an array, but such values cannot be
  there.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ckptd.core import jobs
from ckptd.core.errors import MalformedJob

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_strict = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: object) -> bytes:
    """Compact JSON bytes of any value; ValueError when it is not JSON (NaN, sets, ...)."""
    try:
        return _strict.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"value is not JSON-serialisable: {exc}") from None
    except UnicodeEncodeError:
        raise ValueError("value is not JSON-serialisable: a lone surrogate in a string") \
            from None


def dumps_decoded(value: object) -> bytes:
    """Compact JSON bytes, fast, of a value built from decoded JSON (see the module)."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError, RecursionError,
            msgspec.EncodeError) as exc:
        raise ValueError(f"value is not JSON-serialisable: {exc}") from None


def loads(data: bytes | str) -> Any:
    """The value of strict JSON ``data``; ValueError saying what is wrong otherwise."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError (out of range) is one too
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def encode_job(job: jobs.Job) -> bytes:
    """The bytes of a job file: one line of compact JSON and a newline. Its payload must
    have been checked already (it came decoded from JSON, or through :func:`dumps`)."""
    return dumps_decoded(job) + b"\n"


def decode_job(data: bytes, queue: str | None = None, job_id: str | None = None) -> jobs.Job:
    """Parse and check a job file (see :func:`ckptd.core.jobs.decode`); MalformedJob."""
    try:
        parsed = loads(data)
    except ValueError as exc:
        raise MalformedJob(f"not valid JSON: {exc}") from None
    return jobs.check(parsed, queue, job_id)
