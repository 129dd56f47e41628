"""The ZeroMQ wire format: every frame ckptd sends or accepts is built and checked here.

A message is three frames: the protocol version, the message kind, a JSON object::

    [b"ckptd/1", b"done", b'{"queue": "price", "id": "...", "attempt": 1, "result": 42}']

On the control socket a request is preceded by an empty delimiter frame (what a REQ socket
sends), and the reply is ``[b"", b"ckptd/1", b"ok" | b"error", body]``. A request may put a
tag of its own before the delimiter (at most :data:`MAX_TAG` bytes); its reply then starts
with the same tag. A client with many requests in flight on one socket matches each reply to
its request by it, as ZeroMQ's ``REQ_CORRELATE`` does with its request ids. The ROUTER
sockets of the daemon see the peer's identity frame first; the daemon strips it before
decoding.

:func:`decode` checks version, frame count, kind, size, UTF-8, JSON and every field's type
and, for queue names and ids, the name pattern; anything else raises
:class:`~ckptd.core.errors.ProtocolError` whose ``reason`` is a short label the daemon counts
drops by. A decoded body is its kind's struct (:mod:`ckptd.wire.messages`,
:mod:`ckptd.wire.control_requests`; see :class:`Schema`). Nothing outside this module builds
or parses frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import msgspec

from ckptd.codec import dumps, dumps_decoded, loads
from ckptd.core.errors import ProtocolError
from ckptd.wire import control_requests, messages
from ckptd.wire.control_requests import Request

VERSION = b"ckptd/1"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
MAX_DEPTH = 100  # nesting of JSON arrays and objects in a body (payloads, results, states)
MAX_KIND = 32
MAX_TAG = 16  # bytes of a request's tag, which its reply carries back

Body = dict[str, Any]  # a body to encode (what the daemon and workers send), or a reply's
M = TypeVar("M", bound=msgspec.Struct)

REPLY_KINDS = (b"ok", b"error")
BATCH = b"batch"
MAX_BATCH = 10_000


# -- encoding -------------------------------------------------------------------------------

def encode_body(body: Body, decoded: bool = False) -> bytes:
    """Return a body as compact UTF-8 JSON; raise ValueError for values JSON cannot hold.

    ``decoded``: every value in it came decoded from JSON (the daemon's messages), so the
    fast encoder may write it without checks (:func:`ckptd.codec.dumps_decoded`).
    """
    try:
        return dumps_decoded(body) if decoded else dumps(body)
    except ValueError as exc:
        raise ValueError(f"message body is not JSON-serialisable: {exc}") from None


def message(kind: bytes, body: Body, decoded: bool = False) -> list[bytes]:
    """Frames of a worker<->daemon message (no identity, no delimiter)."""
    return [VERSION, kind, encode_body(body, decoded)]


def batch(messages: list[tuple[bytes, Body]], decoded: bool = False) -> list[bytes]:
    """Frames of several messages to one peer, sent as one (a single message stays alone).

    Sending one frame set per round instead of one per job is most of what makes
    short jobs cheap: ZeroMQ and Python pay per message, not per byte.
    """
    if len(messages) == 1:
        return message(*messages[0], decoded)
    return [VERSION, BATCH,
            encode_body({"messages": [[kind.decode(), body] for kind, body in messages]},
                        decoded)]


def batches(messages: list[tuple[bytes, Body]], decoded: bool = False,
            max_body: int = DEFAULT_MAX_BODY
            ) -> list[tuple[list[tuple[bytes, Body]], list[bytes]]]:
    """Several messages to one peer as batches the receiver accepts: each part (with its
    frames, in order) holds at most :data:`MAX_BATCH` messages and, unless it is a single
    message, at most ``max_body`` bytes (:func:`decode_many` refuses more, and the whole
    batch would be lost: jobs claimed and never received until their lease ran out)."""
    found: list[tuple[list[tuple[bytes, Body]], list[bytes]]] = []
    todo = [messages[start:start + MAX_BATCH] for start in range(0, len(messages), MAX_BATCH)]
    todo.reverse()
    while todo:
        part = todo.pop()
        frames = batch(part, decoded)
        if len(part) > 1 and len(frames[2]) > max_body:  # in halves, the first half first
            half = len(part) // 2
            todo.extend((part[half:], part[:half]))
            continue
        found.append((part, frames))
    return found


def _tagged(tag: bytes, frames: list[bytes]) -> list[bytes]:
    return [tag, *frames] if tag else frames


def request(kind: bytes, body: Body, tag: bytes = b"") -> list[bytes]:
    """Frames of a control request, as a REQ socket would send them (``tag``: the tag its
    reply carries back, see the module)."""
    return _tagged(tag, [b"", VERSION, kind, encode_body(body)])


def request_tag(frames: list[bytes]) -> bytes:
    """The tag of a control request (its frames after the identity); b"" when none (or
    when it is too long to be one: :func:`decode_request` refuses it)."""
    if len(frames) == 5 and frames[1] == b"" and len(frames[0]) <= MAX_TAG:
        return bytes(frames[0])
    return b""


def looks_like_request(frames: list[bytes]) -> bool:
    """Whether frames (after the identity) have the shape of a control request, so that a
    request refused for its content can be told why."""
    return (len(frames) == 4 and frames[0] == b"") or (len(frames) == 5 and frames[1] == b"")


def reply_ok(body: Body, decoded: bool = False, tag: bytes = b"") -> list[bytes]:
    """Frames of a successful control reply (after the identity)."""
    return _tagged(tag, [b"", VERSION, b"ok", encode_body(body, decoded)])


def reply_error(kind: str, text: str, exit_code: int = 1, leader: Body | None = None,
                tag: bytes = b"") -> list[bytes]:
    """Frames of a failed control reply: the error's class name, message and exit code
    (and, for a daemon that does not lead the queue, the ``leader`` to ask instead)."""
    body: Body = {"error": kind, "message": text, "exit_code": exit_code}
    if leader:
        body["leader"] = leader
    return _tagged(tag, [b"", VERSION, b"error", encode_body(body)])


# -- decoding -------------------------------------------------------------------------------

_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_body(raw: bytes, max_body: int = DEFAULT_MAX_BODY) -> Any:
    """Parse a body frame: strict UTF-8 JSON within the limits; raise ProtocolError.

    Refused, each with its reason: over ``max_body`` bytes (size), not UTF-8 (utf8: bad
    bytes, or lone surrogates such as "\\ud800" that cannot be written back as UTF-8), not
    JSON or holding NaN, Infinity or numbers out of range (json), nested deeper than
    MAX_DEPTH (depth). Anything that passes can be encoded again with :func:`encode_body`.
    """
    if len(raw) > max_body:
        raise ProtocolError("size", f"body of {len(raw)} bytes is over {max_body}")
    try:
        value = loads(raw)
    except ValueError as exc:
        raise _why_not_json(bytes(raw), str(exc)) from None
    # A cheap test on the raw bytes first: most bodies need no walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(value):
        raise ProtocolError("depth", f"body is nested deeper than {MAX_DEPTH} levels")
    return value


def _why_not_json(raw: bytes, reason: str) -> ProtocolError:
    """The ProtocolError for a body the decoder refused, with the reason it is counted by."""
    try:
        raw.decode("utf-8")  # strict: JSON in UTF-16 or with bad bytes is refused
    except UnicodeDecodeError as exc:
        return ProtocolError("utf8", f"body is not UTF-8: {exc.reason}")
    if _LONE_SURROGATE.search(raw):
        return ProtocolError("utf8", "body holds a lone UTF-16 surrogate")
    if reason == "nested too deeply":
        return ProtocolError("depth", f"body is nested deeper than {MAX_DEPTH} levels")
    return ProtocolError("json", f"body is not JSON: {reason[:80]}")


def _too_deep(value: Any, depth: int = 1) -> bool:
    """Whether ``value``, at ``depth`` in its body, holds arrays or objects nested deeper than
    :data:`MAX_DEPTH`."""
    stack = [(value, depth)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


class Schema(Mapping[bytes, type[M]]):
    """The message kinds one side accepts, each with its struct and a cached decoder.

    A body is decoded in one pass straight into its struct (:meth:`fast`), which refuses
    unknown fields. Anything that pass refuses is decoded again the tolerant way
    (:meth:`tolerant`): the generic JSON checks first, then the struct from the known fields
    only. So the same bodies pass as ever, each refusal has the same reason, and a body with
    fields from a newer peer still passes, at the cost of a second pass.
    """

    def __init__(self, kinds: Mapping[bytes, type[M]]) -> None:
        self.kinds = dict(kinds)
        self._decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in kinds.items()}
        self._fields = {kind: frozenset(cls.__struct_fields__) for kind, cls in kinds.items()}

    def __getitem__(self, kind: bytes) -> type[M]:
        return self.kinds[kind]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.kinds)

    def __len__(self) -> int:
        return len(self.kinds)

    def __contains__(self, kind: object) -> bool:
        return kind in self.kinds

    def fast(self, kind: bytes, raw: bytes | msgspec.Raw, depth: int = 1) -> M | None:
        """The struct of a ``kind`` body at ``depth`` (1: a message's own; 4: one in a
        batch), or None when it needs the tolerant pass."""
        try:
            body = self._decoders[kind].decode(raw)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            return None
        if len(raw) > MAX_DEPTH - depth + 1:  # enough bytes for too many brackets
            data = raw if isinstance(raw, bytes) else memoryview(raw).tobytes()
            if data.count(b"[") + data.count(b"{") + depth - 1 > MAX_DEPTH and any(
                    _too_deep(value, depth + 1) for value in msgspec.structs.astuple(body)):
                return None  # the tolerant pass says why
        return body

    def tolerant(self, kind: bytes, body: Any) -> M:
        """The struct of an already decoded ``kind`` body; ProtocolError("schema")."""
        if not isinstance(body, dict):
            raise ProtocolError("schema", "body is not a JSON object")
        known = self._fields[kind]
        try:
            return msgspec.convert({k: v for k, v in body.items() if k in known},
                                   self.kinds[kind])
        except msgspec.ValidationError as exc:
            raise ProtocolError("schema", _why_not_valid(kind, str(exc))) from None


WORKER_MESSAGES = Schema(messages.WORKER_MESSAGES)
DAEMON_MESSAGES = Schema(messages.DAEMON_MESSAGES)
CONTROL_REQUESTS = Schema(control_requests.CONTROL_REQUESTS)

_MISSING = re.compile(r"missing required field `(\w+)`")
_AT = re.compile(r" - at `\$\.(\w+)")


def _why_not_valid(kind: bytes, text: str) -> str:
    """msgspec's words for a refused body, as ckptd says them ("done.queue is missing")."""
    missing = _MISSING.search(text)
    if missing:
        return f"{kind.decode()}.{missing.group(1)} is missing"
    at = _AT.search(text)
    if at:
        return f"{kind.decode()}.{at.group(1)} has a bad value"
    return f"{kind.decode()}: {text[:80]}"


def decode(frames: list[bytes], schemas: Schema[M], max_body: int = DEFAULT_MAX_BODY
           ) -> tuple[bytes, M]:
    """Check a ``[version, kind, body]`` message against ``schemas``; return (kind, body).

    Raises ProtocolError(reason) with reason one of: frames, version, kind, size, utf8, json,
    depth, schema. Never raises anything else, whatever the frames hold.
    """
    if len(frames) != 3:
        raise ProtocolError("frames", f"expected 3 frames, got {len(frames)}")
    version, kind, raw = frames
    if version != VERSION:
        raise ProtocolError("version", f"expected {VERSION!r}, got {bytes(version[:20])!r}")
    kind = bytes(kind)
    if kind not in schemas.kinds:
        raise ProtocolError("kind", f"unknown message kind {kind[:20]!r}")
    if len(raw) > max_body:
        raise ProtocolError("size", f"body of {len(raw)} bytes is over {max_body}")
    body = schemas.fast(kind, raw)
    if body is None:
        body = schemas.tolerant(kind, load_body(raw, max_body))
    return kind, body


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[tuple[str, msgspec.Raw]]


_batch_decoder = msgspec.json.Decoder(_Batch)


def decode_many(frames: list[bytes], schemas: Schema[M], max_body: int = DEFAULT_MAX_BODY
                ) -> list[tuple[bytes, M]]:
    """Decode a message that may be a batch; return its (kind, body) pairs in order.

    A batch's inner messages are checked one by one like single messages: a bad one raises
    ProtocolError for the whole batch (the sender is broken, so none of it is trusted).
    Hello messages may not be batched.
    """
    if len(frames) == 3 and frames[1] == BATCH and frames[0] == VERSION:
        raw = frames[2]
        if len(raw) > max_body:
            raise ProtocolError("size", f"body of {len(raw)} bytes is over {max_body}")
        return _fast_batch(raw, schemas) or _tolerant_batch(load_body(raw, max_body), schemas)
    return [decode(frames, schemas, max_body)]


def _fast_batch(raw: bytes, schemas: Schema[M]) -> list[tuple[bytes, M]] | None:
    """A batch decoded in one pass per message, or None when it needs the tolerant one."""
    try:
        items = _batch_decoder.decode(raw).messages
    except (msgspec.DecodeError, RecursionError):
        return None
    if not 0 < len(items) <= MAX_BATCH:
        return None
    out = []
    for name, body in items:
        kind = name.encode()
        if len(kind) > MAX_KIND or kind in (BATCH, b"hello") or kind not in schemas.kinds:
            return None
        message = schemas.fast(kind, body, depth=4)  # {"messages": [[kind, body]]}
        if message is None:
            return None
        out.append((kind, message))
    return out


def _tolerant_batch(body: Any, schemas: Schema[M]) -> list[tuple[bytes, M]]:
    items = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise ProtocolError("schema", "batch.messages must be a list of 1 to 10000 messages")
    out = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and len(item[0]) <= MAX_KIND and item[0].isascii()):
            raise ProtocolError("schema", "a batch item must be [kind, body]")
        kind = item[0].encode("ascii")
        if kind in (BATCH, b"hello"):
            raise ProtocolError("kind", f"{item[0]!r} cannot be batched")
        if kind not in schemas:
            raise ProtocolError("kind", f"unknown message kind {kind[:20]!r}")
        out.append((kind, schemas.tolerant(kind, item[1])))
    return out


