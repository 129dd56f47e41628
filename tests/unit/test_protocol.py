"""The wire format: what encodes decodes, and nothing a peer sends escapes as an exception."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptd.core.errors import ProtocolError
from ckptd.wire import protocol
from ckptd.wire.control_requests import Submit
from ckptd.wire.messages import Done, Heartbeat
from tests.fuzzing import examples

frames = st.lists(st.binary(max_size=256), min_size=0, max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20)


@pytest.mark.slow
@settings(max_examples=examples(2000), deadline=None)
@given(frames)
def test_the_decoders_only_ever_raise_protocol_error(message: list[bytes]) -> None:
    for decode in (lambda f: protocol.decode_many(f, protocol.WORKER_MESSAGES),
                   lambda f: protocol.decode_many(f, protocol.DAEMON_MESSAGES),
                   protocol.decode_request, protocol.decode_reply):
        try:
            decode(message)
        except ProtocolError:
            pass


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(sorted(protocol.WORKER_MESSAGES)), json_values,
       st.dictionaries(st.text(max_size=10), json_values, max_size=6))
@pytest.mark.slow
def test_well_framed_messages_with_any_body_are_checked_not_trusted(
        kind: bytes, value: object, body: dict[str, object]) -> None:
    for candidate in ([protocol.VERSION, kind, json.dumps(value).encode()],
                      [protocol.VERSION, kind, json.dumps(body).encode()],
                      [protocol.VERSION, protocol.BATCH,
                       json.dumps({"messages": [[kind.decode(), body]]}).encode()]):
        try:
            decoded = protocol.decode_many(candidate, protocol.WORKER_MESSAGES)
        except ProtocolError:
            continue
        for got_kind, got_body in decoded:
            assert type(got_body) is protocol.WORKER_MESSAGES[got_kind]
            protocol.encode_body({"wrapped": msgspec.to_builtins(got_body)})  # it encodes


def test_a_round_trip_keeps_kind_and_body() -> None:
    body = {"queue": "q", "id": "a.b-c_1", "attempt": 3, "result": {"x": [1, 2]}}
    done = Done(queue="q", id="a.b-c_1", attempt=3, result={"x": [1, 2]})
    assert protocol.decode(protocol.message(b"done", body), protocol.WORKER_MESSAGES) == \
        (b"done", done)
    batch = protocol.batch([(b"done", body), (b"heartbeat", {"jobs": [["q", "a", 1]]})])
    assert protocol.decode_many(batch, protocol.WORKER_MESSAGES) == \
        [(b"done", done), (b"heartbeat", Heartbeat(jobs=[("q", "a", 1)]))]
    request = protocol.request(b"submit", {"queue": "q", "payload": None})
    assert protocol.decode_request(request) == (b"submit", Submit(queue="q", payload=None))
    assert protocol.decode_reply(protocol.reply_ok({"id": "x"})) == (True, {"id": "x"})


@pytest.mark.parametrize(("frames", "reason"), [
    ([b"ckptd/2", b"done", b"{}"], "version"),
    ([b"ckptd/1", b"done"], "frames"),
    ([b"ckptd/1", b"nope", b"{}"], "kind"),
    ([b"ckptd/1", b"done", b"\xff"], "utf8"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": 1, "result": NaN}'], "json"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": 1, "result": 1e999}'], "json"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": 1, "result": "\\ud800"}'],
     "utf8"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": 1, "result": '
      + b"[" * 101 + b"]" * 101 + b"}"], "depth"),
    ([b"ckptd/1", b"batch", b'{"messages": [["\\ud800", {}]]}'], "utf8"),
    ([b"ckptd/1", b"batch", b'{"messages": [["d\\u00f6ne", {}]]}'], "schema"),
    ([b"ckptd/1", b"hello", b'{"worker": "w\\n1", "queues": ["q"], "slots": 1}'], "schema"),
    ([b"ckptd/1", b"done", b"[]"], "schema"),
    ([b"ckptd/1", b"done", b'{"queue": "../x", "id": "a", "attempt": 1}'], "schema"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": -1}'], "schema"),
    ([b"ckptd/1", b"done", b'{"queue": "q", "id": "a", "attempt": true}'], "schema"),
    ([b"ckptd/1", b"batch", b'{"messages": [["hello", {}]]}'], "kind"),
    ([b"ckptd/1", b"batch", b'{"messages": []}'], "schema"),
])
def test_bad_messages_are_refused_with_a_reason(frames: list[bytes], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_many(frames, protocol.WORKER_MESSAGES)
    assert caught.value.reason == reason


def test_fields_a_newer_peer_adds_are_ignored_but_still_strict_json() -> None:
    """The one-pass decoder refuses unknown fields; the second, tolerant pass takes them
    as before: ignored, yet refused for what no field may hold (a number out of range)."""
    body = b'{"queue": "q", "id": "a", "attempt": 1, "result": 2, "new": {"x": [1]}}'
    assert protocol.decode_many([protocol.VERSION, b"done", body], protocol.WORKER_MESSAGES) \
        == [(b"done", Done(queue="q", id="a", attempt=1, result=2))]
    batch = b'{"messages": [["done", ' + body + b']], "also": 1}'
    assert protocol.decode_many([protocol.VERSION, b"batch", batch], protocol.WORKER_MESSAGES) \
        == [(b"done", Done(queue="q", id="a", attempt=1, result=2))]
    for extra, reason in ((b"1e999", "json"), (b'"\\ud800"', "utf8"), (b'"\xff"', "utf8"),
                          (b"[" * 101 + b"]" * 101, "depth")):
        frames = [protocol.VERSION, b"done",
                  b'{"queue": "q", "id": "a", "attempt": 1, "new": ' + extra + b"}"]
        with pytest.raises(ProtocolError) as caught:
            protocol.decode_many(frames, protocol.WORKER_MESSAGES)
        assert caught.value.reason == reason


@pytest.mark.parametrize(("kind", "body", "reason"), [
    (b"job", {"queue": "q", "id": "a", "attempt": 1, "created": None}, "job.created"),
    (b"job", {"queue": "q", "id": "a", "attempt": 1, "meta": None}, "job.meta"),
    (b"welcome", {"lease": 1, "heartbeat": True}, "welcome.heartbeat"),
    (b"saved", {"queue": "q", "id": "a\n", "seq": 1, "ok": True}, "saved.id"),
    (b"saved", {"queue": "q", "id": "a" * 129, "seq": 1, "ok": True}, "saved.id"),
])
def test_a_field_that_may_be_left_out_may_not_be_null(kind: bytes, body: dict[str, object],
                                                      reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        protocol.decode_many(protocol.message(kind, body), protocol.DAEMON_MESSAGES)


def test_a_limit_left_out_is_not_a_limit_removed() -> None:
    _, kept = protocol.decode_request(protocol.request(b"limit", {"queue": "q", "reset": True}))
    _, removed = protocol.decode_request(protocol.request(b"limit", {"queue": "q", "rate": None}))
    assert protocol.fields_of(kept) == {"queue": "q", "reset": True, "key": None}
    assert protocol.fields_of(removed) == {"queue": "q", "rate": None, "reset": False,
                                           "key": None}


def test_oversized_bodies_are_refused() -> None:
    big = [protocol.VERSION, b"done", b" " * 2000]
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_many(big, protocol.WORKER_MESSAGES, max_body=1000)
    assert caught.value.reason == "size"


def test_many_messages_to_one_peer_go_in_batches_the_receiver_accepts() -> None:
    """More than MAX_BATCH messages (a worker's acks after a fan-in) were sent as one batch
    that the worker refused whole: they are split, in order, each part decodable."""
    messages = [(b"ack", {"queue": "q", "id": f"j{n}", "attempt": 1})
                for n in range(2 * protocol.MAX_BATCH + 7)]
    with pytest.raises(ProtocolError, match="1 to 10000"):  # the bug: one batch of them all
        protocol.decode_many(protocol.batch(messages), protocol.DAEMON_MESSAGES)
    parts = protocol.batches(messages)
    assert [len(part) for part, _ in parts] == [protocol.MAX_BATCH, protocol.MAX_BATCH, 7]
    got = [(kind, msgspec.to_builtins(body)) for _, frames in parts
           for kind, body in protocol.decode_many(frames, protocol.DAEMON_MESSAGES)]
    assert got == [(kind, {**body, "stale": False}) for kind, body in messages]


def test_batches_stay_under_the_receivers_body_size() -> None:
    """A batch over the receiver's byte limit is split too (a lone message is left as it is)."""
    messages = [(b"job", {"queue": "q", "id": f"j{n}", "attempt": 1, "payload": "x" * 100})
                for n in range(1000)]
    limit = 20_000
    parts = protocol.batches(messages, max_body=limit)
    assert len(parts) > 5
    assert all(len(frames[2]) <= limit for _, frames in parts)
    got = [(kind, body.id, body.payload) for _, frames in parts
           for kind, body in protocol.decode_many(frames, protocol.DAEMON_MESSAGES,
                                                  max_body=limit)]
    assert got == [(kind, body["id"], body["payload"]) for kind, body in messages]
    big = [(b"job", {"queue": "q", "id": "big", "attempt": 1, "payload": "x" * 50_000})]
    assert [len(p) for p, _ in protocol.batches(big * 3, max_body=limit)] == [1, 1, 1]
