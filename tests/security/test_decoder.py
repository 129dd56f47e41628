"""The decoders against arbitrary frames: only ProtocolError escapes, and whatever they accept
can be written back (so a job file or a reply built from it never fails to encode).

tests/unit/test_protocol.py feeds random bytes; these strategies build frames that get
further: the right version and known kinds, JSON text with hostile values (NaN, huge
numbers, lone surrogates, deep nesting, hostile names), batches, and invalid UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptd.core.errors import ProtocolError
from ckptd.wire import protocol
from ckptd.wire.messages import Heartbeat
from tests.fuzzing import examples

KINDS = sorted({*protocol.WORKER_MESSAGES, *protocol.DAEMON_MESSAGES,
                *protocol.CONTROL_REQUESTS, protocol.BATCH, b"ok", b"error"})
HOSTILE_TEXT = ["..", "../x", "/abs", "a/b", "a\x00b", "a" * 300, ".hidden", "c:x",
                "\uff50rice", "pri\u0441e", "\u2024\u2024", "", " ", "\n"]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" * 5000,
              b'"\\ud800"', b'"\\udfff"', b'"\\ud83d\\ude00"', b'"\\u0000"',
              b"[" * 150 + b"]" * 150, b"{" * 60 + b"}" * 60, b"\xff", b"\xc3\x28",
              b"\xed\xa0\x80"]

names = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=12) | st.from_regex(
    r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True)
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | names)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(names, inner, max_size=4), max_leaves=25)
fields = st.sampled_from(["queue", "id", "attempt", "payload", "result", "state", "jobs",
                          "queues", "worker", "slots", "seq", "done", "error", "ids",
                          "messages", "timeout", "what", "host", "free", "running"])
bodies = st.dictionaries(fields | names, values, max_size=8)


@st.composite
def body_bytes(draw: st.DrawFn) -> bytes:
    """A body frame: JSON of a drawn object, sometimes with a hostile raw token spliced in."""
    body = draw(bodies)
    text = json.dumps(body).encode()
    if draw(st.booleans()):
        token = draw(st.sampled_from(RAW_TOKENS))
        key = draw(st.sampled_from([b"payload", b"result", b"queue", b"id", b"attempt"]))
        text = b'{"' + key + b'": ' + token + (b", " + text[1:] if len(text) > 2 else b"}")
    if draw(st.booleans()):  # a batch of such messages
        kind = draw(st.sampled_from(KINDS)).decode("ascii", "replace")
        text = b'{"messages": [["' + kind.encode() + b'", ' + text + b"]]}"
    return text


@st.composite
def messages(draw: st.DrawFn) -> list[bytes]:
    version = draw(st.sampled_from([protocol.VERSION, protocol.VERSION, b"ckptd/2", b"",
                                    b"\xff\xfe"]))
    kind = draw(st.sampled_from(KINDS) | st.binary(max_size=10))
    frames = [version, kind, draw(body_bytes())]
    if draw(st.booleans()):
        frames = [b""] + frames  # a control request's delimiter
    extra = draw(st.integers(min_value=-2, max_value=2))
    if extra < 0:
        frames = frames[:extra]
    elif extra > 0:
        frames += [draw(st.binary(max_size=20)) for _ in range(extra)]
    return frames


def decoders() -> list[Any]:
    return [lambda f: protocol.decode_many(f, protocol.WORKER_MESSAGES),
            lambda f: protocol.decode_many(f, protocol.DAEMON_MESSAGES),
            lambda f: protocol.decode_many(f, protocol.WORKER_MESSAGES, max_body=64),
            protocol.decode_request, protocol.decode_reply]


@pytest.mark.slow
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_decoders_raise_only_protocol_error_and_accept_only_what_encodes(
        frames: list[bytes]) -> None:
    for decode in decoders():
        try:
            decoded = decode(frames)
        except ProtocolError as exc:
            assert exc.reason in {"frames", "version", "kind", "size", "utf8", "json", "depth",
                                  "schema"}, exc.reason
            continue
        pairs = decoded if isinstance(decoded, list) else [decoded]
        for _, body in pairs:
            if isinstance(body, msgspec.Struct):  # a message: as the fields it holds
                body = msgspec.to_builtins(body)
            protocol.encode_body({"wrapped": body})  # never raises for what was accepted


@pytest.mark.slow
@settings(max_examples=examples(150), deadline=None)
@given(st.sampled_from(sorted(protocol.WORKER_MESSAGES)), bodies)
def test_accepted_worker_messages_carry_only_valid_names(kind: bytes,
                                                         body: dict[str, Any]) -> None:
    try:
        _, got = protocol.decode(protocol.message(kind, body), protocol.WORKER_MESSAGES)
    except (ProtocolError, ValueError):
        return
    from ckptd.core.names import is_valid_name

    fields = type(got).__struct_fields__  # fields outside them are ignored by the daemon
    for field in ("queue", "id"):
        if field in fields:
            assert is_valid_name(getattr(got, field))
    if isinstance(got, Heartbeat):
        for ref in got.jobs:
            assert is_valid_name(ref[0]) and is_valid_name(ref[1])
