"""A daemon's answers taken as their types (:mod:`ckptd.core.answer_types`), once each is
found to hold the keys its type requires: the answer itself is returned, the same dict."""

from __future__ import annotations

from typing import TypeGuard, TypeVar

from ckptd.core.errors import ProtocolError
from ckptd.wire.protocol import Body

A = TypeVar("A")


def required_keys(kind: type[object]) -> frozenset[str]:
    """The keys a ``TypedDict`` requires (none for another class)."""
    found: frozenset[str] = vars(kind).get("__required_keys__", frozenset())
    return found


def has_shape(body: Body, kind: type[A]) -> TypeGuard[A]:
    """True when ``body`` holds every key the ``TypedDict`` ``kind`` requires."""
    return required_keys(kind) <= body.keys()


def answer_as(body: Body, kind: type[A]) -> A:
    """``body`` as a ``kind``; ProtocolError when it lacks a key that ``kind`` requires
    (a daemon of another version)."""
    if has_shape(body, kind):
        return body
    missing = sorted(required_keys(kind) - body.keys())
    raise ProtocolError(f"the daemon's answer is not a {kind.__name__}",
                        f"it lacks {', '.join(missing)}")