def fields_of(message: msgspec.Struct) -> Body:
    """The fields of a decoded message as a dict, without those left out (UNSET): for the
    parts that still take a request's body as a dict (the engine's submit, the operators'
    controls)."""
    fields = msgspec.structs.asdict(message)
    for name in _unsettable(type(message)):
        if fields[name] is msgspec.UNSET:
            del fields[name]
    return fields


_UNSETTABLE: dict[type[msgspec.Struct], tuple[str, ...]] = {}


def _unsettable(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields of a struct whose default is UNSET (worked out once per struct)."""
    found = _UNSETTABLE.get(cls)
    if found is None:
        defaults = cls.__struct_defaults__
        names = cls.__struct_fields__[len(cls.__struct_fields__) - len(defaults):]
        found = _UNSETTABLE[cls] = tuple(
            name for name, default in zip(names, defaults, strict=True)
            if default is msgspec.UNSET)
    return found


def decode_request(frames: list[bytes], max_body: int = DEFAULT_MAX_BODY
                   ) -> tuple[bytes, Request]:
    """Decode a control request after its identity: ``[tag?, "", version, kind, body]``
    (its tag is :func:`request_tag`)."""
    if len(frames) == 5 and frames[1] == b"":
        if not 0 < len(frames[0]) <= MAX_TAG:
            raise ProtocolError("frames", f"a request's tag is 1 to {MAX_TAG} bytes")
        frames = frames[1:]
    if len(frames) != 4 or frames[0] != b"":
        raise ProtocolError("frames",
                            f"expected an empty delimiter and 3 frames, got {len(frames)}")
    return decode(frames[1:], CONTROL_REQUESTS, max_body)


def decode_reply(frames: list[bytes], max_body: int = DEFAULT_MAX_BODY) -> tuple[bool, Body]:
    """Decode a control reply ``[tag?, "", version, ok|error, body]``; return (ok, body)
    (its tag is :func:`reply_tag`)."""
    if len(frames) == 5 and frames[1] == b"":
        frames = frames[1:]
    if frames and frames[0] == b"":
        frames = frames[1:]
    if len(frames) != 3 or frames[0] != VERSION or frames[1] not in REPLY_KINDS:
        raise ProtocolError("frames", "not a ckptd control reply")
    body = load_body(frames[2], max_body)
    if not isinstance(body, dict):
        raise ProtocolError("schema", "reply body is not a JSON object")
    return frames[1] == b"ok", body


def reply_tag(frames: list[bytes]) -> bytes:
    """The tag a control reply carries back (b"" when its request had none)."""
    return bytes(frames[0]) if len(frames) == 5 and frames[1] == b"" else b""
