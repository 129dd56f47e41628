"""What a client does to a job before it is sent: its ``on_submit`` hooks, the trace context
and the seal (:mod:`ckptd.client.hooks`, :mod:`ckptd.client.tracing`, :mod:`ckptd.codec.crypto`).

In that order: the hooks see the plaintext and may add fields (``meta``); the trace context
(``meta.traceparent``, and ``meta.baggage`` when asked) is that of a ``create`` span, a child
of the span that submits; then the payload is sealed, and with it goes the keyed hash of the
plaintext (``payload_key``), which a queue with ``unique = "payload"`` makes the id from, so
that the daemon dedups payloads it cannot read. A client with none of these sends jobs as
they are, at no cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from ckptd.client.hooks import HookSpec, SubmitHooks
from ckptd.codec.crypto import Keyring
from ckptd.core.errors import ConfigError

if TYPE_CHECKING:
    from ckptd.client.tracing import SubmitTracer


def otel(mode: str) -> ModuleType:
    """:mod:`ckptd.client.tracing`, imported now; ConfigError when OpenTelemetry is not
    installed."""
    try:
        from ckptd.client import tracing
    except ImportError as exc:
        raise ConfigError(f"tracing = {mode!r} needs OpenTelemetry ({exc}): pip install "
                          "'ckptd[otel]' (or opentelemetry-api and opentelemetry-sdk), or "
                          "set tracing = \"off\"") from None
    return tracing


class Extra(TypedDict, total=False):
    """Fields added to a submit's body."""

    meta: dict[str, Any]  # what hooks and tracing add (the job's ``meta``)
    payload_key: str  # the keyed hash of a sealed payload (unique queues)


class Preparer:
    """A client's hooks, tracing and keys (see the module docstring)."""

    def __init__(self, hooks: Sequence[HookSpec] | None = None, keys: Keyring | None = None,
                 tracing: str = "off", baggage: bool = False) -> None:
        self.hooks = SubmitHooks(hooks)
        self.keys = keys
        self.tracer: SubmitTracer | None = None
        if tracing != "off":
            self.tracer = otel(tracing).SubmitTracer(tracing, baggage)
        self.active = bool(self.hooks) or keys is not None or self.tracer is not None

    def prepare(self, queue: str, payload: Any, job_id: str | None) -> tuple[Any, Extra]:
        """The payload to send and the fields to add to the request."""
        extra: Extra = {}
        meta: dict[str, Any] = {}
        if self.hooks:
            sub = self.hooks.apply(queue, payload, job_id)
            payload, meta = sub.payload, dict(sub.meta)
        if self.tracer is not None:
            meta.update(self.tracer.created(queue, job_id))
        if meta:
            extra["meta"] = meta
        if self.keys is not None:
            extra["payload_key"] = self.keys.payload_key(payload)
            payload = self.keys.seal(payload, "payload")
        return payload, extra

    def result(self, value: Any, where: str) -> Any:
        """A result (or payload, checkpoint) read back, opened when this client holds
        the keys."""
        return self.keys.open(value, "result", where) if self.keys is not None else value
